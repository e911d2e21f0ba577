"""Grammars built from tool schemas never crash the process: each one compiles in the real llama.cpp, or the
request is answered without it. A native crash (a stack overflow in llama.cpp's recursive grammar parser was
one) kills whatever process compiles the grammar, so the compiling runs in a child process and a crash there
is a test failure that names the schema."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SMOL

CLAUDE_CODE = json.loads((Path(__file__).parent / "data" / "claude_code_tools.json").read_text())["tool_sets"]
HERMES_TEMPLATE = "{{ '<tool_call>' }}"  # what infer_tool_format reads: Qwen's hermes-style calls
JSON_TEMPLATE = ""  # templates without tool markup: bare JSON calls

# Runs in the child: builds each case's forced and lazy grammar the way a request does (ToolPlan) and
# compiles it with the packaged SmolLM2 vocabulary, as the engine's check_grammar does. Progress goes to a
# file line by line, so the parent can tell which case a crash happened in.
CHILD = r"""
import json, logging, sys
import llama_cpp
from llama_cpp._internals import LlamaModel, LlamaSampler
from llama_cpp._logger import set_verbose
from parley.core.messages import ToolSpec
from parley.chat.tools import ToolPlan
from parley.core.tools import ToolChoice
from parley.engines.llamacpp.sampling import add_grammar
from parley.errors import ParleyError
from parley.models.packaged import SMOLLM2_135M
from parley.settings import Settings

try:
    from parley.engines.mlx.grammar import compile_grammar
    import llguidance  # noqa: F401
except ImportError:
    compile_grammar = None

class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = []
    def emit(self, record):
        self.seen.append(record.getMessage()[:300])

warnings = Warnings()
logging.getLogger("parley").addHandler(warnings)
set_verbose(False)
params = llama_cpp.llama_model_default_params()
params.vocab_only = True
model = LlamaModel(path_model=str(SMOLLM2_135M.gguf_path(Settings().cache_dir)), params=params, verbose=False)
cases = json.load(open(sys.argv[1]))
progress = open(sys.argv[2], "w", buffering=1)

def compiled(grammar):
    sampler = LlamaSampler()
    try:
        add_grammar(sampler, model.vocab, grammar)
        return "ok"
    except ParleyError as exc:
        return f"error: {exc}"
    finally:
        sampler.close()

def llguidance_result(grammar, wanted):
    if compile_grammar is None or not wanted:
        return "absent"
    try:
        compile_grammar(grammar.gbnf)
        return "ok"
    except ParleyError as exc:
        return f"error: {exc}"[:300]

for case in cases:
    tools = [ToolSpec(t["name"], t.get("description", ""), t.get("input_schema") or {}) for t in case["tools"]]
    for template in case["templates"]:
        for kind in ("any", "auto"):
            progress.write(json.dumps({"start": case["id"], "template": template, "kind": kind}) + "\n")
            warnings.seen.clear()
            grammar = ToolPlan(tools, ToolChoice(kind), template).grammar()
            result = {"id": case["id"], "template": template, "kind": kind, "grammar": None}
            if grammar is not None:
                result["grammar"] = {"bytes": len(grammar.gbnf), "lazy": grammar.lazy,
                                     "llama.cpp": compiled(grammar),
                                     "llguidance": llguidance_result(grammar, case.get("llguidance", True))}
            result["warnings"] = list(warnings.seen)
            progress.write(json.dumps({"done": result}) + "\n")
"""


def compile_in_child(cases: list[dict], tmp_path: Path, timeout: float = 300) -> list[dict]:
    """Each case's results; a crash or a hang of the child fails the test, naming the case it was in."""
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    progress = tmp_path / "progress.jsonl"
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "cases.json"), str(progress)],
                              capture_output=True, timeout=timeout)
        failure = None if proc.returncode == 0 else _exit_reason(proc.returncode) + proc.stderr.decode()[-1500:]
    except subprocess.TimeoutExpired:
        failure = f"the child did not finish within {timeout} s"
    lines = [json.loads(line) for line in progress.read_text().splitlines()] if progress.exists() else []
    if failure is not None:
        started = next((line for line in reversed(lines) if "start" in line), None)
        case = next((c for c in cases if started and c["id"] == started["start"]), None)
        pytest.fail(f"{failure}\nwhile building/compiling {started}:\n{json.dumps(case)[:3000]}")
    return [line["done"] for line in lines if "done" in line]


