"""The packaged Qwen2.5-Coder-0.5B GGUF as a Hugging Face model directory (config.json + safetensors +
tokenizer), for the engines that serve HF directories (vLLM). The conversion itself is mlx_model.py's
`gguf_to_hf` (dequantized with the `gguf` package; llama.cpp does not permute Qwen2's q/k weights); this adds
the end-of-generation ids from the GGUF header, which vLLM and the vocabulary read from config.json."""

from __future__ import annotations

import json
from pathlib import Path

import gguf

from .mlx_model import gguf_to_hf

STAMP = "converted-hf-v1"


def build_hf_qwen(source_gguf: Path, target: Path) -> Path:
    """Build once into `target` (cached by a stamp file); returns `target`."""
    if (target / STAMP).is_file():
        return target
    gguf_to_hf(source_gguf, target)
    reader = gguf.GGUFReader(source_gguf, "r")
    eos = int(reader.fields["tokenizer.ggml.eos_token_id"].contents())
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config["eos_token_id"] = eos
    config_path.write_text(json.dumps(config))
    (target / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    (target / STAMP).touch()
    return target


def packaged_qwen_hf() -> Path:
    """The converted model in parley's cache (`test-models/qwen2.5-0.5b-hf`)."""
    from parley.models.packaged import QWEN_CODER_05B
    from parley.settings import Settings

    cache = Settings().cache_dir
    return build_hf_qwen(QWEN_CODER_05B.gguf_path(cache), cache / "test-models" / "qwen2.5-0.5b-hf")


if __name__ == "__main__":
    print(packaged_qwen_hf())
