"""What a model file says about itself, read without loading it: for `parley models`, `/v1/models` and the
registry's checks. Each model format has its reader (gguf.py, hf_dir.py)."""

from __future__ import annotations

from dataclasses import dataclass


def ftype_name(file_type: int | None) -> str:
    """llama.cpp's own names for `general.file_type` (LLAMA_FTYPE_MOSTLY_Q4_K_M → Q4_K_M); llama_cpp is imported
    only here, so that reading facts does not load it."""
    if file_type is None:
        return "?"
    import llama_cpp

    for name, value in vars(llama_cpp).items():
        if name.startswith("LLAMA_FTYPE_") and value == file_type and name != "LLAMA_FTYPE_GUESSED":
            return name.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_")
    return f"type {file_type}"


class CorruptModelError(ValueError):
    """The model file or directory cannot be read as its format says."""


@dataclass(frozen=True)
class ModelFacts:
    architecture: str
    context_length: int | None
    file_type: int | None  # llama.cpp's `general.file_type` (GGUF only)
    chat_template: str | None
    quant: str | None = None  # a label where there is no llama.cpp file type (model directories)

    @property
    def quantization(self) -> str:
        return self.quant or ftype_name(self.file_type)


def served_context(asked: int, trained: int | None, rope_scaling_factor: float = 1.0) -> int:
    """The context a model is served with: the one asked for, capped at its trained length (times the rope
    scaling factor, when scaled). The registry's answer for an unloaded model and the engine's own agree."""
    return min(asked, int(trained * rope_scaling_factor)) if trained else asked