def _exit_reason(code: int) -> str:
    if code < 0:
        return f"the child was killed by {signal.Signals(-code).name}\n"
    return f"the child exited with {code}\n"


def assert_compiled_or_left_out(results: list[dict]) -> None:
    """Every grammar parley builds compiles; a grammar it cannot build safely is left out, with a warning."""
    for result in results:
        grammar = result["grammar"]
        if grammar is None:
            assert result["warnings"], result
        else:
            assert grammar["llama.cpp"] == "ok", result
            assert grammar["llguidance"] in ("ok", "absent"), result


# ---- (1) generated schemas ----------------------------------------------------------------------------------

DEFS = ("Node", "A", "B")
COUNTS = st.one_of(st.integers(0, 70), st.integers(0, 10**6),
                   st.sampled_from([1, 64, 65, 256, 1000, 1001, 2000, 2001, 5000, 524288]))
BOUNDS = st.one_of(st.sampled_from([2**53 - 1, -(2**53 - 1), 0, 1, -1, 1000]), st.integers(-(2**53 - 1), 2**53 - 1),
                   st.floats(allow_nan=False, allow_infinity=False))
PATTERNS = st.sampled_from([
    "^[a-z]+$", "^wf_[a-z0-9-]{6,}$", "^[\\s\\S]{0,300}$", "^[^\\n\\r]*$", "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
    "^(a|b){0,5000}$", "^\\d{3}-\\d{4}$", "^[a-z]{2,1000000}$", "^((a{0,30}){0,30}){0,30}$", "abc", "^(?:x)$",
    "^x{524288}$", "^(ab|cd)*e?$", "^\\w+@\\w+\\.com$", "^[^\"\\\\]{1,40}$", "^(((((((((((x))))))))))))$",
])
PLAIN_NAMES = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)
# Odd names one time in five. Not "$ref": the converter takes any `$ref` key for a reference, so such a
# tool is only ever constrained to any object (as the fallback test shows).
NAMES = st.one_of(PLAIN_NAMES, PLAIN_NAMES, PLAIN_NAMES, PLAIN_NAMES,
                  st.sampled_from(["-i", "a b", "ü", '"q"', "\\", "maxLength", "name", "arguments", "0-rest"]))
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))


