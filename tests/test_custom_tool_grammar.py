"""Custom tools (OpenAI Responses `{"type": "custom", "format": {"type": "grammar", ...}}`): a Lark or regex grammar
becomes GBNF for the inside of the `"input"` JSON string (grammar/text_grammar.py), and tool-call grammars hold a
custom tool's call to it (grammar/tool_grammar.py).

Conversions are checked string by string against the original grammar (Lark's parser, `re.fullmatch`) through
llama.cpp's own grammar engine; then the packaged Qwen samples calls under the real grammars at temperature 1,
and every input must be accepted by the original grammar.

tests/data/apply_patch.lark is Codex's apply_patch grammar, byte for byte: openai/codex,
codex-rs/core/src/tools/handlers/tool_apply_patch.lark (commit 71163530a46dc568775f9ee95a9b57de3385cd9a).
"""

from __future__ import annotations

import ctypes
import json
import re
from pathlib import Path

import lark
import llama_cpp
import pytest

from parley.core.messages import TEXT_INPUT_SCHEMA, ToolSpec
from parley.core.params import GrammarConstraint, SamplingParams
from parley.engines.llamacpp import cpu_backend
from parley.engines.llamacpp.sampling import build_sampler, compile_check, grammar_sampler
from parley.errors import InvalidRequestError
from parley.grammar.regex_gbnf import json_text
from parley.grammar.text_grammar import text_grammar_gbnf
from parley.grammar.tool_grammar import forced_grammar, lazy_grammar
from parley.models.packaged import QWEN_CODER_05B
from parley.parsers.tool_calls import HERMES_FORMAT
from parley.settings import Settings

APPLY_PATCH = (Path(__file__).parent / "data" / "apply_patch.lark").read_text()
WHERE = "tools[0].format"
# Small, bounded grammars: a sample always finishes well within its token cap.
ROBOT = """
start: move | say | "stop"
move: "move " DIRECTION " " STEPS
say: "say "i WORD (" " WORD) ~ 0..3
DIRECTION: "north" | "south" | "east" | "west"
STEPS: /[1-9][0-9]?/
WORD: /[a-z]{1,8}/
"""
CODE = r"\d{3}-[a-z]{2,5}"
NUMBERS = "start: NUMBER (\",\" NUMBER)*\n%import common.NUMBER\n%import common.WS\n%ignore WS\n"


def lark_reference(definition: str) -> lark.Lark:
    """Lark's own parser for a grammar. Its Earley parser refuses zero-width terminals, so Codex's `/(.*)/`
    is read as `/(.+)/?`, the same language."""
    return lark.Lark(definition.replace("/(.*)/", "/(.+)/?"), start="start")


def lark_accepts(parser: lark.Lark, text: str) -> bool:
    try:
        parser.parse(text)
        return True
    except lark.exceptions.LarkError:
        return False


@pytest.fixture(scope="module")
def qwen() -> llama_cpp.Llama:
    cpu_backend.ensure_loaded()  # llama-cpp-python's Llama looks for ggml's backends only beside python
    # One thread: on cores shared with other work, a second one spends its time waiting for the first.
    return llama_cpp.Llama(str(QWEN_CODER_05B.gguf_path(Settings().cache_dir)), n_ctx=512, n_threads=1,
                           n_threads_batch=1, verbose=False)


def _allowed(handle: llama_cpp.llama_sampler_p, token: int) -> bool:
    one = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
    view = llama_cpp.llama_token_data_array(one, 1, -1, False)
    llama_cpp.llama_sampler_apply(handle, ctypes.byref(view))
    return one[0].logit != float("-inf")


def gbnf_accepts(llm: llama_cpp.Llama, gbnf: str, json_content: str) -> bool:
    """Whether llama.cpp, holding to `gbnf`, lets the model write `json_content` and then end."""
    vocab = llm._model.vocab
    handle = grammar_sampler(vocab, GrammarConstraint(gbnf))
    try:
        for token in llm.tokenize(json_content.encode(), add_bos=False, special=False):
            if not _allowed(handle, token):
                return False
            llama_cpp.llama_sampler_accept(handle, token)
        return _allowed(handle, llama_cpp.llama_vocab_eos(vocab))
    finally:
        llama_cpp.llama_sampler_free(handle)


