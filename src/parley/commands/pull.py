"""`parley pull ORG/REPO[:FILE]`: a model into the Hugging Face cache, where `parley serve` finds it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import NotFoundError
from ..models.discovery import hf_cache_dir
from ..models.hub import pull
from ..settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ORG/REPO (its single or Q4_K_M .gguf, or the whole MLX / HF model "
                                      "directory when it has no .gguf) or ORG/REPO:FILE.gguf")
    parser.add_argument("--hf-cache-dir", type=Path, help="Hugging Face hub cache (default: HF_HUB_CACHE)")


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    root = hf_cache_dir(args.hf_cache_dir or settings.hf_cache_dir)
    try:
        # tqdm's own class: huggingface_hub's hides its bar when stderr is not a terminal
        path = pull(args.model, root, settings.hub_timeout, progress=tqdm)
    except NotFoundError as exc:
        print(f"parley pull: {exc}", file=sys.stderr)
        return 1
    repo = args.model.partition(":")[0]
    print(f"{path}\nserve it with: parley serve, then model=\"{repo}\"")
    return 0
