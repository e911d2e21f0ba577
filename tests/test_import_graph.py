"""The import graph of src/parley (scripts/import_graph.py): no file-level cycle, no arrow to a higher layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_the_import_graph_has_no_cycle_and_points_down():
    result = _check()
    assert result.returncode == 0 and " 0 problems" in result.stdout, result.stdout


def test_the_checker_reports_a_cycle_and_an_upward_import(tmp_path):
    package = tmp_path / "src" / "parley"
    (package / "core").mkdir(parents=True)
    (package / "api").mkdir()
    (package / "__init__.py").write_text("")
    (package / "core" / "__init__.py").write_text("")
    (package / "api" / "__init__.py").write_text("")
    (package / "core" / "a.py").write_text("from . import b\n")
    (package / "core" / "b.py").write_text("from .a import x\n")
    (package / "core" / "c.py").write_text("def f():\n    from ..api import routes  # lazy, still an arrow\n")
    (package / "api" / "routes.py").write_text("ROUTES = []\n")
    result = _check("--root", str(tmp_path / "src"))
    assert result.returncode == 1, result.stdout
    assert "cycle: parley.core.a <-> parley.core.b" in result.stdout
    assert "src/parley/core/c.py:2: core imports api (parley.api.routes)" in result.stdout
    assert " 2 problems" in result.stdout
