"""Thumbnails of dataset images for the HTML pages, embedded as small data: URIs.

Images are looked up by file name (what a predictions file records) among files that
exist in a local folder: a name is only ever a key, never joined into a path. Each image is
decoded under the project's one pixel limit and re-encoded small, so only pixels reach
the page, and a page holds at most `PAGE_LIMIT` of them.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Iterable, Mapping

from .dataset import IMAGE_SUFFIXES
from .errors import VaccbenchError
from .preprocess import decode_rgb

SIZE = 96  # pixels on the longer side
QUALITY = 70  # JPEG: a thumbnail is 2-4 KB
PAGE_LIMIT = 120  # thumbnails in one page, about 0.5 MB at most
PER_TEST = 12  # thumbnails shown for one test or one pair


def _image_files(folder: Path) -> Iterable[tuple[str, Path]]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [(e.name, Path(e.path)) for e in entries
            if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]


def files_in(root: Path) -> dict[str, Path]:
    """Image files by name in `root` and its subfolders one level down (the dataset layouts:
    flat, images/ or val/ beside a label file, class folders)."""
    found: dict[str, Path] = {}
    folders = [root]
    try:
        folders += sorted(Path(e.path) for e in os.scandir(root) if e.is_dir())
    except OSError:
        return found
    for folder in folders:
        for name, path in _image_files(folder):
            found.setdefault(name, path)
    return found


def data_uri(path: Path, size: int = SIZE) -> tuple[str, int, int] | None:
    """(data: URI, width, height) of a small JPEG of the image, or None when it cannot be read."""
    try:
        image = decode_rgb(path)
    except (VaccbenchError, OSError):
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=QUALITY)
    return (f"data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()}",
            image.width, image.height)


class Thumbnails:
    """The thumbnails one page may embed: images found by name, at most `limit` in all."""

    def __init__(self, files: Mapping[str, Path] | None = None, limit: int | None = None) -> None:
        self.files = dict(files or {})
        self.left = PAGE_LIMIT if limit is None else limit
        self._made: dict[str, tuple[str, int, int] | None] = {}

    def img(self, name: str, alt: str) -> str:
        """An <img> of the image named `name`, or "" (not local, unreadable, or over the limit)."""
        if name not in self._made:
            path = self.files.get(name)
            if path is None or self.left <= 0:
                return ""
            self._made[name] = data_uri(path)
            self.left -= 1
        made = self._made[name]
        if made is None:
            return ""
        uri, width, height = made
        return f'<img src="{uri}" width="{width}" height="{height}" alt="{html.escape(alt)}">'