# -- conversion ---------------------------------------------------------------------------------------------
PATCHES = [
    "*** Begin Patch\n*** Add File: notes/a b.txt\n+hello \"world\" \\ \ttab\n+\n*** End Patch",
    "*** Begin Patch\n*** Update File: src/x.py\n*** Move to: src/y.py\n@@ def f():\n-    return 1\n"
    "+    return 2\n \n*** End of File\n*** Delete File: old.txt\n*** End Patch\n",
    "*** Begin Patch\n*** Update File: a\n@@\n+ünïcödé ✓ \x01\n*** End Patch",
    "*** Begin Patch\n*** Delete File: b\n*** End Patch",
    "*** Begin Patch\n*** End Patch",  # no hunk
    "*** Begin Patch\n*** Add File: a\n*** End Patch",  # an added file needs a line
    "*** Begin Patch\n*** Delete File: \n*** End Patch",  # no file name
    "*** Begin Patch\n*** Delete File: b\n*** End Patch\n\n",
    "*** Begin Patch\r\n*** Delete File: b\r\n*** End Patch",
    "*** Begin Patch\n*** Update File: a\nplain line\n*** End Patch",
    "*** begin patch\n*** Delete File: b\n*** End Patch",
]


def test_codex_apply_patch_grammar(qwen):
    gbnf = text_grammar_gbnf("lark", APPLY_PATCH, WHERE)
    compile_check(qwen._model.vocab, GrammarConstraint(gbnf))
    reference = lark_reference(APPLY_PATCH)
    verdicts = [lark_accepts(reference, text) for text in PATCHES]
    assert verdicts == [True] * 4 + [False] * 7  # the cases test what they mean to
    for text, verdict in zip(PATCHES, verdicts, strict=True):
        assert gbnf_accepts(qwen, gbnf, json_text(text)) == verdict, text


@pytest.mark.parametrize("pattern, cases", [
    (CODE, {"123-ab": True, "007-abcde": True, "١٢٣-ab": True, "123-abcdef": False, "12-ab": False,
            "123-AB": False, "123_ab": False}),
    (r"^(?i:yes|no)$", {"YeS": True, "no": True, "yes\n": False, "": False}),
    (r'"(?:[^"\\\n]|\\.)*"', {'"a \\" b"': True, '"tab\there"': True, '"a\nb"': False, '"a"b"': False,
                              '"\\\\"': True}),
    (r"(?s)a.b|[^\w\s]+\t\x1f?", {"a\nb": True, "a\"b": True, "#!\t": True, "{}\t\x1f": True, "ab": False,
                                  "é\t": False}),
    (r"(ab){2,3}c?|x*", {"": True, "xx": True, "abab": True, "abababc": True, "ab": False, "abababab": False}),
])
def test_regex_grammars(qwen, pattern, cases):
    gbnf = text_grammar_gbnf("regex", pattern, WHERE)
    compile_check(qwen._model.vocab, GrammarConstraint(gbnf))
    for text, verdict in cases.items():
        assert bool(re.fullmatch(pattern, text)) == verdict, text
        assert gbnf_accepts(qwen, gbnf, json_text(text)) == verdict, text


@pytest.mark.parametrize("definition, cases", [
    (NUMBERS, {"1": True, " 1, 2.5e3 ,\n.5 ": True, "1,,2": False, "1 2": False, "": False}),
    (ROBOT, {"move north 12": True, "SAY hi there": True, "stop": True, "say a b c d e": False,
             "move up 1": False, "move west 0": False}),
    ('start: ESCAPED_STRING | "k" X ~ 2\nX: "a".."c" | /[0-9]/\n%import common.ESCAPED_STRING\n',
     {'"q \\" \\\\"': True, "ka9": True, "kd1": False, '"unclosed\\"': False}),
    ('start: sum\nsum: sum "+" INT | sum "-" INT | INT\n%import common.INT\n', {"1+2-3": True, "1+": False}),
    ('?start: greet | _bye\ngreet.2: "hi " NAME -> hello\n!_bye: "bye"\nNAME.3: /[A-Z][a-z]+/\n'
     '%import common (LF, CR)\n', {"hi Bob": True, "bye": True, "hi bob": False, "hi Bob\n": False}),
])
def test_lark_grammars(qwen, definition, cases):
    gbnf = text_grammar_gbnf("lark", definition, WHERE)
    compile_check(qwen._model.vocab, GrammarConstraint(gbnf))
    reference = lark_reference(definition)
    for text, verdict in cases.items():
        assert lark_accepts(reference, text) == verdict, text
        assert gbnf_accepts(qwen, gbnf, json_text(text)) == verdict, text


def test_control_characters_take_either_hex_case(qwen):
    gbnf = text_grammar_gbnf("regex", r"[\x00-\x1f]x\x1b", WHERE)
    assert gbnf_accepts(qwen, gbnf, "\\u001Fx\\u001b")
    assert gbnf_accepts(qwen, gbnf, "\\u001fx\\u001B")
    assert gbnf_accepts(qwen, gbnf, "\\nx\\u001b")  # a newline only as JSON's own `\n`
    assert not gbnf_accepts(qwen, gbnf, "\\u000ax\\u001b")
    assert not gbnf_accepts(qwen, gbnf, "\\u0020x\\u001b")