def _optional(required: dict, optional: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries(required, optional=optional)


STRINGS = _optional({"type": st.just("string")}, {
    "minLength": COUNTS, "maxLength": COUNTS, "pattern": PATTERNS,
    "format": st.sampled_from(["uri", "date", "date-time", "time", "uuid", "email"]),
    "description": st.just("a string")})
NUMBERS = _optional({"type": st.sampled_from(["integer", "number"])}, {
    "minimum": BOUNDS, "maximum": BOUNDS, "exclusiveMinimum": BOUNDS, "exclusiveMaximum": BOUNDS})
LEAVES = st.one_of(
    STRINGS, NUMBERS,
    st.sampled_from([{"type": "boolean"}, {"type": "null"}, {}, {"description": "anything"},
                     {"type": ["string", "null"]}, {"default": 5}]),
    st.lists(JSON_VALUES, min_size=1, max_size=300).map(lambda values: {"enum": values}),
    JSON_VALUES.map(lambda value: {"const": value}),
    st.sampled_from(DEFS * 3 + ("Missing",)).map(lambda name: {"$ref": f"#/$defs/{name}"}),
)


def _wide_object(n: int, leaves: list[dict], required: int) -> dict:
    """Hundreds of (mostly optional) properties, as generated tools have."""
    properties = {f"p{i}": leaves[i % len(leaves)] for i in range(n)}
    return {"type": "object", "properties": properties, "required": list(properties)[:required]}


def _compound(children: st.SearchStrategy) -> st.SearchStrategy:
    objects = _optional({"type": st.just("object"), "properties": st.dictionaries(NAMES, children, max_size=6)}, {
        "required": st.lists(NAMES, max_size=4), "additionalProperties": st.one_of(st.booleans(), children)})
    arrays = _optional({"items": children}, {
        "type": st.just("array"), "minItems": COUNTS, "maxItems": COUNTS})
    combined = st.tuples(st.sampled_from(["anyOf", "oneOf", "allOf"]), st.lists(children, min_size=1, max_size=4))
    return st.one_of(objects, arrays, combined.map(lambda kv: {kv[0]: kv[1]}),
                     st.builds(_wide_object, st.integers(50, 400), st.lists(LEAVES, min_size=1, max_size=4),
                               st.integers(0, 5)))


SCHEMAS = st.recursive(LEAVES, _compound, max_leaves=12)
TOOL_SCHEMAS = st.builds(
    lambda properties, required, defs: {"type": "object", "properties": properties, "required": required,
                                        "$defs": defs},
    st.dictionaries(NAMES, SCHEMAS, max_size=5), st.lists(NAMES, max_size=3),
    st.fixed_dictionaries({name: SCHEMAS for name in DEFS}))  # refs among them: cycles


def test_generated_schemas_compile_or_are_left_out(tmp_path):
    """~200 tool sets of generated schemas (deep nesting, hundreds of optional properties, long enums, patterns,
    length/item bounds up to 10**6, integer bounds up to ±2**53−1, $ref cycles, anyOf/oneOf/allOf), forced and
    lazy: no crash, and every grammar compiles or is left out with a warning."""
    cases: list[dict] = []

    @settings(max_examples=200, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(TOOL_SCHEMAS, min_size=1, max_size=3))
    def collect(schemas: list[dict]) -> None:
        tools = [{"name": f"tool_{i}", "input_schema": schema} for i, schema in enumerate(schemas)]
        # llguidance's GBNF reader is slow Python: the MLX path is checked on one case in five
        cases.append({"id": len(cases), "tools": tools, "templates": [HERMES_TEMPLATE],
                      "llguidance": len(cases) % 5 == 0})

    collect()
    results = compile_in_child(cases, tmp_path)
    assert len(results) == 2 * len(cases)
    assert_compiled_or_left_out(results)
    assert sum(r["grammar"] is not None for r in results) > len(results) // 2  # most do get a grammar


def test_bounds_that_overflowed_the_parser_compile(tmp_path):
    """The shapes that crashed or were refused before: one nested group per allowed character or item."""
    schemas = [{"type": "string", "maxLength": n} for n in (5000, 30000, 524288)]
    schemas += [{"type": "array", "items": {"type": "string"}, "maxItems": 100000},
                {"type": "string", "minLength": 10**6}, {"type": "string", "minLength": 5, "maxLength": 3},
                {"type": "integer", "minimum": -(2**53 - 1), "maximum": 2**53 - 1}]
    cases = [{"id": i, "templates": [HERMES_TEMPLATE],
              "tools": [{"name": "t", "input_schema": {"type": "object", "properties": {"x": s}, "required": ["x"]}}]}
             for i, s in enumerate(schemas)]
    results = compile_in_child(cases, tmp_path)
    assert_compiled_or_left_out(results)
    assert all(r["grammar"] is not None and not r["warnings"] for r in results), results


def _tool(name: str, properties: dict, defs: dict | None = None) -> dict:
    schema = {"type": "object", "properties": properties, **({"$defs": defs} if defs else {})}
    return {"name": name, "input_schema": schema}


def test_unsafe_grammars_are_left_out_with_a_warning(tmp_path):
    """A tool whose schema cannot be converted, is over the caps, or is refused by llama.cpp is constrained to
    any object; a tool set whose grammar is over the caps gets no grammar. Each time a warning says so."""
    wide = {f"s{i}": {"type": "string", "maxLength": 1000} for i in range(60)}  # 60,000 rules
    third = {f"s{i}": {"type": "string", "maxLength": 1000} for i in range(20)}
    left_recursive = {"A": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "string"}]}}
    good = _tool("good", {"x": {"type": "string"}})
    sets = {"unconvertible": [_tool("bad", {"$ref": {"type": "string"}}), good],
            "over the caps": [_tool("bad", wide), good],
            "refused": [_tool("bad", {"x": {"$ref": "#/$defs/A"}}, left_recursive), good],
            "together over the caps": [_tool(f"third{i}", third) for i in range(3)]}
    cases = [{"id": name, "tools": tools, "templates": [HERMES_TEMPLATE]} for name, tools in sets.items()]
    results = compile_in_child(cases, tmp_path)
    assert_compiled_or_left_out(results)
    for result in results:
        assert result["warnings"], result
        if result["id"] == "together over the caps":
            assert result["grammar"] is None
        else:
            assert result["grammar"] is not None and all("'bad'" in w for w in result["warnings"]), result


