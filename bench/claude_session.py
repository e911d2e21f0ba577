"""A Claude Code session that already holds many turns, written where Claude Code keeps its transcripts, so that
`claude -p … --resume ID` continues a long conversation deterministically (no model had to produce it).

Each turn is what an agent session is made of: the user asks about a file, the assistant calls Read, the tool
result is the whole file (numbered as Claude Code's Read returns it), and the assistant answers. The files are
written into the project too, so the conversation is true to it."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from claude_code import CLAUDE_CODE_VERSION

FUNCTIONS_PER_FILE = 40


def module_lines(k: int) -> Iterator[str]:
    """The lines of an endless Python module of small functions, distinct for each `k`."""
    yield f'"""Module {k}: helpers for inventory batch {k}."""'
    yield ""
    for j in itertools.count():
        yield f"def item_{k}_{j}(count: int) -> int:"
        yield f'    """Return the adjusted count for item {j} of batch {k}."""'
        yield f"    return count * {j + 2} + {k * 7 + j}"
        yield ""


def module_source(k: int) -> str:
    """A Python module of FUNCTIONS_PER_FILE small functions (~2,000 tokens once numbered by Read)."""
    return "\n".join(itertools.islice(module_lines(k), 2 + 4 * FUNCTIONS_PER_FILE))


def transcript_folder(home: Path, project: Path) -> Path:
    """Where Claude Code keeps the sessions of `project`: every character but letters and digits becomes '-'."""
    return home / ".claude" / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(project))


def seed_session(home: Path, project: Path, turns: int, model: str) -> str:
    """Writes `turns` Read turns into `project` and a transcript of them under `home`; returns the session id."""
    session = str(uuid.uuid4())
    rows: list[dict[str, Any]] = []
    clock = datetime(2026, 12, 7, 12, 0, 0)

    def add(role: str, content: Any) -> None:
        nonlocal clock
        clock += timedelta(seconds=5)
        message: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant":
            calls = any(block.get("type") == "tool_use" for block in content)
            message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": role, "model": model,
                       "content": content, "stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None,
                       "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                                 "output_tokens": 0}}
        rows.append({"parentUuid": rows[-1]["uuid"] if rows else None, "isSidechain": False, "type": role,
                     "message": message, "uuid": str(uuid.uuid4()), "timestamp": clock.isoformat() + "Z",
                     "userType": "external", "cwd": str(project), "sessionId": session,
                     "version": CLAUDE_CODE_VERSION})

    for k in range(1, turns + 1):
        source = module_source(k)
        path = project / f"inventory_{k}.py"
        path.write_text(source)
        add("user", f"Read inventory_{k}.py and tell me what it defines.")
        call = f"toolu_{uuid.uuid4().hex[:24]}"
        add("assistant", [{"type": "tool_use", "id": call, "name": "Read", "input": {"file_path": str(path)}}])
        numbered = "\n".join(f"{i:>6}\t{line}" for i, line in enumerate(source.splitlines(), 1))
        add("user", [{"type": "tool_result", "tool_use_id": call, "content": numbered}])
        add("assistant", [{"type": "text", "text": f"inventory_{k}.py defines {FUNCTIONS_PER_FILE} functions, "
                                                   f"item_{k}_0 to item_{k}_{FUNCTIONS_PER_FILE - 1}; each returns "
                                                   "the count times a factor plus an offset."}])
    folder = transcript_folder(home, project)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{session}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return session