@pytest.mark.parametrize("syntax, definition, message", [
    ("regex", r"(a)\1", "backreferences"),
    ("regex", r"a(?=b)", "lookarounds"),
    ("regex", r"(?<!a)b", "lookarounds"),
    ("regex", r"\bword", "anchors"),
    ("regex", r"a^b", "anchors"),
    ("regex", r"a++", "possessive"),
    ("regex", r"(?>a)", "atomic"),
    ("regex", r"a{2000}", "at most 1000"),
    ("regex", r"[a-", "invalid regular expression"),
    ("regex", r"(a)?(?(1)b|c)", "conditional groups"),
    ("lark", 'start: /(?<=a)b/', "lookarounds"),
    ("lark", "start: x", "invalid Lark grammar"),
    ("lark", 'foo: "a"', "`start` rule"),
    ("lark", "start: A\n%declare A", "declared but not defined"),
    ("lark", "%import .secret (A)\nstart: A", "can import only"),
    ("lark", "%import os.path (A)\nstart: A", "can import only"),
    ("lark", 'start: a\na: b "x" | "y"\nb: a "z"', "left recursion"),
    ("lark", 'start: "a"\nE: /x*/\n%ignore E', "%ignore E"),
    ("cfg", "x", "unknown grammar syntax"),
])
def test_what_no_grammar_can_hold_is_a_400_naming_where(syntax, definition, message):
    with pytest.raises(InvalidRequestError) as caught:
        text_grammar_gbnf(syntax, definition, WHERE)
    assert caught.value.message.startswith(f"{WHERE}: ")
    assert message in caught.value.message


def test_bounds_over_1000_are_left_unbounded():
    assert "root ::= \"a\"{2,}" in text_grammar_gbnf("regex", "a{2,5000}", WHERE)


def test_function_tools_are_unchanged_beside_custom_tools():
    function = ToolSpec("get_time", "", {"type": "object", "properties": {"tz": {"type": "string"}}})
    alone = forced_grammar([function], HERMES_FORMAT.native, False)
    custom = ToolSpec("code", "", TEXT_INPUT_SCHEMA, custom=True, input_grammar=text_grammar_gbnf("regex", CODE, WHERE))
    mixed = forced_grammar([function, custom], HERMES_FORMAT.native, False)
    assert alone is not None and mixed is not None
    assert "call ::= schema-call | custom1-call" in mixed.gbnf
    schema_rules = [line for line in alone.gbnf.splitlines() if not line.startswith(("root ::=", "call ::="))]
    assert all(line in mixed.gbnf.splitlines() for line in schema_rules)
    free = ToolSpec("note", "", TEXT_INPUT_SCHEMA, custom=True)  # `format: text`: any string
    assert forced_grammar([free], HERMES_FORMAT.native, False).gbnf.count('"\\"input\\"" space ":" space string')


# -- sampling -----------------------------------------------------------------------------------------------
def _evaluate(llm: llama_cpp.Llama, tokens: list[int]) -> None:
    """Make `tokens` the context, reusing the longest prefix already evaluated (one prompt, many samples);
    the last token is always evaluated again, as its logits are the ones sampled from."""
    have = llm.input_ids[: llm.n_tokens].tolist()
    same = 0
    while same < min(len(have), len(tokens) - 1) and have[same] == tokens[same]:
        same += 1
    llm.n_tokens = same
    llm.eval(tokens[same:])


def _sample(llm: llama_cpp.Llama, prompt: str, prefill: str, grammar: GrammarConstraint, seed: int,
            max_tokens: int) -> str:
    """`prefill` and what the model writes after it, under `grammar`, until the call object is complete (the
    whitespace and closing tag the grammar still allows after it are the wrapper's, not under test here), the
    turn ends, or `max_tokens`. The prefill is written for the model through the grammar, as the engine writes
    a forced reasoning close."""
    vocab = llm._model.vocab
    prompt_tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    prefill_tokens = llm.tokenize(prefill.encode(), add_bos=False, special=True)
    sampler = build_sampler(vocab, SamplingParams(max_tokens, temperature=1.0, seed=seed, grammar=grammar), 0.0)
    try:
        for token in prefill_tokens:
            assert sampler._allows(token), prefill  # llama.cpp aborts on accepting a token its grammar rejects
            sampler.accept(token)
        _evaluate(llm, prompt_tokens + prefill_tokens)
        out: list[int] = []
        for _ in range(max_tokens):
            token = sampler.sample(llm._ctx, -1)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            out.append(token)
            if _call_object(prefill + llm.detokenize(out).decode(errors="ignore")) is not None:
                break
            llm.eval([token])
        return prefill + llm.detokenize(out).decode(errors="replace")
    finally:
        sampler.close()


