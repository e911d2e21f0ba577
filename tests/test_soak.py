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


def test_soak_with_the_model_process_killed_every_few_dozen_requests():
    """Every client gets a well-formed answer or a well-formed crash error; the server keeps serving."""
    soak = _soak_module()
    result = soak.soak(clients=12, requests=200, model=SMOL, max_tokens=16, leave_share=1 / 3,
                       server_args=["--parallel", "4"], kill_every=40)
    assert result["malformed_count"] == 0 and result["server_errors_5xx"] == 0, result
    assert result["kills"] >= 3 and result["restarts"] >= result["kills"], result
    assert result["crashed"] >= 1, result  # the kills landed on requests in flight
    assert result["completed"] + result["disconnected"] + result["crashed"] == 200, result
    assert result["completed"] >= 100, result
    assert result["settled"] and result["tokens_after_settle"] == 0, result
    assert result["rss_growth"] < 0.05, result  # the API process's memory
