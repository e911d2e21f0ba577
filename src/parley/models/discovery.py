"""Finding models: the embedded defaults, explicit paths, a models directory, the HF cache. Each is a GGUF file
or a Hugging Face model directory (config.json + safetensors); engines/registry.py says which engine serves
which format."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from ..engines.formats.hf_dir import is_hf_dir
from .packaged import PACKAGED_MODELS, PackagedModel


@dataclass(frozen=True)
class ModelEntry:
    id: str
    display_name: str
    source: str  # embedded | path | models-dir | hf-cache | alias
    created_at: datetime
    locate: Callable[[Path], Path]  # cache dir -> GGUF path (may assemble an embedded model)
    path: Path | None = None  # the file whose header describes the model (an embedded one's first part)
    size: int | None = None  # bytes of the whole GGUF
    target: str | None = None  # for an alias: the id of the model it stands for
    format: str = "gguf"  # gguf (a file) | hf-dir (a model directory): a format name of engines/registry.py

    def as_alias(self, name: str) -> ModelEntry:
        return replace(self, id=name, display_name=f"{name} → {self.id}", source="alias", target=self.id)


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).replace(microsecond=0)


def file_entry(model_id: str, path: Path, source: str) -> ModelEntry:
    try:
        created, size = _mtime(path), path.stat().st_size
    except OSError:  # a dangling link: listed here, then reported as unreadable by the header check
        created, size = datetime.fromtimestamp(0, tz=UTC), None
    return ModelEntry(model_id, model_id, source, created, lambda _cache, p=path: p, path, size)


def dir_entry(model_id: str, path: Path, source: str) -> ModelEntry:
    size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    return ModelEntry(model_id, model_id, source, _mtime(path / "config.json"), lambda _cache, p=path: p, path, size,
                      format="hf-dir")


def _packaged_entry(model: PackagedModel) -> ModelEntry:
    paths = model.part_paths() or []
    return ModelEntry(model.id, model.display_name, "embedded", _mtime(paths[0]), model.gguf_path, paths[0],
                      model.size)


def hf_cache_dir(configured: Path | None) -> Path:
    if configured:
        return configured
    if env := os.environ.get("HF_HUB_CACHE"):
        return Path(env)
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(hf_home) / "hub"


def scan_hf_cache(root: Path) -> list[ModelEntry]:
    """`models--org--repo/snapshots/<rev>/*.gguf` → `org/repo` (or `org/repo:file.gguf` when several)."""
    entries = []
    for repo_dir in sorted(root.glob("models--*")):
        repo_id = repo_dir.name.removeprefix("models--").replace("--", "/")
        files = sorted({p.name: p for p in repo_dir.glob("snapshots/*/**/*.gguf")}.items())
        for name, path in files:
            model_id = repo_id if len(files) == 1 else f"{repo_id}:{name}"
            entries.append(file_entry(model_id, path, "hf-cache"))
        if not files:  # a model-directory repo (mlx-community/…, Qwen/…): the newest snapshot that holds a whole model
            snapshots = sorted((p for p in repo_dir.glob("snapshots/*") if is_hf_dir(p)),
                               key=lambda p: (p / "config.json").stat().st_mtime)
            if snapshots:
                entries.append(dir_entry(repo_id, snapshots[-1], "hf-cache"))
    return entries


def discover(explicit: list[str], models_dir: Path | None, hf_root: Path) -> list[ModelEntry]:
    """Every model that can be served, the embedded ones first, ids unique (first wins)."""
    found: list[ModelEntry] = [_packaged_entry(m) for m in PACKAGED_MODELS if m.installed()]
    hf_entries = scan_hf_cache(hf_root) if hf_root.is_dir() else []
    for item in explicit:
        path = Path(item).expanduser()
        if path.is_file():
            found.append(file_entry(path.stem, path.resolve(), "path"))
        elif is_hf_dir(path):
            found.append(dir_entry(path.resolve().name, path.resolve(), "path"))
        else:  # an id: only known ones are served
            found += [e for e in hf_entries if e.id == item or e.id.startswith(item + ":")]
    if models_dir and models_dir.is_dir():
        found += [file_entry(p.stem, p.resolve(), "models-dir") for p in sorted(models_dir.rglob("*.gguf"))]
        found += [dir_entry(c.parent.name, c.parent.resolve(), "models-dir")
                  for c in sorted(models_dir.rglob("config.json")) if is_hf_dir(c.parent)]
    found += hf_entries
    unique: dict[str, ModelEntry] = {}
    for entry in found:
        unique.setdefault(entry.id, entry)
    return list(unique.values())


def searched_places(explicit: list[str], models_dir: Path | None, hf_root: Path, paths: bool = True) -> str:
    """Where discover() looked, for not-found messages; without `paths` for clients, who need not learn
    the server's file layout."""
    places = ["the embedded models"]
    if explicit:
        places.append("--model " + ", ".join(explicit) if paths else f"{len(explicit)} --model file(s)")
    if models_dir:
        places.append(f"--models-dir {models_dir}" if paths else "--models-dir")
    places.append(f"the Hugging Face cache {hf_root}" if paths else "the Hugging Face cache")
    return "; ".join(places)
