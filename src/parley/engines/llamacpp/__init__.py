"""The llama.cpp engine: GGUF models, continuous batching, prompt-prefix cache."""

from .engine import LlamaCppEngine
from .vocab import GGUF_MAGIC, LlamaCppVocab, read_gguf_magic

__all__ = ["GGUF_MAGIC", "LlamaCppEngine", "LlamaCppVocab", "read_gguf_magic"]