def _call_object(text: str) -> dict | None:
    """The hermes call's JSON object, once complete."""
    at = text.find("<tool_call>")
    try:
        return json.JSONDecoder().raw_decode(text[at + len("<tool_call>"):].lstrip())[0] if at >= 0 else None
    except json.JSONDecodeError:
        return None


def _input_so_far(text: str) -> tuple[str, bool]:
    """The input of a call cut off by max_tokens (a cut escape dropped), and whether its string was closed."""
    found = re.search(r'"input"\s*:\s*"', text)
    body = text[found.end():] if found else ""
    chars, i = [], 0
    while i < len(body) and body[i] != '"':
        size = 6 if body[i : i + 2] == "\\u" else 2 if body[i] == "\\" else 1
        if i + size > len(body):
            break
        chars.append(json.loads(f'"{body[i : i + size]}"'))
        i += size
    return "".join(chars), body[i : i + 1] == '"'


# Ways to finish a cut-off patch: complete the last line (a header's file name), then close the patch.
_LINE_STARTS = ("*** Begin Patch", "*** End Patch", "*** Add File: x", "*** Delete File: x", "*** Update File: x",
                "*** Move to: x", "*** End of File", "@@")
_TAILS = ("", "*** End Patch", "+x\n*** End Patch", "*** Delete File: x\n*** End Patch",
          "*** Begin Patch\n*** Delete File: x\n*** End Patch")


def _patch_prefix_continues(reference: lark.Lark, text: str) -> bool:
    last = text.rpartition("\n")[2]
    finishes = {""} | {start[len(last):] for start in _LINE_STARTS if start.startswith(last)}
    endings = [tail for tail in _TAILS] if not last else ["", "\n", *("\n" + tail for tail in _TAILS[1:])]
    return any(lark_accepts(reference, text + finish + ending) for finish in finishes for ending in endings)


def test_a_cut_off_patch_is_judged_by_whether_it_can_still_be_finished():
    reference = lark_reference(APPLY_PATCH)
    assert _input_so_far(_opener("a") + "*** Begin Patch\\n*** Add Fi") == ("*** Begin Patch\n*** Add Fi", False)
    assert _input_so_far(_opener("a") + "a\\u00e9\\u00") == ("aé", False)  # a cut escape is dropped
    assert _input_so_far(_opener("a") + 'a\\"b"}') == ('a"b', True)
    for text in ("", "*** Begin", "*** Begin Patch\n", "*** Begin Patch\n*** Add File: ",
                 "*** Begin Patch\n*** Update File: a\n@@ x", "*** Begin Patch\n*** Delete File: a\n*** End Pa"):
        assert _patch_prefix_continues(reference, text), text
    for text in ("x", "*** Begin Patch\n*** Add File: a\n-b", "*** Begin Patch\n*** End Patch\n\n"):
        assert not _patch_prefix_continues(reference, text), text


@pytest.fixture(scope="module")
def tools() -> list[ToolSpec]:
    return [
        ToolSpec("apply_patch", "Edit files with a patch.", TEXT_INPUT_SCHEMA, custom=True,
                 input_grammar=text_grammar_gbnf("lark", APPLY_PATCH, "tools[0].format")),
        ToolSpec("code", "Look up a product code.", TEXT_INPUT_SCHEMA, custom=True,
                 input_grammar=text_grammar_gbnf("regex", CODE, "tools[1].format")),
        ToolSpec("robot", "Command the robot.", TEXT_INPUT_SCHEMA, custom=True,
                 input_grammar=text_grammar_gbnf("lark", ROBOT, "tools[2].format")),
    ]


# One short system prompt for every sample (its evaluation is reused): the grammar, not the prompt, is under test,
# and on two cores each prompt token counts.
SYSTEM = ("<|im_start|>system\nCall a tool inside <tool_call></tool_call>. Tools: apply_patch (a patch: *** Begin "
          "Patch, hunks, *** End Patch), code (a code like 123-abc), robot (move <direction> <steps>, say <words> or "
          "stop), get_time ({\"tz\": zone}).<|im_end|>\n")


def _prompt(question: str) -> str:
    return f"{SYSTEM}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def _opener(name: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {{"input": "'


