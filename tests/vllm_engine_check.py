"""Engine-level checks of the vLLM engine on the converted Qwen2.5-Coder-0.5B, run by hand in the vLLM venv:

    $(python tests/vllm_env.py)  tests/vllm_engine_check.py [check ...]

Checks: decode, cancel, cache, forced, lazy, json, budget, logprobs (all by default). Prints one line per check
and the decode speed. Not a pytest module: the protocol suite covers vLLM through the server."""

from __future__ import annotations

import json
import queue
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from parley.core.messages import ChatMessage, Conversation, ToolSpec  # noqa: E402
from parley.core.params import ReasoningBudget, SamplingParams  # noqa: E402
from parley.engines.base import Done, Sampled, Started  # noqa: E402
from support.hf_model import packaged_qwen_hf  # noqa: E402

TOOLS = [
    ToolSpec("get_weather", "Current weather for a city",
             {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
              "required": ["city"]}),
    ToolSpec("add", "Add two integers",
             {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"]}),
]


@dataclass
class Run:
    items: list = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    start: float = 0.0

    @property
    def tokens(self) -> list[int]:
        return [i.token for i in self.items if isinstance(i, Sampled)]

    def text(self, engine) -> str:
        return b"".join(engine.token_bytes(t) for t in self.tokens).decode("utf-8", "replace")

    @property
    def cached(self) -> int:
        return next(i.cached_tokens for i in self.items if isinstance(i, Started))


def run(engine, prompt: list[int], params: SamplingParams, cancel_after: int | None = None) -> Run:
    q: queue.SimpleQueue = queue.SimpleQueue()
    out = Run(start=time.monotonic())
    gen = engine.submit(prompt, params, q.put)
    while True:
        item = q.get(timeout=300)
        out.items.append(item)
        out.times.append(time.monotonic())
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Done):
            return out
        if cancel_after is not None and len(out.tokens) == cancel_after:
            gen.cancel()


def render(engine, user: str, tools: list[ToolSpec] | None = None, system: str | None = None,
           prefill: str | None = None) -> list[int]:
    messages = [ChatMessage("user", user)] + ([ChatMessage("assistant", prefill)] if prefill is not None else [])
    text = engine.chat_template.render(Conversation(messages, system=system, tools=tools or []))
    return engine.tokenize(text)


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)
    return ok


def parse_calls(text: str) -> list[dict]:
    """Hermes-wrapped calls and ```json-fenced ones (both are syntaxes of the hermes format)."""
    found = re.findall(r"(?:<tool_call>|```json)\s*(\{.*?\})\s*(?:</tool_call>|```)", text, re.S)
    return [json.loads(m) for m in found]


def valid_call(call: dict) -> bool:
    import jsonschema

    tool = next((t for t in TOOLS if t.name == call.get("name")), None)
    if tool is None:
        return False
    try:
        jsonschema.validate(call["arguments"], tool.input_schema)
    except jsonschema.ValidationError:
        return False
    return True


