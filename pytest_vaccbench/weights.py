"""Weights: a model entry -> the local weight file, by a documented naming rule.

Rule, first match wins:
1. the entry's `weights.package`: the file `weights.file` inside that installed package
   (searched recursively), or its only `.pth`/`.pt` file; the package is found on sys.path
   without importing it, so none of its code runs;
2. the entry's `weights.file`: an absolute path, or a path relative to `--weights-dir`;
3. `<weights-dir>/<model key>.<ext>` or `<weights-dir>/<family>/<model key>.<ext>`
   with ext in .pth, .pt, .pth.tar, .bin, .safetensors — e.g. `weights/timm-mobilenetv2_100.pth`.
Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .baselines import ModelEntry

EXTENSIONS = (".pth", ".pt", ".pth.tar", ".bin", ".safetensors")


@dataclass(frozen=True)
class WeightsLookup:
    path: Path | None
    looked_at: tuple[str, ...]

    def skip_reason(self, entry: ModelEntry) -> str:
        where = "; ".join(self.looked_at[:4]) + (" ..." if len(self.looked_at) > 4 else "")
        return (f"weights not found for {entry.test_name}: looked for {where}. Put the file "
                f"there (or pass --weights-dir DIR, or set `weights:` in {entry.baseline_path.name})")


def _package_root(package: str) -> Path | str:
    """The folder of an installed package, found without importing it (no code of the
    package runs): the top-level name through its finder, the rest as sub-folders. A str
    is the reason it cannot be used."""
    parts = package.split(".")
    if not all(part.isidentifier() for part in parts):
        return f"the Python package {package!r} (not a package name: dotted identifiers, like pkg.sub)"
    try:  # a top-level name: finders look at sys.path, nothing is imported
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return f"the Python package {parts[0]} (not installed: pip install it)"
    if not spec.submodule_search_locations:
        return f"the Python package {package} ({parts[0]} is a module, not a package folder)"
    for location in spec.submodule_search_locations:
        root = Path(location).joinpath(*parts[1:])
        if root.is_dir():
            return root
    return f"the Python package {package} ({parts[0]} is installed, it has no folder {'/'.join(parts[1:])})"


def _package_file(package: str, name: str | None) -> tuple[Path | None, str]:
    root = _package_root(package)
    if isinstance(root, str):
        return None, root
    pattern = name or "*.pt*"
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        return None, f"{root}/**/{pattern} (weights.file must be a file name inside the package)"
    found = sorted(p for p in root.rglob(pattern) if p.resolve().is_relative_to(root.resolve()))
    return (found[0] if len(found) == 1 else None), f"{root}/**/{pattern}"


def find_weights(entry: ModelEntry, weights_dir: Path) -> WeightsLookup:
    looked: list[str] = []
    spec = entry.weights
    if spec.package:
        path, where = _package_file(spec.package, spec.file)
        return WeightsLookup(path, (where,))
    if spec.file:
        candidate = Path(spec.file).expanduser()
        candidate = candidate if candidate.is_absolute() else weights_dir / candidate
        return WeightsLookup(candidate if candidate.is_file() else None, (str(candidate),))
    for folder in (weights_dir, weights_dir / entry.family):
        for ext in EXTENSIONS:
            candidate = folder / f"{entry.key}{ext}"
            looked.append(str(candidate))
            if candidate.is_file():
                return WeightsLookup(candidate, tuple(looked))
    return WeightsLookup(None, tuple(looked))