# Runs in a child: a lazy grammar's sampler takes a long free-text answer, then a call, on a thread with a
# 256 KiB stack. llama.cpp searches the trigger regexes over all the output after every token.
LAZY_CHILD = r"""
import ctypes, json, sys, threading, time
import llama_cpp
from llama_cpp._internals import LlamaModel, LlamaSampler
from llama_cpp._logger import set_verbose
from parley.core.messages import ToolSpec
from parley.chat.tools import ToolPlan
from parley.core.tools import ToolChoice
from parley.engines.llamacpp.sampling import add_grammar
from parley.models.packaged import SMOLLM2_135M
from parley.settings import Settings

set_verbose(False)
params = llama_cpp.llama_model_default_params()
params.vocab_only = True
model = LlamaModel(path_model=str(SMOLLM2_135M.gguf_path(Settings().cache_dir)), params=params, verbose=False)
n_vocab = llama_cpp.llama_vocab_n_tokens(model.vocab)
tool = ToolSpec("get_weather", "", {"type": "object", "properties": {"location": {"type": "string"}}})
grammar = ToolPlan([tool], ToolChoice("auto"), sys.argv[1]).grammar()

def allowed(sampler):
    data = (llama_cpp.llama_token_data * n_vocab)(*[llama_cpp.llama_token_data(i, 0.0, 0.0) for i in range(n_vocab)])
    array = llama_cpp.llama_token_data_array(data=data, size=n_vocab, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(sampler.sampler, ctypes.byref(array))
    return sum(1 for d in data if d.logit != float("-inf"))

def feed(sampler, text):
    for token in model.tokenize(text.encode(), add_bos=False, special=False):
        llama_cpp.llama_sampler_accept(sampler.sampler, token)

def run():
    sampler = LlamaSampler()
    add_grammar(sampler, model.vocab, grammar)
    started = time.perf_counter()
    feed(sampler, "Some prose, line after line, before the model decides to call.\n" * 200)
    prose_s = time.perf_counter() - started
    free = allowed(sampler)
    feed(sampler, sys.argv[2])
    print(json.dumps({"prose_s": prose_s, "free": free, "constrained": allowed(sampler), "vocab": n_vocab}))

threading.stack_size(256 * 1024)
thread = threading.Thread(target=run)
thread.start()
thread.join()
"""


@pytest.mark.parametrize(("template", "call"), [(HERMES_TEMPLATE, '<tool_call>\n{"name":'),
                                                (JSON_TEMPLATE, '\n{"name":')], ids=["hermes", "json"])
