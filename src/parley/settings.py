"""Server settings: one object, filled from `PARLEY_*` environment variables and CLI flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ByteSize, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "parley"


class Settings(BaseSettings):
    """Descriptions double as CLI help (see cli.py)."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_nested_delimiter="__")

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, name: str) -> str:
        from .engines.registry import ENGINE_CHOICES

        if name not in ENGINE_CHOICES:
            raise ValueError(f"unknown engine {name!r}; one of {', '.join(ENGINE_CHOICES)}")
        return name

    @field_validator("tool_parser", "reasoning_parser")
    @classmethod
    def _known_parser(cls, name: str | None, info: ValidationInfo) -> str | None:
        from .parsers.registry import check_parser

        return None if name is None else check_parser(info.field_name.removesuffix("_parser"), name)

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(10240, description="Port to bind.")
    models: list[str] = Field(
        default_factory=list, description="Extra models to serve: GGUF paths or model ids (repeatable)."
    )
    models_dir: Path | None = Field(None, description="Directory searched for *.gguf files.")
    default_model: str = Field(
        "qwen2.5-coder-0.5b-instruct", description="Model listed first and preloaded with --preload."
    )
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="Where assembled models are kept.")
    data_dir: Path = Field(
        default_factory=lambda data: data["cache_dir"] / "data",
        description="Where data that outlives a restart is kept: Message Batches, the prompt cache on disk "
                    "(default: <cache dir>/data).")
    hf_cache_dir: Path | None = Field(None, description="Hugging Face hub cache (default: HF_HUB_CACHE).")
    n_ctx: int = Field(32768, description="Context size per model (capped at the model's trained length, times "
                                          "--rope-scaling-factor).")
    rope_scaling_factor: float = Field(
        1.0, ge=1.0, description="Serve a GGUF model past its trained length by YaRN rope scaling (llama.cpp): its "
                                 "context is capped at the trained length times this factor (1: off). Only for "
                                 "models made for it (e.g. Qwen2.5 7B and larger: 4).")
    n_threads: int | None = Field(None, description="CPU threads for llama.cpp (default: all cores).")
    n_batch: int = Field(512, description="Prompt tokens evaluated per llama.cpp decode call.")
    engine: str = Field(
        "auto", description="Inference engine: auto picks llama.cpp for GGUF files and, for model directories, "
                            "MLX where it is installed, else vLLM.")
    vllm_args: dict[str, Any] = Field(
        default_factory=dict, description="vLLM engine arguments as JSON, passed unchanged to AsyncEngineArgs: "
                                          '\'{"tensor_parallel_size": 4, "dtype": "bfloat16"}\'.')
    parallel: int = Field(
        4, ge=1, description="Generations one model runs at once (continuous batching); each keeps a prefix cache.")
    cache_ram: ByteSize = Field(
        ByteSize(2 << 30), description="Bound of the idle conversations' KV states kept in host memory per model "
                                       "(e.g. 2GiB; llama.cpp and MLX): beyond it the least recently used go to the "
                                       "disk prompt cache (llama.cpp) or are dropped (MLX). "
                                       "A llama.cpp model's memory stays under its weights + KV cache (--n-ctx) + this "
                                       "+ one state read from disk.")
    disk_cache_size: ByteSize = Field(
        ByteSize(4 << 30), description="Bound of the prompt cache on disk (in the data dir), e.g. 8GiB or 500MB; "
                                       "the least recently used prefixes go first (0: no disk cache).")
    disk_cache_min_tokens: int = Field(
        1024, ge=1, description="Prompt prefixes at least this long are stored on disk, to survive restarts.")
    draft_max: int = Field(
        16, ge=0, description="Speculative decoding by prompt lookup: the most tokens copied from the prompt or "
                              "output and verified in one step (0: off). The output is the same either way, up to "
                              "float rounding.")
    prefill_chunk: int = Field(
        128, ge=1, description="Prompt tokens a joining request prefills per step while other streams decode.")
    min_p: float = Field(0.05, description="min-p cut applied when sampling with temperature > 0.")
    tool_grammar: bool = Field(True, description="Constrain tool calls by grammar also with tool_choice auto.")
    tool_parser: str | None = Field(
        None, description="How every model writes tool calls, by parser name: what its output is parsed with and "
                          "what grammars force (default: what each model's chat template shows; a model's "
                          "tool_parser config key beats this).")
    reasoning_parser: str | None = Field(
        None, description="How every model's output shows its reasoning, by parser name; none: all output is the "
                          "answer, no thinking (default: what each model's chat template shows; a model's "
                          "reasoning_parser config key beats this).")
    signing_key: str | None = Field(
        None, description="Fernet key for thinking signatures (default: generated once into the cache dir).")
    max_queue: int = Field(16, description="Requests that may wait per model; beyond this answers 529.")
    max_body_bytes: int = Field(32 * 1024 * 1024, description="Largest accepted request body (413 beyond).")
    max_batch_bytes: int = Field(
        256 * 1024 * 1024, description="Largest accepted Message Batches create body (413 beyond), as the API.")
    batch_retention_days: float = Field(
        29.0, gt=0, description="Days a Message Batch and its results are kept after its creation.")
    response_retention_days: float = Field(
        30.0, gt=0, description="Days a stored Responses API response (store: true) is kept after its creation.")
    response_store_size: ByteSize = Field(
        ByteSize(1 << 30), description="Bound of the stored responses (e.g. 1GiB); the oldest go first beyond it.")
    ping_interval: float = Field(5.0, description="Seconds between SSE keep-alive pings on a silent stream.")
    preload: bool = Field(False, description="Load the default model at start-up.")
    config: Path | None = Field(None, description="TOML file with [aliases] and per-model [models.ID] settings.")
    max_loaded_models: int = Field(
        2, ge=1, description="Models kept loaded at once; beyond this the least recently used idle one is closed.")
    model_ttl_seconds: float = Field(
        0.0, ge=0, description="Close a loaded model after this many idle seconds (0: never).")
    hub_timeout: float = Field(
        3.0, gt=0, description="Seconds to wait for the Hugging Face hub before a missing org/repo id is a 404.")
    log_level: str = Field("info", description="Log level.")
    api_keys: list[str] = Field(
        default_factory=list, description="Accepted API keys (x-api-key or Authorization: Bearer); none: open.")
    api_key_file: Path | None = Field(None, description="File with more accepted API keys, one per line.")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (default: CORS off).")
    request_timeout: float = Field(
        1800.0, gt=0, description="Wall-clock limit of one request, queueing and generation included (seconds).")
    render_timeout: float = Field(5.0, gt=0, description="Time limit for rendering a chat template (seconds).")
    isolate_models: bool = Field(
        True, description="Run each llama.cpp or MLX model in its own supervised child process, so that a native "
                          "crash costs the requests in flight, not the server (off: in the server's process).")
    max_model_rss_mb: float = Field(
        0.0, ge=0, description="Replace a model's child process, between requests, once its resident memory "
                               "passes this many MB (0: no ceiling).")
    fault_injection: bool = Field(
        False, description="Test only: a prompt containing `parley-fault:segv@N` or `parley-fault:abort@N` "
                           "crashes the model's child process at that request's N-th token.")
    keep_alive_timeout: float = Field(
        75.0, gt=0, description="Seconds an idle client connection stays open. Longer than clients keep theirs "
                                "(httpx, so both SDKs: 5 s), so that a client never sends on a connection the "
                                "server is closing (a connection reset).")
    shutdown_grace: float = Field(
        10.0, ge=0, description="On SIGTERM, seconds running streams may finish before they are ended.")


def api_keys(settings: Settings) -> list[str]:
    """The keys the server accepts: `--api-key`s, then the lines of `--api-key-file`."""
    keys = list(settings.api_keys)
    if settings.api_key_file is not None:
        keys += [line.strip() for line in settings.api_key_file.read_text().splitlines() if line.strip()]
    return keys
