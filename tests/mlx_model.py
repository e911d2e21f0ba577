"""A tiny MLX model for the tests: random weights in the Qwen2 architecture (2 layers, hidden size 64),
saved the way mlx-lm saves models (config.json + model.safetensors), with the real tokenizer and chat template
of the packaged Qwen2.5-Coder GGUF rebuilt as a Hugging Face `tokenizer.json`. It exercises the real MLX
loading and generation code; its output is noise, so tests assert protocol behaviour, not answers."""

from __future__ import annotations

import json
from pathlib import Path

import gguf

# Qwen2's pre-tokenizer split (as in its tokenizer.json).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CONTROL = 3  # llama.cpp token type of special tokens
STAMP = "tiny-qwen2-v1"


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def write_tokenizer(source: Path, target: Path) -> None:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    reader = gguf.GGUFReader(source, "r")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t, kind in zip(tokens, types, strict=True) if kind == CONTROL])
    tokenizer.save(str(target / "tokenizer.json"))
    eos = tokens[_field(reader, "tokenizer.ggml.eos_token_id")]
    (target / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos, "pad_token": eos, "bos_token": None,
        "chat_template": _field(reader, "tokenizer.chat_template"), "model_max_length": 32768}))


def build_tiny_mlx_model(source_gguf: Path, target: Path) -> Path:
    """Build once into `target` (cached by a stamp file)."""
    if (target / STAMP).is_file():
        return target
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    target.mkdir(parents=True, exist_ok=True)
    write_tokenizer(source_gguf, target)
    vocab = len(json.loads((target / "tokenizer.json").read_text())["model"]["vocab"])
    config = {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": vocab,
              "tie_word_embeddings": True, "rope_theta": 1000000.0, "max_position_embeddings": 4096}
    mx.random.seed(0)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    mx.save_safetensors(str(target / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (target / "config.json").write_text(json.dumps(config))
    (target / STAMP).touch()
    return target
