"""Data tools for the accelerator's workflow: `vaccbench prep folders` and `vaccbench prep npz`.

- npz inputs, as the model zoo's image2npz writes them: each image decoded with OpenCV,
  BGR -> RGB, transposed to CHW, uint8, at its ORIGINAL size (the accelerator's vdsp op
  resizes, crops and normalises), saved uncompressed with `numpy.savez` under the single
  key `input_0` as `<target>/<parent folder name>/<stem>.npz`; the datalist holds one
  absolute npz path per line. The vamp backend writes its inputs with the same functions.
- class folders: a flat val folder + `val_label.txt` -> `<target>/<wnid>/<image>`, by hard
  link where the file system allows it (else a copy). Re-running is a no-op; a different
  file already at a target path stops the run before anything is written.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .baselines import atomic_write
from .dataset import IMAGE_SUFFIXES, imagenet_classes, resolve
from .errors import DatasetError, ImageDecodeError
from .image_cache import npy_header
from .preprocess import decode_cv2_rgb
from .safefiles import write_atomic

NPZ_KEY = "input_0"


def npz_array(image: str | Path) -> np.ndarray:
    """One image as image2npz stores it: uint8 (3, H, W) RGB at the original size."""
    return np.ascontiguousarray(decode_cv2_rgb(image).transpose(2, 0, 1))


def npz_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array `key` in an npz file, from its npy header, checked against
    the member's size: nothing is decompressed, so a file that would inflate to gigabytes is
    refused before it is read. KeyError: no such array; ValueError, OSError, BadZipFile: not
    an npz file as numpy writes them (truncated, overwritten)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
        with archive.open(info) as member:
            shape, _, dtype = npy_header(member)
            header = member.tell()
    if dtype.hasobject:
        raise ValueError("it holds Python objects")
    data = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size != header + data:
        raise ValueError(f"{key}.npy holds {info.file_size} bytes, its header declares {header + data}")
    return tuple(shape), dtype


def npz_intact(path: Path) -> bool:
    """Whether an npz input written earlier is whole: a readable zip whose input_0 is uint8
    (3, H, W) of the size its header declares. A truncated or overwritten file (a full disk,
    a copy cut short) is not, and is written again rather than handed to vamp. Reads the
    zip directory and the npy header only, not the pixels."""
    try:
        shape, dtype = npz_header(path, NPZ_KEY)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return False
    return len(shape) == 3 and shape[0] == 3 and dtype == np.uint8


def npz_path(image: Path, target: Path) -> Path:
    return target / image.parent.name / f"{image.stem}.npz"


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """One writer per npz folder (xdist workers share it); others wait, then find it done."""
    import fcntl

    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class NpzResult:
    paths: tuple[Path, ...]  # one per image, in the images' order
    written: int  # how many were new (the rest were already there)


def write_npz(images: Sequence[Path], target: Path, workers: int = 1) -> NpzResult:
    """image2npz for `images`, in their order; existing npz files are kept (a cache), unless
    damaged (npz_intact), when they are written again.

    Every image is tried before an error is raised, so the message lists all unreadable ones.
    """
    paths = [npz_path(Path(i), target) for i in images]
    seen: dict[Path, Path] = {}
    for image, path in zip(images, paths):
        if path in seen:
            raise DatasetError(f"{image} and {seen[path]} would both be written to {path} "
                               "(same folder name and stem)")
        seen[path] = Path(image)
    target.mkdir(parents=True, exist_ok=True)
    for folder in {p.parent for p in paths}:
        folder.mkdir(exist_ok=True)

    def convert(job: tuple[Path, Path]) -> ImageDecodeError | bool:
        image, path = job
        if path.exists() and npz_intact(path):
            return False
        try:
            array = npz_array(image)
        except ImageDecodeError as exc:
            return exc
        write_atomic(path, lambda handle: np.savez(handle, **{NPZ_KEY: array}))
        return True

    with _folder_lock(target), ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = list(pool.map(convert, zip(map(Path, images), paths)))
    errors = [o for o in outcomes if isinstance(o, ImageDecodeError)]
    if errors:
        listed = "\n  ".join(str(e) for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise ImageDecodeError(f"{len(errors)} unreadable image(s), no npz written for them:\n"
                               f"  {listed}{more}")
    return NpzResult(tuple(paths), sum(o is True for o in outcomes))


def write_datalist(paths: Sequence[Path], datalist: Path) -> None:
    """The datalist vamp reads: one absolute npz path per line, in dataset order."""
    datalist.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(datalist, "".join(f"{Path(p).resolve()}\n" for p in paths))


def find_images(folder: Path) -> list[Path]:
    """Every image under `folder`, recursively, sorted by relative path (as image2npz walks)."""
    if not folder.is_dir():
        raise DatasetError("image folder does not exist", folder)
    found = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not found:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under this folder", folder)
    return found


@dataclass(frozen=True)
class FolderResult:
    linked: int
    copied: int
    present: int


def _same_file(a: Path, b: Path) -> bool:
    return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)


def class_folders(dataset: str | Path, target: Path, labels: str | None = None,
                  copy: bool = False) -> FolderResult:
    """Flat val folder + label file -> `<target>/<wnid>/<image>`, hard-linked where possible."""
    data = resolve(str(dataset), labels)
    if data.layout != "flat":
        raise DatasetError(f"expected a flat folder with a label file, found the {data.layout} "
                           "layout", data.root)
    wnids = [w for w, _ in imagenet_classes()]
    jobs = [(s.path, target / wnids[s.label] / s.path.name) for s in data.samples]
    conflicts = [dst for src, dst in jobs if dst.exists() and not _same_file(src, dst)]
    if conflicts:
        shown = "\n  ".join(str(c) for c in conflicts[:10])
        raise DatasetError(f"{len(conflicts)} target file(s) already exist with other content; "
                           f"nothing was written or removed:\n  {shown}", target)
    linked = copied = present = 0
    for src, dst in jobs:
        if dst.exists():
            present += 1
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not copy:
            try:
                os.link(src, dst)
                linked += 1
                continue
            except OSError:  # another file system, or links not allowed: copy instead
                pass
        with open(src, "rb") as source:
            write_atomic(dst, lambda handle: shutil.copyfileobj(source, handle))
        shutil.copystat(src, dst)
        copied += 1
    return FolderResult(linked, copied, present)
