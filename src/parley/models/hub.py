"""Hugging Face ids (`org/repo`, `org/repo:file.gguf`) fetched into the HF cache on first use.

huggingface_hub retries a dead connection with back-off for the better part of half a minute, so the hub is
probed first with a plain TCP connect under a short deadline: offline, the answer is a prompt 404, never a hang.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from ..errors import NotFoundError

log = logging.getLogger(__name__)
T = TypeVar("T")


def split_hf_id(model_id: str) -> tuple[str, str | None] | None:
    """`org/repo[:file.gguf]` → (repo, file); None for anything else (exactly one "/" qualifies)."""
    repo, colon, filename = model_id.partition(":")
    org, _, name = repo.partition("/")
    if repo.count("/") != 1 or not org or not name or org.startswith(".") or "\\" in repo:
        return None
    if colon and (not filename.endswith(".gguf") or "/" in filename):
        return None
    return repo, filename or None


def _offline() -> bool:
    import huggingface_hub

    check = getattr(huggingface_hub, "is_offline_mode", None)
    return bool(check() if check else huggingface_hub.constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def probe_hub(timeout: float) -> str | None:
    """None when the hub answers a TCP connect within `timeout` seconds, else why not.

    The connect (DNS included, which has no timeout of its own) runs on a daemon thread that is abandoned
    at the deadline."""
    if _offline():
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(_endpoint())
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port} is unreachable ({exc})")

    thread = threading.Thread(target=connect, name="parley-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {timeout:g} s"


def _pick_file(repo: str, files: list[str]) -> str:
    ggufs = [f for f in files if f.endswith(".gguf")]
    if len(ggufs) == 1:
        return ggufs[0]
    preferred = [f for f in ggufs if "q4_k_m" in f.lower()]
    if len(preferred) == 1:
        return preferred[0]
    if not ggufs:
        raise NotFoundError(f"the Hugging Face repo '{repo}' has no .gguf file")
    raise NotFoundError(f"the Hugging Face repo '{repo}' has several .gguf files; name one as "
                        f"'{repo}:FILE', one of: {', '.join(ggufs[:20])}")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _from_hub(wanted: str, call: Callable[[], T]) -> T:
    """`call()` against the hub, its failures turned into a NotFoundError that says what was tried."""
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return call()
    except NotFoundError:  # from _pick_file: already says what is wrong
        raise
    except LocalEntryNotFoundError as exc:  # a subclass of EntryNotFoundError: the connection failed after all
        raise NotFoundError(f"could not download {wanted} from the Hugging Face hub: {_first_line(exc)}") from exc
    except RepositoryNotFoundError as exc:
        raise NotFoundError(f"could not download {wanted}: the hub has no such repo (or it is gated)") from exc
    except EntryNotFoundError as exc:
        raise NotFoundError(f"could not download {wanted}: the repo has no such file") from exc
    except Exception as exc:  # HTTP, disk, and the hub client's own transport errors (httpx/requests by version)
        raise NotFoundError(f"could not download {wanted} from the Hugging Face hub: {_first_line(exc)}") from exc


def _parse(model_id: str) -> tuple[str, str | None]:
    parsed = split_hf_id(model_id)
    if parsed is None:
        raise NotFoundError(f"model '{model_id}' is not a Hugging Face id (ORG/REPO or ORG/REPO:FILE.gguf)")
    return parsed


def download(model_id: str, cache_dir: Path, timeout: float, files: list[str] | None = None,
             progress: type | None = None) -> Path:
    """Fetch the GGUF named by an HF id into `cache_dir`; `files`, the repo's listing when the caller has it
    already; `progress`, a tqdm class for the progress bar (default: huggingface_hub's, shown on a terminal).

    Blocking: call it off the event loop. Raises NotFoundError saying what was tried."""
    repo, filename = _parse(model_id)
    wanted = f"repo '{repo}', file '{filename or 'the single .gguf in the repo'}'"
    if files is None and (problem := probe_hub(timeout)):
        raise NotFoundError(f"could not download {wanted} from the Hugging Face hub: {problem}")
    import huggingface_hub

    def fetch() -> str:
        listing = files if files is not None else None if filename else huggingface_hub.HfApi().list_repo_files(repo)
        name = filename or _pick_file(repo, listing or [])
        log.info("downloading %s from %s into %s", name, repo, cache_dir)
        return huggingface_hub.hf_hub_download(repo, name, cache_dir=cache_dir, etag_timeout=timeout,
                                               tqdm_class=progress)

    return Path(_from_hub(wanted, fetch))


def pull(model_id: str, cache_dir: Path, timeout: float, progress: type | None = None) -> Path:
    """`parley pull`: a GGUF as `download` picks it or, from a repo without GGUF files, the whole model
    directory (MLX or Hugging Face weights, for the mlx and vllm engines). The path of the file or directory."""
    repo, filename = _parse(model_id)
    if filename is not None:
        return download(model_id, cache_dir, timeout, progress=progress)
    if problem := probe_hub(timeout):
        raise NotFoundError(f"could not download repo '{repo}' from the Hugging Face hub: {problem}")
    import huggingface_hub

    files = _from_hub(f"repo '{repo}'", lambda: huggingface_hub.HfApi().list_repo_files(repo))
    if any(f.endswith(".gguf") for f in files):
        return download(model_id, cache_dir, timeout, files, progress)
    if "config.json" not in files:
        raise NotFoundError(f"the Hugging Face repo '{repo}' holds neither a .gguf file nor a model directory "
                            "(no config.json)")
    log.info("downloading the model directory %s into %s", repo, cache_dir)
    return Path(_from_hub(f"repo '{repo}'", lambda: huggingface_hub.snapshot_download(
        repo, cache_dir=cache_dir, etag_timeout=timeout, tqdm_class=progress)))
