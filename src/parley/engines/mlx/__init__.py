"""The MLX engine: MLX / Hugging Face model directories through mlx-lm."""

from .engine import MlxEngine
from .vocab import MlxVocab, mlx_available

__all__ = ["MlxEngine", "MlxVocab", "mlx_available"]