def test_long_free_text_before_a_lazy_call(template, call):
    """13,000 characters of prose under a lazy grammar, on a 256 KiB stack: the trigger search stays shallow
    and fast (its old leading `[\\s\\S]*?` made it cubic, and as deep as the output is long), and the call
    after it is still constrained."""
    proc = subprocess.run([sys.executable, "-c", LAZY_CHILD, template, call], capture_output=True, timeout=120)
    assert proc.returncode == 0, _exit_reason(proc.returncode) + proc.stderr.decode()[-1500:]
    result = json.loads(proc.stdout.decode().splitlines()[-1])
    assert result["prose_s"] < 30, result
    assert result["free"] == result["vocab"] and result["constrained"] < result["vocab"] // 10, result


# ---- (2) Claude Code's own tools ----------------------------------------------------------------------------

def test_claude_code_tools_compile_into_grammars(tmp_path):
    """Claude Code 2.1's real tool sets (`maxLength: 524288`, bounds of ±9007199254740991), forced and lazy, in
    the hermes syntax (Qwen) and the bare-JSON one: every tool's schema is enforced, none is left out."""
    cases = [{"id": name, "tools": tools, "templates": [HERMES_TEMPLATE, JSON_TEMPLATE]}
             for name, tools in CLAUDE_CODE.items()]
    results = compile_in_child(cases, tmp_path)
    assert len(results) == 8
    for result in results:
        assert result["grammar"] is not None and result["grammar"]["llama.cpp"] == "ok", result
        assert result["grammar"]["llguidance"] in ("ok", "absent"), result
        assert result["grammar"]["bytes"] < 200_000 and not result["warnings"], result


# ---- (3) end to end -----------------------------------------------------------------------------------------

def _without_descriptions(schema):
    """The schema as the grammar sees it, minus the prose that would make the small model's prompt long."""
    if isinstance(schema, dict):
        return {k: _without_descriptions(v) for k, v in schema.items() if k != "description"}
    if isinstance(schema, list):
        return [_without_descriptions(v) for v in schema]
    return schema


def test_claude_code_tools_any_gets_a_valid_call_and_the_server_lives(start_server):
    server = start_server()
    tools = [{"name": t["name"], "description": t["description"].split(".")[0],
              "input_schema": _without_descriptions(t["input_schema"])} for t in CLAUDE_CODE["later_turn"]]
    schemas = {t["name"]: t["input_schema"] for t in CLAUDE_CODE["later_turn"]}
    try:
        message = server.client().messages.create(
            model=SMOL, max_tokens=200, tools=tools, tool_choice={"type": "any"}, extra_body={"temperature": 0},
            messages=[{"role": "user", "content": "Read the file README.md"}])
    finally:
        assert server.proc.poll() is None, f"the server died: exit code {server.proc.returncode}"
    calls = [b for b in message.content if b.type == "tool_use"]
    assert calls, message.content
    for call in calls:
        jsonschema.Draft202012Validator(schemas[call.name]).validate(call.input)
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200


def test_bounds_the_grammar_drops_are_checked_after_parsing(caplog):
    """A bound too large to write flat leaves the grammar, so the parsed input is checked against the full
    schema: a violation is logged (with the request id, by the log filter), an input within it is not."""
    from parley.chat.call_check import CallChecker
    from parley.core.messages import ToolSpec

    schema = {"type": "object", "properties": {"content": {"type": "string", "maxLength": 524288},
                                               "n": {"type": "integer", "maximum": 9007199254740991}},
              "required": ["content"]}
    checker = CallChecker([ToolSpec("Write", "", schema)])
    with caplog.at_level("WARNING", logger="parley.chat.call_check"):
        assert checker.check("Write", {"content": "x" * 100, "n": 3})
        assert not caplog.records
        assert not checker.check("Write", {"content": "x" * 524289, "n": 2**60})
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "'Write'" in message and "content: " in message and "n: " in message
    assert checker.check("Unknown", {"anything": 1})  # a tool the request did not declare: nothing to check
