"""Engines in a supervised child process: a native crash costs the requests in flight, not the server."""

from .spec import EngineSpec
from .supervisor import IsolatedEngine, ModelCrashedError

__all__ = ["EngineSpec", "IsolatedEngine", "ModelCrashedError"]
