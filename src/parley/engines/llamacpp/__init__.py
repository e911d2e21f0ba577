"""The llama.cpp engine: GGUF models, continuous batching, prompt-prefix cache."""

from .engine import GGUF_MAGIC, LlamaCppEngine, read_gguf_magic

__all__ = ["GGUF_MAGIC", "LlamaCppEngine", "read_gguf_magic"]
