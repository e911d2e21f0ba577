"""Tool calling with tool_choice auto: parley with the lazy tool grammar on vs off (PARLEY_TOOL_GRAMMAR), on
the same GGUF and the same fixed prompts, in one invocation: both servers run at once and take turns prompt
by prompt, the first of each pair alternating, so neither meets a quieter machine. For each server: share of
turns with a tool_use block, share of tool_use inputs valid against their tool's input_schema, share of turns
ending in stop_reason tool_use, share calling the expected tool, mean output tokens and decode speed. Prints a
comparison table; writes JSON with --json.

    .venv/bin/python bench/tool_calls.py [--model qwen2.5-coder-0.5b-instruct] [--limit N] [--rounds R] [--json PATH]

Decode tok/s is measured on the stream: sum over turns of (output_tokens - 1) over the sum of the times from
a turn's first content_block_delta to its last (turns with fewer than two deltas are left out). Tokens the
model generates before the first delta (e.g. a tool call's `<tool_call>{"name": ...` preamble) fall outside
the window, so this over-states tool-call turns somewhat, alike for both servers; "e2e tok/s" (output tokens
over the whole request time, prefill included) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
from common import log_tail, start_parley, stop_process

TOOLS: list[dict[str, Any]] = [
    {
        "name": "get_weather",
        "description": "Get the current weather for a location.",
        "input_schema": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City and country, e.g. 'Paris, France'."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit."},
            },
            "required": ["location"],
        },
    },
    {
        "name": "send_email",
        "description": "Send an email to one recipient.",
        "input_schema": {
            "type": "object",
            "properties": {
                "to": {"type": "string", "description": "Recipient email address."},
                "subject": {"type": "string", "description": "Subject line."},
                "body": {"type": "string", "description": "Plain-text body."},
            },
            "required": ["to", "subject", "body"],
        },
    },
    {
        "name": "search_web",
        "description": "Search the web and return the top results.",
        "input_schema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Search query."},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 10, "description": "How many results."},
            },
            "required": ["query"],
        },
    },
    {
        "name": "create_event",
        "description": "Create a calendar event.",
        "input_schema": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "description": "Event title."},
                "start": {"type": "string", "description": "Start date and time, ISO 8601."},
                "attendees": {"type": "array", "items": {"type": "string"}, "description": "Attendee emails."},
            },
            "required": ["title", "start"],
        },
    },
    {
        "name": "convert_currency",
        "description": "Convert an amount of money from one currency to another.",
        "input_schema": {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "description": "Amount to convert."},
                "from": {"type": "string", "minLength": 3, "maxLength": 3, "description": "ISO 4217 code, e.g. USD."},
                "to": {"type": "string", "minLength": 3, "maxLength": 3, "description": "ISO 4217 code, e.g. EUR."},
            },
            "required": ["amount", "from", "to"],
        },
    },
    {
        "name": "set_reminder",
        "description": "Set a reminder that fires after a number of minutes.",
        "input_schema": {
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "What to be reminded of."},
                "minutes": {"type": "integer", "minimum": 1, "description": "Minutes from now."},
            },
            "required": ["text", "minutes"],
        },
    },
]
SCHEMAS = {t["name"]: t["input_schema"] for t in TOOLS}

# (prompt, expected tool or None when no tool is called for)
PROMPTS: list[tuple[str, str | None]] = [
    ("What's the weather like in Paris right now?", "get_weather"),
    ("Is it cold in Toronto today? Give me the temperature in fahrenheit.", "get_weather"),
    ("Check the weather in Tokyo, Japan in celsius please.", "get_weather"),
    ("Do I need an umbrella in London this afternoon?", "get_weather"),
    ("How hot is it in Phoenix, Arizona?", "get_weather"),
    ("Email bob@example.com with the subject 'Lunch' and tell him I'll be 10 minutes late.", "send_email"),
    ("Send an email to alice@corp.io saying the quarterly report is attached. Subject: Q3 report.", "send_email"),
    ("Write to hr@company.com that I'm taking Friday off; subject 'Day off'.", "send_email"),
    ("Let carol@example.org know by email that the meeting moved to 3pm (subject: Meeting time).", "send_email"),
    ("Search the web for the latest Python 3.13 release notes.", "search_web"),
    ("Find me 3 articles about the James Webb Space Telescope.", "search_web"),
    ("Look up the best hiking trails near Denver, top 5 results.", "search_web"),
    ("Who won the 2022 FIFA World Cup? Search online.", "search_web"),
    ("Search for reviews of the Framework laptop 16.", "search_web"),
    ("Schedule a team standup on 2025-03-10T09:00 with dan@x.com and eve@x.com.", "create_event"),
    ("Create an event called 'Dentist' starting 2025-04-02 14:30.", "create_event"),
    ("Put a 'Project kickoff' meeting on my calendar for next Monday at 10am with pm@acme.com.", "create_event"),
    ("Add my birthday party to the calendar on 2025-07-19T18:00, invite ann@mail.com, joe@mail.com.", "create_event"),
    ("Convert 100 US dollars to euros.", "convert_currency"),
    ("How many Japanese yen is 250 GBP?", "convert_currency"),
    ("I have 1,500 Swiss francs. What is that in USD?", "convert_currency"),
    ("Convert 42.5 EUR to CAD.", "convert_currency"),
    ("What's 9999 INR in Australian dollars?", "convert_currency"),
    ("Remind me to call mom in 30 minutes.", "set_reminder"),
    ("Set a reminder to take the pizza out of the oven in 12 minutes.", "set_reminder"),
    ("In two hours remind me to stretch.", "set_reminder"),
    ("Set a reminder for 5 minutes from now: check the laundry.", "set_reminder"),
    ("Ping me in 45 minutes to join the webinar.", "set_reminder"),
    ("Is it snowing in Oslo? Use celsius.", "get_weather"),
    ("Search the web for a chocolate chip cookie recipe, just 2 results.", "search_web"),
    ("Write a Python function that reverses a string.", None),
    ("What is 17 times 23?", None),
    ("Explain in one sentence what a hash map is.", None),
    ("Translate 'good morning' into Spanish.", None),
    ("Hi! How are you today?", None),
    ("Give me a haiku about autumn.", None),
]


def _one_turn(client: anthropic.Anthropic, model: str, prompt: str) -> dict[str, Any]:
    start = time.perf_counter()
    first = last = None
    n_deltas = 0
    output_tokens = 0
    stop_reason = None
    blocks: dict[int, dict[str, Any]] = {}  # index -> {"type", "name", "raw"/"text"}
    with client.messages.stream(model=model, max_tokens=256, tools=TOOLS, tool_choice={"type": "auto"},
                                messages=[{"role": "user", "content": prompt}],
                                extra_body={"temperature": 0}) as stream:
        for event in stream:
            if event.type == "content_block_start":
                block = event.content_block
                blocks[event.index] = {"type": block.type, "name": getattr(block, "name", None), "raw": ""}
            elif event.type == "content_block_delta":
                last = time.perf_counter()
                first = first or last
                n_deltas += 1
                delta = event.delta
                if delta.type == "input_json_delta":
                    blocks[event.index]["raw"] += delta.partial_json
                elif delta.type == "text_delta":
                    blocks[event.index]["raw"] += delta.text
            elif event.type == "message_delta":
                output_tokens = event.usage.output_tokens
                stop_reason = event.delta.stop_reason
    end = time.perf_counter()
    calls = []
    text = ""
    for _, block in sorted(blocks.items()):
        if block["type"] == "text":
            text += block["raw"]
        elif block["type"] == "tool_use":
            call: dict[str, Any] = {"name": block["name"], "raw_input": block["raw"], "valid": False, "error": None}
            try:
                call["input"] = json.loads(block["raw"]) if block["raw"].strip() else {}
            except json.JSONDecodeError as exc:
                call["error"] = f"invalid JSON: {exc}"
            else:
                schema = SCHEMAS.get(block["name"])
                if schema is None:
                    call["error"] = f"unknown tool {block['name']!r}"
                else:
                    try:
                        jsonschema.validate(call["input"], schema)
                        call["valid"] = True
                    except jsonschema.ValidationError as exc:
                        call["error"] = f"schema: {exc.message}"
            calls.append(call)
    return {"prompt": prompt, "stop_reason": stop_reason, "output_tokens": output_tokens, "text": text,
            "tool_calls": calls, "wall_s": end - start, "ttfd_s": (first - start) if first else None,
            "decode_window_s": (last - first) if first and n_deltas >= 2 else None, "error": None}


class _Server:
    """One parley server under test, restarted (into a new log) if a request kills it."""

    def __init__(self, model: str, grammar: bool, log_path: Path) -> None:
        self.model, self.grammar, self.log_path = model, grammar, log_path
        self.label = "grammar on" if grammar else "grammar off"
        self.turns: list[dict[str, Any]] = []
        self._start(log_path)
        # Warm-up (model load); not counted.
        try:
            self.client.messages.create(model=model, max_tokens=1, messages=[{"role": "user", "content": "hi"}])
        except anthropic.APIError as exc:
            print(f"[{self.label}] warm-up failed: {exc}", file=sys.stderr)

    def _start(self, log_path: Path) -> None:
        env = {"PARLEY_TOOL_GRAMMAR": "true" if self.grammar else "false", "PARLEY_N_CTX": "4096"}
        self.proc, url = start_parley(timeout=120, env=env, log=log_path)
        self.client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, timeout=600)

    def turn(self, i: int, n: int, prompt: str, expected: str | None) -> None:
        load = os.getloadavg()[0]
        try:
            turn = _one_turn(self.client, self.model, prompt)
        except (anthropic.APIError, httpx.HTTPError) as exc:
            status = getattr(exc, "status_code", None)
            turn = {"prompt": prompt, "error": f"{type(exc).__name__} {status or ''}: {exc}".strip(),
                    "status_code": status, "tool_calls": []}
            print(f"[{self.label}] request {i} failed: {turn['error']}", file=sys.stderr)
            if self.proc.poll() is not None:
                print(f"[{self.label}] server died ({self.proc.returncode}); log tail:\n{log_tail(self.log_path)}",
                      file=sys.stderr)
                self._start(self.log_path.with_suffix(f".restart{i}.log"))
        turn["expected"] = expected
        turn["load_avg_before"] = load
        self.turns.append(turn)
        summary = turn["error"] or ", ".join(
            f"{c['name']}{'' if c['valid'] else ' INVALID'}" for c in turn["tool_calls"]) or "(text)"
        print(f"[{self.label}] {i + 1:>2}/{n} {turn.get('wall_s', 0):5.1f}s "
              f"{turn.get('output_tokens', 0):>3} tok  {summary}", file=sys.stderr, flush=True)

    def result(self) -> dict[str, Any]:
        stop_process(self.proc)
        return {"grammar": self.grammar, "log": str(self.log_path), "metrics": _metrics(self.turns),
                "turns": self.turns}


def run_in_turns(model: str, prompts: list[tuple[str, str | None]], rounds: int, log_dir: Path
                 ) -> dict[str, dict[str, Any]]:
    """Both servers up at once, taking turns prompt by prompt, and which goes first alternates: each meets
    the same machine (load, heat, page cache) within seconds of the other."""
    servers = {"on": _Server(model, True, log_dir / "server-grammar-on.log"),
               "off": _Server(model, False, log_dir / "server-grammar-off.log")}
    try:
        work = [(r, i, p) for r in range(rounds) for i, p in enumerate(prompts)]
        for step, (_, i, (prompt, expected)) in enumerate(work):
            order = ("on", "off") if step % 2 == 0 else ("off", "on")
            for key in order:
                servers[key].turn(i, len(prompts), prompt, expected)
    finally:
        results = {key: server.result() for key, server in servers.items()}
    return results


def _metrics(turns: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [t for t in turns if not t["error"]]
    n = len(ok)
    calls = [c for t in ok for c in t["tool_calls"]]
    windows = [t for t in ok if t["decode_window_s"]]
    tool_expected = [t for t in ok if t["expected"]]
    none_expected = [t for t in ok if not t["expected"]]

    def share(k: int, of: int) -> float | None:
        return k / of if of else None

    return {
        "turns": len(turns),
        "errors": len(turns) - n,
        "tool_use_turn_share": share(sum(bool(t["tool_calls"]) for t in ok), n),
        "valid_input_share": share(sum(c["valid"] for c in calls), len(calls)),
        "tool_calls": len(calls),
        "invalid_calls": len(calls) - sum(c["valid"] for c in calls),
        "stop_tool_use_share": share(sum(t["stop_reason"] == "tool_use" for t in ok), n),
        "expected_tool_share": share(sum(any(c["name"] == t["expected"] for c in t["tool_calls"])
                                         for t in tool_expected), len(tool_expected)),
        "no_tool_when_none_expected_share": share(sum(not t["tool_calls"] for t in none_expected),
                                                  len(none_expected)),
        "mean_output_tokens": share(sum(t["output_tokens"] for t in ok), n),
        "decode_tok_s": share(sum(t["output_tokens"] - 1 for t in windows),
                              sum(t["decode_window_s"] for t in windows)) if windows else None,
        "e2e_tok_s": share(sum(t["output_tokens"] for t in ok), sum(t["wall_s"] for t in ok)) if ok else None,
        "mean_wall_s": share(sum(t["wall_s"] for t in ok), n),
    }


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--limit", type=int, help="run only the first N prompts")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rounds", type=int, default=1, help="times through the prompts (default 1)")
    args = parser.parse_args()

    prompts = PROMPTS[: args.limit] if args.limit else PROMPTS
    log_dir = Path(tempfile.mkdtemp(prefix="parley-tool-bench-"))
    results = run_in_turns(args.model, prompts, args.rounds, log_dir)

    on, off = results["on"]["metrics"], results["off"]["metrics"]
    rows = [
        ("turns", "turns", False), ("request errors", "errors", False),
        ("turns with tool_use", "tool_use_turn_share", True), ("valid tool inputs", "valid_input_share", True),
        ("tool calls", "tool_calls", False), ("invalid tool calls", "invalid_calls", False),
        ("stop_reason tool_use", "stop_tool_use_share", True), ("expected tool called", "expected_tool_share", True),
        ("no tool when none due", "no_tool_when_none_expected_share", True),
        ("mean output tokens", "mean_output_tokens", False), ("decode tok/s", "decode_tok_s", False),
        ("e2e tok/s", "e2e_tok_s", False), ("mean wall s", "mean_wall_s", False),
    ]
    print(f"model {args.model}, {len(prompts)} prompts x {args.rounds} rounds, servers taking turns, "
          "tool_choice auto, temperature 0, n_ctx 4096")
    print(f"{'metric':<24}{'grammar on':>12}{'grammar off':>13}")
    for label, key, pct in rows:
        print(f"{label:<24}{_fmt(on[key], pct):>12}{_fmt(off[key], pct):>13}")
    ratio = on["decode_tok_s"] / off["decode_tok_s"] if on["decode_tok_s"] and off["decode_tok_s"] else None
    e2e_ratio = on["e2e_tok_s"] / off["e2e_tok_s"] if on["e2e_tok_s"] and off["e2e_tok_s"] else None
    print(f"{'decode tok/s on/off':<24}{_fmt(ratio):>12}")
    print(f"{'e2e tok/s on/off':<24}{_fmt(e2e_ratio):>12}")

    for key in ("on", "off"):
        for t in results[key]["turns"]:
            for c in t["tool_calls"]:
                if not c["valid"]:
                    print(f"grammar {key}: invalid {c['name']} for {t['prompt']!r}: {c['error']} :: {c['raw_input']!r}")
            if t["error"]:
                print(f"grammar {key}: error for {t['prompt']!r}: {t['error']}")
    loads = [t["load_avg_before"] for t in results["on"]["turns"] + results["off"]["turns"]]
    print(f"1-min load average before a turn: {min(loads):.2f}..{max(loads):.2f} ({os.cpu_count()} CPUs)")
    print(f"server logs: {log_dir}")

    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "prompts": len(prompts), "rounds": args.rounds,
                                         "decode_tok_s_ratio": ratio,
                                         "e2e_tok_s_ratio": e2e_ratio, "results": results}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