PATCH_REQUESTS = ["Delete the file notes.txt.", "Delete the file notes.txt.", "Create hi.py that prints hi.",
                  "In main.py, change x = 1 to x = 2.", "Rename a.txt to b.txt."]


def test_sampled_apply_patch_inputs_are_accepted_by_codex_grammar(qwen, tools):
    """tool_choice {"type": "custom", "name": "apply_patch"}. The call's fixed start is written for the model
    (through the grammar) in all samples but the first, to spend the token budget on the patch."""
    grammar = forced_grammar(tools[:1], HERMES_FORMAT.native, False)
    assert grammar is not None
    reference = lark_reference(APPLY_PATCH)
    finished = 0
    for seed, question in enumerate(PATCH_REQUESTS):
        prefill = "" if seed == 0 else _opener("apply_patch")
        text = _sample(qwen, _prompt(question), prefill, grammar, seed, 100 if seed == 0 else 72)
        call = _call_object(text)
        if call is not None:
            assert call["name"] == "apply_patch" and set(call["arguments"]) == {"input"}
            assert lark_accepts(reference, call["arguments"]["input"]), call
            finished += 1
        else:  # cut off by max_tokens: what was written must be a patch, or still the start of one
            patch, closed = _input_so_far(text)
            assert lark_accepts(reference, patch) if closed else _patch_prefix_continues(reference, patch), text
    print(f"apply_patch: {finished} of {len(PATCH_REQUESTS)} sampled calls complete, all valid")


# A call of bounded arguments is complete within these many tokens whatever the model does: the arguments are at
# most 80 characters, each of about a dozen `space`s at most 20, the rest fixed text (a token has a character or more).
WHOLE_CALL, REST_OF_CALL = 400, 130


@pytest.mark.parametrize("name, question", [
    ("code", "Look up product code 123-abc."),
    ("robot", "Tell the robot to walk three steps north."),
])
def test_sampled_inputs_match_their_grammar(qwen, tools, name, question):
    tool = next(t for t in tools if t.name == name)
    grammar = forced_grammar([tool], HERMES_FORMAT.native, False)
    assert grammar is not None
    reference = lark_reference(ROBOT)
    for seed in range(4):
        prefill = "" if seed == 0 else _opener(name)
        text = _sample(qwen, _prompt(question), prefill, grammar, seed, WHOLE_CALL if seed == 0 else REST_OF_CALL)
        call = _call_object(text)
        assert call is not None, text
        assert call["name"] == name and set(call["arguments"]) == {"input"}
        value = call["arguments"]["input"]
        assert re.fullmatch(CODE, value) if name == "code" else lark_accepts(reference, value), value


def test_sampled_call_under_the_lazy_grammar(qwen, tools):
    """tool_choice auto: once the model opens a call (the opener written for it here), the call is held to
    whichever tool it names."""
    function = ToolSpec("get_time", "The time in a time zone.", {
        "type": "object", "properties": {"tz": {"type": "string", "maxLength": 12}}, "required": ["tz"],
        "additionalProperties": False})
    grammar = lazy_grammar([*tools[1:], function], HERMES_FORMAT.syntaxes, False)
    assert grammar is not None and grammar.lazy
    reference = lark_reference(ROBOT)
    for seed in range(2):
        call = _call_object(_sample(qwen, _prompt("Tell the robot to stop."), "<tool_call>\n", grammar, seed,
                                    WHOLE_CALL))
        assert call is not None
        value = call["arguments"]
        if call["name"] == "get_time":
            assert set(value) == {"tz"} and isinstance(value["tz"], str) and len(value["tz"]) <= 12
        else:
            assert set(value) == {"input"}
            check = re.fullmatch(CODE, value["input"]) if call["name"] == "code" else lark_accepts(
                reference, value["input"])
            assert call["name"] in ("code", "robot") and check, call


@pytest.mark.parametrize("syntax, definition", [("lark", APPLY_PATCH), ("regex", CODE), ("lark", NUMBERS),
                                                ("regex", r"[^\n]*é.\w+")])
def test_the_same_grammars_compile_in_llguidance(syntax, definition):
    """MLX and vLLM apply the same GBNF through llguidance, whose reader takes fewer escapes than llama.cpp's
    (`\\u0660` in a class once came out as an invalid regex there)."""
    from parley.engines.mlx.grammar import compile_grammar

    tool = ToolSpec("t", "", TEXT_INPUT_SCHEMA, custom=True, input_grammar=text_grammar_gbnf(syntax, definition, WHERE))
    fmt = HERMES_FORMAT
    for grammar in (forced_grammar([tool], fmt.native, True), lazy_grammar([tool], fmt.syntaxes, True)):
        compile_grammar(grammar.gbnf)
