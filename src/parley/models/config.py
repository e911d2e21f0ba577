"""The models config file (TOML): aliases and per-model load settings.

    [aliases]
    "claude-*" = "qwen2.5-coder-0.5b-instruct"   # fnmatch pattern
    "fast" = "smollm2-135m-instruct"             # exact name

    [models."smollm2-135m-instruct"]
    n_ctx = 2048

    [models."qwen2.5-7b"]              # a model directory, on vLLM with 4 GPUs
    engine = "vllm"
    vllm = { tensor_parallel_size = 4 }
    tool_parser = "hermes"             # parsers by name (parsers/registry.py); default: the template's
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..engines.registry import ENGINE_CHOICES
from ..parsers.registry import REASONING_PARSER_NAMES, TOOL_PARSER_NAMES

# Settings a model table may override, with their types; `vllm` is a table of vLLM engine arguments.
MODEL_KEYS: dict[str, type] = {"n_ctx": int, "rope_scaling_factor": float, "n_threads": int, "n_batch": int,
                                "min_p": float, "parallel": int,
                                "prefill_chunk": int, "max_model_rss_mb": float, "engine": str, "vllm": dict,
                                "tool_parser": str, "reasoning_parser": str}
# Keys whose value must be one of a set of names.
CHOICES: dict[str, tuple[str, ...]] = {"engine": ENGINE_CHOICES, "tool_parser": TOOL_PARSER_NAMES,
                                       "reasoning_parser": REASONING_PARSER_NAMES}


class ConfigError(ValueError):
    pass


def is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


@dataclass(frozen=True)
class ModelsConfig:
    aliases: dict[str, str] = field(default_factory=dict)  # in file order: the first matching pattern wins
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def alias_target(self, name: str) -> str | None:
        """Exact alias names first, then patterns in file order."""
        if name in self.aliases and not is_pattern(name):
            return self.aliases[name]
        for pattern, target in self.aliases.items():
            if is_pattern(pattern) and fnmatchcase(name, pattern):
                return target
        return None

    def listable_aliases(self) -> dict[str, str]:
        return {name: target for name, target in self.aliases.items() if not is_pattern(name)}

    def overrides(self, model_id: str) -> dict[str, Any]:
        return dict(self.models.get(model_id, {}))


def load_config(path: Path | None) -> ModelsConfig:
    """An absent path is an empty config; a bad file is a ConfigError naming what is wrong."""
    if path is None:
        return ModelsConfig()
    try:
        data = tomllib.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
    unknown = set(data) - {"aliases", "models"}
    if unknown:
        raise ConfigError(f"config {path}: unknown sections {sorted(unknown)} (expected [aliases], [models.ID])")
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) and v for v in aliases.values()):
        raise ConfigError(f"config {path}: [aliases] maps names or patterns to model ids (strings)")
    models: dict[str, dict[str, Any]] = {}
    for model_id, table in data.get("models", {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"config {path}: [models.\"{model_id}\"] must be a table")
        for key, value in table.items():
            kind = MODEL_KEYS.get(key)
            if kind is None:
                raise ConfigError(f"config {path}: models.\"{model_id}\".{key} is not one of {sorted(MODEL_KEYS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
                raise ConfigError(f"config {path}: models.\"{model_id}\".{key} must be {kind.__name__}")
            if key in CHOICES and value not in CHOICES[key]:
                raise ConfigError(f"config {path}: models.\"{model_id}\".{key} must be one of {CHOICES[key]}")
        models[model_id] = dict(table)
    return ModelsConfig(dict(aliases), models)
