"""npm packages as test and benchmark clients: installed once into parley's cache, pinned by version."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("PARLEY_NPM_CACHE", Path.home() / ".cache" / "parley" / "npm"))
# What npm prints when the registry cannot be reached at all (as opposed to a package that fails).
_OFFLINE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|network", re.IGNORECASE)


class NpmUnavailable(RuntimeError):
    """npm or its registry cannot be reached here: tests that need it skip, saying so."""


def npm_install(*specs: str) -> Path:
    """`node_modules` holding `specs` (e.g. `@anthropic-ai/sdk@0.71.0`), installed on first use."""
    dest = CACHE / "+".join(s.replace("/", "_") for s in specs)
    done = dest / ".installed"
    if done.exists():
        return dest / "node_modules"
    if shutil.which("npm") is None:
        raise NpmUnavailable("npm is not installed on this machine")
    dest.mkdir(parents=True, exist_ok=True)
    # --ignore-scripts: Claude Code's postinstall only copies the platform binary we run directly.
    cmd = ["npm", "install", "--prefix", str(dest), "--no-audit", "--no-fund", "--ignore-scripts", *specs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        if _OFFLINE.search(proc.stderr):
            raise NpmUnavailable(f"the npm registry is unreachable: {proc.stderr.strip()[-300:]}")
        raise RuntimeError(f"npm install {' '.join(specs)} failed: {proc.stderr.strip()[-2000:]}")
    done.touch()
    return dest / "node_modules"
