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


# GGUF tensor names → Hugging Face Qwen2 names (llama.cpp does not permute Qwen2's q/k weights).
_QWEN2_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
REAL_STAMP = "converted-f32-v1"


def _hf_name(name: str) -> str:
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    _, layer, part, kind = name.split(".")
    return f"model.layers.{layer}.{_QWEN2_NAMES[part]}.{kind}"


def gguf_to_hf(source: Path, target: Path) -> Path:
    """The packaged Qwen2 GGUF as a Hugging Face checkpoint: weights dequantized to float16 (with the `gguf`
    package's own dequantizers), config from the GGUF header, the tokenizer rebuilt as above."""
    import numpy as np
    from gguf.quants import dequantize
    from safetensors.numpy import save_file

    reader = gguf.GGUFReader(source, "r")
    tensors = {}
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type)
        tensors[_hf_name(t.name)] = np.ascontiguousarray(values.reshape([int(n) for n in reversed(t.shape)]),
                                                         dtype=np.float16)
    target.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target / "model.safetensors"))
    f = lambda key: _field(reader, f"qwen2.{key}")  # noqa: E731
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": f("embedding_length"),
              "intermediate_size": f("feed_forward_length"), "num_hidden_layers": f("block_count"),
              "num_attention_heads": f("attention.head_count"), "num_key_value_heads": f("attention.head_count_kv"),
              "rms_norm_eps": float(f("attention.layer_norm_rms_epsilon")), "rope_theta": float(f("rope.freq_base")),
              "max_position_embeddings": f("context_length"), "vocab_size": int(tensors["lm_head.weight"].shape[0]),
              "tie_word_embeddings": "lm_head.weight" not in tensors, "torch_dtype": "float16"}
    (target / "config.json").write_text(json.dumps(config))
    write_tokenizer(source, target)
    return target


def convert_packaged_qwen(source_gguf: Path, cache: Path) -> Path:
    """Qwen2.5-Coder-0.5B as an MLX model, made once with mlx-lm's own converter, cached in `cache`. Kept in
    float32: MLX's CPU backend has no fast float16 or quantized kernels on x86 (8-bit decoded ~0.03 tok/s)."""
    target = cache / "qwen2.5-coder-0.5b-instruct-mlx"
    if (target / REAL_STAMP).is_file():
        return target
    import shutil

    from mlx_lm import convert

    hf = gguf_to_hf(source_gguf, cache / "qwen2.5-coder-0.5b-instruct-hf")
    shutil.rmtree(target, ignore_errors=True)
    convert(str(hf), mlx_path=str(target), dtype="float32")
    shutil.rmtree(hf)
    (target / REAL_STAMP).touch()
    return target
