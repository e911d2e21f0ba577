"""What `parley serve` prints once it listens: where to point a browser, the SDKs, and Claude Code."""

from __future__ import annotations

from . import __version__

WILDCARD = ("0.0.0.0", "::", "")


def ready_banner(host: str, port: int, default_model: str, keyed: bool) -> str:
    """Copy-paste lines for this server; an API key is named, never printed."""
    local = "127.0.0.1" if host in WILDCARD else f"[{host}]" if ":" in host else host
    url = f"http://{local}:{port}"
    key = "YOUR_PARLEY_KEY" if keyed else "not-needed"
    launch = "parley launch claude" + ("" if url == "http://127.0.0.1:10240" else f" --url {url}")
    environment = f'"$({launch} --config{" --api-key YOUR_PARLEY_KEY" if keyed else ""})"'
    return "\n".join([
        f"parley {__version__} is ready at {url}",
        f"  playground   {url}/",
        f"  Anthropic    anthropic.Anthropic(base_url={url!r}, api_key={key!r})",
        f"  OpenAI       openai.OpenAI(base_url={url + '/v1'!r}, api_key={key!r})",
        f"  Claude Code  {launch}",
        f"               (or its environment in this shell: eval {environment})",
        f"  models       {url}/v1/models (default {default_model})",
    ])
