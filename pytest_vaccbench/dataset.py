"""Dataset: `--dataset PATH` -> an ordered list of (image path, class index).

Layouts, detected in this order:
- flat: a folder of images plus a label file (`--labels`, or `val_label.txt` beside or
  one level above the images) with lines `ILSVRC2012_val_00000001.JPEG 65`;
- class folders: `<root>/<wnid>/<image>` (wnid = n + 8 digits);
- wnid names: `<root>/<wnid>_<name>.JPEG`;
- built-in: `skimage-photos`, real photos shipped by scikit-image with labels in this package.
Class indices are positions in the sorted list of the 1000 ImageNet wnids.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Sequence

from .errors import DatasetError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}
WNID_RE = re.compile(r"^n\d{8}$")
WNID_NAME_RE = re.compile(r"^(n\d{8})_")
FULL_VAL_SIZE = 50_000
FULL_VAL_NAME = "imagenet-val"
BUILTIN_SKIMAGE = "skimage-photos"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class Dataset:
    """Ordered samples plus what identifies them in a baseline."""

    name: str  # the key under `expected:` in a baseline
    root: Path
    layout: str
    samples: tuple[Sample, ...]
    total: int  # images in the whole dataset before --limit

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    @property
    def is_full_val(self) -> bool:
        return self.name == FULL_VAL_NAME and len(self.samples) == FULL_VAL_SIZE

    def fingerprint(self) -> str:
        return fingerprint(self.samples)


def fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 of (file name, size, label) in order: changes when images or labels change."""
    h = hashlib.sha256()
    for s in samples:
        size = s.path.stat().st_size if s.path.exists() else -1
        h.update(f"{s.path.name}\t{size}\t{s.label}\n".encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """(wnid, name) for the 1000 classes in index order."""
    text = resources.files("pytest_vaccbench.data").joinpath("imagenet_classes.txt").read_text()
    rows = [line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return tuple((w, n) for w, n in rows)


def wnid_index() -> dict[str, int]:
    return {w: i for i, (w, _) in enumerate(imagenet_classes())}


def class_name(index: int) -> str:
    classes = imagenet_classes()
    return classes[index][1].split(",")[0] if 0 <= index < len(classes) else f"class {index}"


_INDEX = re.compile(r"-?[0-9]+")  # ASCII digits: int() would also read "²" or "٣"
SHOWN = 80  # characters of a bad line shown in a message


def _shown(text: str) -> str:
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "...")


def read_label_file(path: Path) -> dict[str, int]:
    """`<file name> <class index>` per line; blank lines and `#` comments are skipped. A name
    is relative to the images' folder: absolute names and names with `..` are refused."""
    labels: dict[str, int] = {}
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read label file: {exc.strerror}", path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"label file is not UTF-8 text (byte {data[exc.start]:#04x} at offset "
                           f"{exc.start}); save it as UTF-8", path,
                           data.count(b"\n", 0, exc.start) + 1) from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not _INDEX.fullmatch(parts[1]):
            raise DatasetError(f"expected `<image file> <class index>` (digits 0-9), got "
                               f"{_shown(raw)}", path, lineno)
        name = PurePosixPath(parts[0].replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts:
            raise DatasetError(f"image {_shown(parts[0])} is outside the images' folder: a label "
                               "file names images relative to it", path, lineno)
        index = int(parts[1]) if len(parts[1]) <= 5 else -1
        if not 0 <= index < 1000:
            raise DatasetError(f"class index {_shown(parts[1])} is outside 0..999", path, lineno)
        if parts[0] in labels and labels[parts[0]] != index:
            raise DatasetError(f"{_shown(parts[0])} is listed twice with different classes", path,
                               lineno)
        labels[parts[0]] = index
    if not labels:
        raise DatasetError("label file has no entries", path)
    return labels


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _flat(root: Path, label_file: Path) -> list[Sample]:
    labels = read_label_file(label_file)
    folders = [root, root / "images", root / "val", label_file.parent]
    folder = next((f for f in folders if f.is_dir() and (f / next(iter(labels))).exists()), None)
    if folder is None:
        raise DatasetError(f"the images named in {label_file} are not in {root} "
                           f"(looked for {next(iter(labels))} in {', '.join(map(str, folders))})", root)
    missing = [name for name in labels if not (folder / name).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} images listed in {label_file} are missing from "
                           f"{folder}, e.g. {missing[:3]}", root)
    return [Sample(folder / name, labels[name]) for name in sorted(labels)]


def _class_folders(root: Path, subdirs: list[Path]) -> list[Sample]:
    index = wnid_index()
    unknown = [d.name for d in subdirs if d.name not in index]
    if unknown:
        raise DatasetError(f"class folders that are not ImageNet-1k wnids: {unknown[:5]}", root)
    return [Sample(p, index[d.name]) for d in subdirs for p in _images_in(d)]


def _wnid_names(root: Path, files: list[Path]) -> list[Sample]:
    index = wnid_index()
    samples = []
    for p in files:
        match = WNID_NAME_RE.match(p.name)
        if not match or match.group(1) not in index:
            raise DatasetError(f"file name does not start with an ImageNet-1k wnid: {p.name}", root)
        samples.append(Sample(p, index[match.group(1)]))
    return samples


def builtin_root(name: str) -> tuple[Path, Path] | None:
    """(images folder, label file) of a built-in dataset, or None."""
    if name != BUILTIN_SKIMAGE:
        return None
    try:
        import skimage.data
    except ImportError:
        raise DatasetError("the built-in dataset skimage-photos needs scikit-image: "
                           "pip install scikit-image") from None
    label_file = Path(str(resources.files("pytest_vaccbench.data").joinpath("skimage_photos.txt")))
    return Path(skimage.data.__file__).parent, label_file


def resolve(dataset: str, labels: str | None = None, name: str | None = None) -> Dataset:
    """Find the layout of `dataset` and list its samples in a fixed order."""
    builtin = builtin_root(dataset) if not Path(dataset).exists() else None
    if builtin:
        root, label_file = builtin
        samples = _flat(root, label_file)
        return Dataset(name or dataset, root, "builtin", tuple(samples), len(samples))
    root = Path(dataset).expanduser()
    if not root.is_dir():
        raise DatasetError("dataset folder does not exist (give a folder of ImageNet images, "
                           f"or the built-in `{BUILTIN_SKIMAGE}`)", root)
    if labels:
        label_file = Path(labels)
        layout, samples = "flat", _flat(root, label_file)
    else:
        label_candidates = [root / "val_label.txt", root.parent / "val_label.txt"]
        label_file = next((p for p in label_candidates if p.is_file()), None)
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and WNID_RE.match(d.name))
        files = _images_in(root)
        if label_file is not None:
            layout, samples = "flat", _flat(root, label_file)
        elif subdirs:
            layout, samples = "class-folders", _class_folders(root, subdirs)
        elif files and all(WNID_NAME_RE.match(p.name) for p in files):
            layout, samples = "wnid-names", _wnid_names(root, files)
        else:
            raise DatasetError(
                "cannot tell the dataset layout: no label file (val_label.txt here or in the "
                "parent folder, or --labels FILE), no wnid class folders (n01440764/...), and "
                f"the {len(files)} images are not named <wnid>_<name>.JPEG", root)
    if not samples:
        raise DatasetError(f"no images found ({layout} layout)", root)
    total = len(samples)
    if name is None:
        name = FULL_VAL_NAME if total == FULL_VAL_SIZE else root.name
        if root.name in ("images", "val") and total != FULL_VAL_SIZE:
            name = root.parent.name
    return Dataset(name, root, layout, tuple(samples), total)


def limit(dataset: Dataset, n: int | None) -> Dataset:
    """A deterministic subset of n samples, stratified by class, in dataset order (`--limit`)."""
    if n is None or n >= len(dataset.samples):
        return dataset
    if n <= 0:
        raise DatasetError(f"--limit must be positive, got {n}")
    return stratified(dataset, n)


def stratified(dataset: Dataset, n: int, salt: str = "") -> Dataset:
    """n samples (at most all), stratified by class, in dataset order.

    Classes take turns (class index order); within a class, samples are taken in the order
    of a hash of `salt` + their file name, so the subset does not depend on file system
    order and does not favour the first files of each class. A different salt gives an
    independent draw (the int8 calibration set uses its own).
    """
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(dataset.samples):
        by_class[s.label].append(i)
    for indices in by_class.values():
        indices.sort(key=lambda i: hashlib.sha1((salt + dataset.samples[i].path.name).encode()).hexdigest())
    n = min(n, len(dataset.samples))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for label in sorted(by_class):
            if depth < len(by_class[label]):
                chosen.append(by_class[label][depth])
                if len(chosen) == n:
                    break
        depth += 1
    samples = tuple(dataset.samples[i] for i in sorted(chosen))
    return Dataset(dataset.name, dataset.root, dataset.layout, samples, dataset.total)
