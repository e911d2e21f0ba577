"""Decode speed of the MLX engine against the llama.cpp engine on the same model, in one run: the packaged
Qwen2.5-Coder-0.5B GGUF for llama.cpp, and the same weights converted with mlx-lm's converter for MLX (made
once, cached; see tests/support/mlx_model.py). Both engines are driven directly (no HTTP), greedy, same prompt.

    .venv/bin/python bench/mlx_decode.py [--tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from parley.core.messages import ChatMessage, Conversation
from parley.core.params import SamplingParams
from parley.engines.sync import generate
from parley.models.packaged import QWEN_CODER_05B
from parley.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
PROMPT = "Count from 1 to 200, separated by spaces."


def decode_rate(engine, tokens: int) -> tuple[float, float]:
    """(time to first token s, tok/s after it)"""
    prompt = engine.tokenize(engine.chat_template.render(Conversation([ChatMessage("user", PROMPT)])))
    start = time.perf_counter()
    stamps = [time.perf_counter() for _ in generate(engine, prompt, SamplingParams(max_tokens=tokens, temperature=0))]
    return stamps[0] - start, (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    from parley.engines.llamacpp import LlamaCppEngine
    from parley.engines.mlx import MlxEngine
    from support.mlx_model import convert_packaged_qwen

    cache = Settings().cache_dir
    gguf = QWEN_CODER_05B.gguf_path(cache)
    mlx_dir = convert_packaged_qwen(gguf, cache / "test-models" / "mlx-real")
    llama = LlamaCppEngine(gguf, n_ctx=2048, n_threads=args.threads, n_slots=1)
    ref = decode_rate(llama, args.tokens)
    llama.close()
    mlx = MlxEngine(mlx_dir, n_ctx=2048)
    ours = decode_rate(mlx, args.tokens)
    mlx.close()
    print(f"Qwen2.5-Coder-0.5B, {args.tokens} tokens, {args.threads} threads (llama.cpp); MLX {mlx_dir.name}")
    print(f"{'engine':<12}{'TTFT s':>10}{'decode tok/s':>14}")
    print(f"{'llama.cpp':<12}{ref[0]:>10.3f}{ref[1]:>14.2f}")
    print(f"{'mlx':<12}{ours[0]:>10.3f}{ours[1]:>14.2f}")
    print(f"mlx / llama.cpp decode: {ours[1] / ref[1]:.3f}")


if __name__ == "__main__":
    main()
