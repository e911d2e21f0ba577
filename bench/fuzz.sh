#!/usr/bin/env bash
# The long fuzz run: schemathesis with N examples per operation and mode (default 1000) against a real server.
set -euo pipefail
cd "$(dirname "$0")/.."
PARLEY_FUZZ_EXAMPLES="${1:-1000}" .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/test_fuzz.py
