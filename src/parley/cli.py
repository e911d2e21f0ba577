"""`parley serve`, `parley models`, and the client commands `launch`, `pull` and `chat`."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
from pathlib import Path

from .engines.registry import ENGINE_CHOICES
from .parsers.registry import REASONING_PARSER_NAMES, TOOL_PARSER_NAMES
from .settings import Settings, api_keys

CLIENT_COMMANDS = {
    "launch": "start an agent (Claude Code, Codex) against parley",
    "pull": "download a model into the Hugging Face cache",
    "chat": "chat with a running server in the terminal",
}


def _parser() -> argparse.ArgumentParser:
    fields = Settings.model_fields
    parser = argparse.ArgumentParser(prog="parley", description="Local LLMs behind the Anthropic Messages API.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "models"):
        cmd = sub.add_parser(name, help={"serve": "start the server", "models": "list servable models"}[name])
        cmd.add_argument("--model", dest="models", action="append", help=fields["models"].description)
        cmd.add_argument("--models-dir", type=Path, help=fields["models_dir"].description)
        cmd.add_argument("--config", type=Path, help=fields["config"].description)
        if name == "serve":
            cmd.add_argument("--host", help=fields["host"].description)
            cmd.add_argument("--port", type=int, help=fields["port"].description)
            cmd.add_argument("--n-ctx", type=int, help=fields["n_ctx"].description)
            cmd.add_argument("--rope-scaling-factor", type=float, help=fields["rope_scaling_factor"].description)
            cmd.add_argument("--threads", dest="n_threads", type=int, help=fields["n_threads"].description)
            cmd.add_argument("--max-queue", type=int, help=fields["max_queue"].description)
            cmd.add_argument("--parallel", type=int, help=fields["parallel"].description)
            cmd.add_argument("--engine", choices=ENGINE_CHOICES, help=fields["engine"].description)
            cmd.add_argument("--vllm-args", type=json.loads, help=fields["vllm_args"].description)
            cmd.add_argument("--tool-parser", choices=TOOL_PARSER_NAMES, help=fields["tool_parser"].description)
            cmd.add_argument("--reasoning-parser", choices=REASONING_PARSER_NAMES,
                             help=fields["reasoning_parser"].description)
            cmd.add_argument("--preload", action="store_true", default=None, help=fields["preload"].description)
            cmd.add_argument("--max-loaded-models", type=int, help=fields["max_loaded_models"].description)
            cmd.add_argument("--model-ttl", dest="model_ttl_seconds", type=float,
                             help=fields["model_ttl_seconds"].description)
            cmd.add_argument("--log-level", help=fields["log_level"].description)
            cmd.add_argument("--api-key", dest="api_keys", action="append", help=fields["api_keys"].description)
            cmd.add_argument("--api-key-file", type=Path, help=fields["api_key_file"].description)
            cmd.add_argument("--cors-origin", dest="cors_origins", action="append",
                             help=fields["cors_origins"].description)
            cmd.add_argument("--request-timeout", type=float, help=fields["request_timeout"].description)
            cmd.add_argument("--in-process", dest="isolate_models", action="store_false", default=None,
                             help="Run models in the server's own process (default: one child process each).")
            cmd.add_argument("--max-model-rss-mb", type=float, help=fields["max_model_rss_mb"].description)
            cmd.add_argument("--shutdown-grace", type=float, help=fields["shutdown_grace"].description)
            cmd.add_argument("--keep-alive-timeout", type=float, help=fields["keep_alive_timeout"].description)
            cmd.add_argument("--data-dir", type=Path, help=fields["data_dir"].description)
            cmd.add_argument("--cache-ram", help=fields["cache_ram"].description)
            cmd.add_argument("--disk-cache-size", help=fields["disk_cache_size"].description)
            cmd.add_argument("--draft-max", type=int, help=fields["draft_max"].description)
            cmd.add_argument("--disk-cache-min-tokens", type=int, help=fields["disk_cache_min_tokens"].description)
            cmd.add_argument("--batch-retention-days", type=float, help=fields["batch_retention_days"].description)
    for name, help_text in CLIENT_COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        _command(name).add_arguments(cmd)
    return parser


def _command(name: str):
    return importlib.import_module(f".commands.{name}", __package__)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # What follows `--` is the launched agent's own command line, kept whole (argparse would parse it).
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = _parser()
    args = parser.parse_args(argv[: len(argv) - len(passthrough) - 1] if "--" in argv else argv)
    if passthrough and args.command != "launch":
        parser.error("arguments after -- are for `parley launch` only")
    args.passthrough = passthrough
    if args.command in CLIENT_COMMANDS:
        return _command(args.command).run(args)
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "passthrough") and v is not None}
    settings = Settings(**overrides)
    from .models.config import ConfigError

    try:
        if args.command == "models":
            return _list_models(settings)
        return _serve(settings)
    except ConfigError as exc:  # a bad config file is the user's to fix: say so, no traceback
        print(f"parley: {exc}", file=sys.stderr)
        return 2


def _serve(settings: Settings) -> int:
    import uvicorn

    from .api.middleware import RequestIdLogFilter
    from .app import create_app
    from .server import GracefulServer
    from .services import app_services

    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler],
                        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=False, log_config=None,
                            timeout_keep_alive=settings.keep_alive_timeout,
                            timeout_graceful_shutdown=settings.shutdown_grace + 5)
    # uvicorn re-raises the signal it caught once it is done; a clean shutdown should exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from .banner import ready_banner

    def ready(port: int) -> None:
        print(ready_banner(settings.host, port, settings.default_model, bool(api_keys(settings))), flush=True)

    GracefulServer(config, app_services(app).stopping, settings.shutdown_grace, on_ready=ready).run()
    return 0


def _list_models(settings: Settings) -> int:
    from .models.registry import ModelRegistry
    from .models.report import models_table

    logging.basicConfig(level="ERROR")  # corrupt files are flagged in the table, not warned about as well
    print(models_table(ModelRegistry(settings), settings.default_model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
