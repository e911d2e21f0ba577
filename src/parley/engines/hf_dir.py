"""What `parley models` and the registry need to know of an MLX model directory, from its config files."""

from __future__ import annotations

import json
from pathlib import Path

from .gguf_info import CorruptModelError, GGUFInfo


def _chat_template(path: Path) -> str | None:
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    config = path / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def read_mlx_info(path: Path) -> GGUFInfo:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"unreadable config.json: {exc}") from exc
    arch = config.get("model_type")
    if not isinstance(arch, str):
        raise CorruptModelError("config.json has no model_type")
    quant = config.get("quantization") or config.get("quantization_config") or {}
    bits = quant.get("bits") if isinstance(quant, dict) else None
    label = f"MLX {bits}-bit" if bits else f"MLX {config.get('torch_dtype', 'f16')}"
    ctx = config.get("max_position_embeddings")
    return GGUFInfo(arch, ctx if isinstance(ctx, int) else None, None, _chat_template(path), label)
