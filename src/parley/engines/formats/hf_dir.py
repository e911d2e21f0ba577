"""A Hugging Face model directory (config.json + safetensors + tokenizer), as MLX and vLLM open it: what it
says about itself, from its config files."""

from __future__ import annotations

import json
from pathlib import Path

from .facts import CorruptModelError, ModelFacts


def is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _chat_template(path: Path) -> str | None:
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    config = path / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def read_hf_facts(path: Path) -> ModelFacts:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"unreadable config.json: {exc}") from exc
    arch = config.get("model_type")
    if not isinstance(arch, str):
        raise CorruptModelError("config.json has no model_type")
    quant = config.get("quantization") or config.get("quantization_config") or {}
    bits = quant.get("bits") if isinstance(quant, dict) else None
    label = f"{bits}-bit" if bits else str(config.get("torch_dtype") or config.get("dtype") or "f16")
    ctx = config.get("max_position_embeddings")
    return ModelFacts(arch, ctx if isinstance(ctx, int) else None, None, _chat_template(path), label)
