"""A shortened soak (bench/soak.py runs the full 100 clients × 1,000 requests): concurrent clients, a third
leaving mid-stream, a queue that overflows — well-formed answers, typed 529s, nothing left running."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from conftest import SMOL


def _soak_module():
    path = Path(__file__).resolve().parent.parent / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("parley_bench_soak", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_short_soak():
    soak = _soak_module()
    result = soak.soak(clients=20, requests=150, model=SMOL, max_tokens=16, leave_share=1 / 3,
                       server_args=["--max-queue", "14", "--parallel", "4"])
    assert result["server_errors_5xx"] == 0 and result["malformed_count"] == 0, result
    assert result["completed"] + result["disconnected"] + result["overloaded_529"] == 150, result  # all accounted
    assert result["completed"] >= 20 and result["disconnected"] >= 5, result
    assert result["overloaded_529"] >= 1, result  # 20 clients > 4 slots + 14 queued
    assert result["settled"] and result["tokens_after_settle"] == 0, result
    assert result["rss_growth"] < 0.05, result
