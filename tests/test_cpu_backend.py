"""llama.cpp's CPU backend is chosen at run time: the best variant the machine runs, or the one forced."""

from __future__ import annotations

import pytest

from conftest import SMOL
from parley.engines.llamacpp import cpu_backend

FOUND = cpu_backend.variants(cpu_backend.lib_dir())
pytestmark = pytest.mark.skipif(len(FOUND) < 2, reason="llama-cpp-python was built without CPU variants "
                                                        "(scripts/install.sh builds them)")


def _greedy(server) -> str:
    answer = server.client().messages.create(model=SMOL, max_tokens=12, extra_body={"temperature": 0},
                                             messages=[{"role": "user", "content": "Name a colour."}])
    assert answer.stop_reason in ("end_turn", "max_tokens") and answer.usage.output_tokens > 0
    return answer.content[0].text


def test_the_install_ships_a_portable_base_and_variants():
    assert "base" in FOUND and "haswell" in FOUND
    assert cpu_backend.score(FOUND["base"]) > 0  # the base runs anywhere


def test_the_server_loads_the_best_variant_this_cpu_runs(server):
    runnable = {name: cpu_backend.score(path) for name, path in FOUND.items()
                if name != "base" and name not in cpu_backend.NEEDS_AMX}
    best = max((s, name) for name, s in runnable.items() if s > 0)[1]
    _greedy(server)
    assert server.health()["models"][SMOL]["cpu_backend"] == best
    assert f"CPU backend: {best}" in server.log_text()


def test_a_forced_variant_is_loaded_and_serves(start_server):
    forced = start_server(environ={"PARLEY_CPU_BACKEND": "base"})
    assert _greedy(forced).strip()
    assert forced.health()["models"][SMOL]["cpu_backend"] == "base"


def test_an_unknown_variant_is_refused_with_the_ones_there_are():
    with pytest.raises(RuntimeError, match="no such CPU backend.*base"):
        cpu_backend.choose(FOUND, "pentium2")


def test_an_amx_variant_waits_for_the_kernel_to_grant_amx(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_backend, "amx_granted", lambda: False)
    found = {**FOUND, "sapphirerapids": tmp_path / "libggml-cpu-sapphirerapids.so"}
    monkeypatch.setattr(cpu_backend, "score", lambda path: 1 << 12 if "sapphire" in path.name else 1)
    assert cpu_backend.choose(found) != "sapphirerapids"
    monkeypatch.setattr(cpu_backend, "amx_granted", lambda: True)
    assert cpu_backend.choose(found) == "sapphirerapids"