def main(wanted: list[str]) -> int:
    from parley.core.params import GrammarConstraint
    from parley.engines.vllm import VllmEngine
    from parley.grammar.json_output import loose_gbnf
    from parley.grammar.tool_grammar import forced_grammar, lazy_grammar
    from parley.parsers.registry import tool_parser_for

    model = packaged_qwen_hf()
    t0 = time.monotonic()
    engine = VllmEngine(model, n_ctx=4096, max_num_seqs=8)
    print(f"loaded in {time.monotonic() - t0:.1f} s; n_ctx={engine.n_ctx} n_slots={engine.n_slots}", flush=True)
    greedy = dict(temperature=0.0)
    results = []
    try:
        if "decode" in wanted:
            prompt = render(engine, "Write one sentence about the sea.")
            r = run(engine, prompt, SamplingParams(max_tokens=48, **greedy))
            n = len(r.tokens)
            first = next(t for t, i in zip(r.times, r.items, strict=True) if isinstance(i, Sampled))
            rate = (n - 1) / (r.times[-1] - first) if n > 1 else 0.0
            distinct_times = len({round(t, 4) for t, i in zip(r.times, r.items, strict=True)
                                  if isinstance(i, Sampled)})
            results.append(check("decode", n > 3 and isinstance(r.items[-1], Done) and isinstance(r.items[0], Started),
                                 f"{n} tokens, TTFT {first - r.start:.2f} s, {rate:.1f} tok/s, arrivals at "
                                 f"{distinct_times} distinct times, eos={engine.is_end_of_generation(r.tokens[-1])}: "
                                 f"{r.text(engine)!r}"))
            r = run(engine, prompt, SamplingParams(max_tokens=5, **greedy))
            results.append(check("max_tokens", len(r.tokens) == 5 and isinstance(r.items[-1], Done),
                                 f"{len(r.tokens)} tokens for max_tokens=5"))
        if "cancel" in wanted:
            prompt = render(engine, "Count from 1 to 200, comma separated.")
            t = time.monotonic()
            r = run(engine, prompt, SamplingParams(max_tokens=300, **greedy), cancel_after=5)
            results.append(check("cancel", 5 <= len(r.tokens) <= 7 and isinstance(r.items[-1], Done),
                                 f"{len(r.tokens)} tokens then Done after cancel at 5 ({time.monotonic() - t:.2f} s)"))
            s = engine.stats()
            results.append(check("stats-after-cancel", s["busy_slots"] == 0, str(s)))
        if "cache" in wanted:
            prompt = render(engine, "Tell me about caching.", system="A fixed system prompt for the cache. " * 12)
            first = run(engine, prompt, SamplingParams(max_tokens=3, **greedy))
            second = run(engine, prompt, SamplingParams(max_tokens=3, **greedy))
            results.append(check("cache", second.cached > 0 and second.cached > first.cached,
                                 f"prompt {len(prompt)} tokens; cached first={first.cached} second={second.cached}"))
        fmt = tool_parser_for(engine.chat_template.source)
        if "forced" in wanted:
            grammar = forced_grammar(TOOLS, fmt.native, parallel=False)
            engine.check([], SamplingParams(max_tokens=1, grammar=grammar))
            prompt = render(engine, "What is the weather in Paris?", tools=TOOLS)
            r = run(engine, prompt, SamplingParams(max_tokens=120, grammar=grammar, **greedy))
            text = r.text(engine)
            calls = parse_calls(text)
            results.append(check("forced-grammar", fmt.name == "hermes" and len(calls) == 1 and valid_call(calls[0]),
                                 f"format {fmt.name}: {text!r}"))
            r = run(engine, prompt, SamplingParams(max_tokens=120, grammar=grammar, temperature=1.0, seed=7))
            calls = parse_calls(r.text(engine))
            results.append(check("forced-grammar-sampled", len(calls) == 1 and valid_call(calls[0]),
                                 repr(r.text(engine))))
        if "lazy" in wanted:
            grammar = lazy_grammar(TOOLS, fmt.syntaxes, parallel=False)
            engine.check([], SamplingParams(max_tokens=1, grammar=grammar))
            # Prefilled free text, then the model is asked to call: free text first, then a constrained call.
            prompt = render(engine, "What is 2+3? Use the add tool.", tools=TOOLS,
                            prefill="I will use the add tool now.\n")
            r = run(engine, prompt, SamplingParams(max_tokens=120, grammar=grammar, **greedy))
            text = r.text(engine)
            calls = parse_calls(text)
            results.append(check("lazy-grammar", len(calls) == 1 and valid_call(calls[0]), repr(text)))
            prompt = render(engine, "Say hello in French, one word.", tools=TOOLS)
            r = run(engine, prompt, SamplingParams(max_tokens=20, grammar=grammar, **greedy))
            results.append(check("lazy-grammar-free-text", "<tool_call>" not in r.text(engine), repr(r.text(engine))))
            # A schema the model would not follow on its own: the grammar must be what makes the call valid.
            odd = [ToolSpec("lookup", "Look a record up", {"type": "object", "properties": {
                "code": {"enum": ["XQ-17"]}, "count": {"type": "integer"}}, "required": ["code", "count"]})]
            grammar = lazy_grammar(odd, fmt.syntaxes, parallel=False)
            prompt = render(engine, "Look up the city Paris with the lookup tool.", tools=odd, prefill="Sure!")
            free = run(engine, prompt, SamplingParams(max_tokens=80, **greedy)).text(engine)
            r = run(engine, prompt, SamplingParams(max_tokens=80, grammar=grammar, **greedy))
            text = r.text(engine)
            calls = parse_calls(text)
            ok = len(calls) == 1 and calls[0]["arguments"].get("code") == "XQ-17" and isinstance(
                calls[0]["arguments"].get("count"), int)
            results.append(check("lazy-grammar-engages", ok and text != free,
                                 f"unconstrained {free!r} / lazy {text!r}; text before call: "
                                 f"{text.split('<tool_call>')[0]!r}"))
        if "json" in wanted:
            schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                      "required": ["name", "age"], "additionalProperties": False}
            grammar = GrammarConstraint(loose_gbnf(schema, "schema"))
            prompt = render(engine, "Give a JSON object describing a person named Ann aged 31.")
            r = run(engine, prompt, SamplingParams(max_tokens=60, grammar=grammar, **greedy))
            text = r.text(engine)
            try:
                import jsonschema

                jsonschema.validate(json.loads(text.strip().removesuffix("<|im_end|>")), schema)
                ok = True
            except Exception as exc:
                ok, text = False, f"{text!r} ({exc})"
            results.append(check("json-grammar", ok, repr(text)))
        if "budget" in wanted:
            budget = ReasoningBudget(max_tokens=5, close_text="\n</think>\n\n", open_text="<think>", starts_open=True)
            prompt = render(engine, "Why is the sky blue?", prefill="<think>\n")
            r = run(engine, prompt, SamplingParams(max_tokens=30, reasoning_budget=budget, **greedy))
            close = engine.tokenize(budget.close_text)
            toks = r.tokens
            results.append(check("reasoning-budget", toks[5:5 + len(close)] == close and len(toks) > 5 + len(close),
                                 f"close {close} at 5: {r.text(engine)!r}"))
            # The model ends its turn inside the reasoning (the prompt "opened" it): the close is forced instead.
            prompt = render(engine, "Reply with just OK.", prefill="OK.")
            plain = run(engine, prompt, SamplingParams(max_tokens=5, **greedy)).tokens
            budget = ReasoningBudget(max_tokens=50, close_text="\n</think>\n\n", open_text="<think>", starts_open=True)
            r = run(engine, prompt, SamplingParams(max_tokens=40, reasoning_budget=budget, **greedy))
            ok = engine.is_end_of_generation(plain[0]) and r.tokens[:len(close)] == close
            results.append(check("reasoning-eos-closes", ok, f"without budget {plain}; with: {r.text(engine)!r}"))
        if "logprobs" in wanted:
            prompt = render(engine, "Say hi.")
            r = run(engine, prompt, SamplingParams(max_tokens=4, logprobs=3, **greedy))
            s = [i for i in r.items if isinstance(i, Sampled)]
            ok = all(i.logprob is not None and len(i.top) == 3 and i.top[0].token == i.token for i in s)
            results.append(check("logprobs", ok, str([(i.token, round(i.logprob, 3), [t.token for t in i.top])
                                                      for i in s])))
        if "batch" in wanted:
            import threading

            prompt = render(engine, "Write a short poem about rivers.")
            runs: list[Run] = []
            t = time.monotonic()
            threads = [threading.Thread(target=lambda seed=i: runs.append(run(engine, prompt, SamplingParams(
                max_tokens=32, temperature=0.8, seed=seed)))) for i in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            total = sum(len(r.tokens) for r in runs)
            results.append(check("batch-8", len(runs) == 8, f"{total} tokens in {time.monotonic() - t:.1f} s: "
                                 f"{total / (time.monotonic() - t):.1f} tok/s aggregate"))
    finally:
        t = time.monotonic()
        engine.close()
        print(f"closed in {time.monotonic() - t:.1f} s", flush=True)
    print(f"{sum(results)}/{len(results)} passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    default = ["decode", "cancel", "cache", "forced", "lazy", "json", "budget", "logprobs", "batch"]
    sys.exit(main(sys.argv[1:] or default))
