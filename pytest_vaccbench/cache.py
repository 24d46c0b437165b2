"""The cache folder: where it is, what it holds per kind, and clearing it.

Default: $VACCBENCH_CACHE, else $XDG_CACHE_HOME/vaccbench, else ~/.cache/vaccbench
(`--vaccbench-cache` or the `vaccbench_cache` ini key win over all three).
Only the kinds the package writes are ever removed, so a cache pointed at the wrong
folder loses nothing else.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import VaccbenchError

KINDS = {  # entry in the cache folder -> what it holds
    "images": "preprocessed image crops",
    "predictions": "per-image top-5 of every run",
    "onnx": "ONNX exports, fp16/int8 graphs",
    "vamp-npz": "image tensors for vamp",
    "vamp-runs": "outputs of vamp runs",
    "vsx-runs": "files of failed VastStreamX runs",
    "digests.json": "digests of weight files",
}


def kind_dir(root: Path, kind: str) -> Path:
    """`root / kind`, where the tool writes that kind: refused when it is a link (or leads
    through one) out of the cache folder, since everything written there would land
    elsewhere. Paths built below it are checked with safefiles.inside against it."""
    if kind not in KINDS:
        raise ValueError(f"no cache kind {kind!r}")
    path = root / kind
    resolved, base = path.resolve(), root.resolve()
    if not resolved.is_relative_to(base) or resolved == base:
        raise VaccbenchError(f"the cache's {kind} {'folder' if kind != 'digests.json' else 'file'} "
                             f"is a link to {resolved}, outside the cache {base}: the tool writes "
                             f"only inside its cache; remove the link, or pass --vaccbench-cache "
                             "(or set VACCBENCH_CACHE) to a folder where it may write", path)
    return path


def cache_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: `option`, else the environment's choice (see the module doc)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    chosen = (option or os.environ.get("VACCBENCH_CACHE")
              or (Path(xdg) / "vaccbench" if xdg else Path("~/.cache/vaccbench")))
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class Usage:
    kind: str
    files: int
    bytes: int


def _size(path: Path) -> tuple[int, int]:
    if path.is_file() and not path.is_symlink():
        return 1, path.stat().st_size
    files = total = 0
    for root, _, names in os.walk(path):
        for name in names:
            p = Path(root) / name
            if not p.is_symlink():
                files, total = files + 1, total + p.stat().st_size
    return files, total


def usage(root: Path) -> list[Usage]:
    """Files and bytes per kind present, then the rest of the folder as `other`."""
    if not root.is_dir():
        return []
    found = [Usage(kind, *_size(root / kind)) for kind in KINDS if (root / kind).exists()]
    others = [p for p in root.iterdir() if p.name not in KINDS]
    if others:
        counts = [_size(p) for p in others]
        found.append(Usage("other", sum(c[0] for c in counts), sum(c[1] for c in counts)))
    return found


def clear(root: Path, kind: str | None = None) -> list[str]:
    """Remove one kind (or every kind) from the cache; returns what was removed."""
    if kind is not None and kind not in KINDS:
        raise VaccbenchError(f"no cache kind {kind!r} (kinds: {', '.join(KINDS)})")
    removed = []
    for name in [kind] if kind else list(KINDS):
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # unreachable: GiB ends the loop
