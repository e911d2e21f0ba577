"""An MLX model directory's vocabulary: the shared Hugging Face one (hf_vocab.py) over mlx-lm's tokenizer,
whose end-of-generation ids mlx-lm works out from the config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..formats.hf_vocab import HFVocab


def mlx_available() -> str | None:
    """None when the MLX engine can run here, else why not."""
    try:
        import llguidance  # noqa: F401
        import mlx.core  # noqa: F401
        import mlx_lm  # noqa: F401
    except ImportError as exc:
        return f"the MLX engine is not installed ({exc.name}): pip install 'parley[mlx]'"
    return None


class MlxVocab(HFVocab):
    def __init__(self, path: Path, tokenizer: Any = None) -> None:
        """`tokenizer`: mlx-lm's wrapper as `mlx_lm.load` returned it; loaded from `path` when not given."""
        if tokenizer is None:
            from mlx_lm.utils import load_tokenizer

            config = json.loads((path / "config.json").read_text())
            tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
        self.wrapper = tokenizer
        super().__init__(path, tokenizer._tokenizer, eos_ids=tokenizer.eos_token_ids)
