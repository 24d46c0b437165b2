"""Errors that name the file that is wrong and what is wrong with it.

The plugin shows these as a one-paragraph message instead of a traceback.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path


def control_characters(text: str) -> bool:
    """Whether `text` holds a control character (an ANSI escape sequence starts with one)."""
    return any(unicodedata.category(c) in ("Cc", "Cf") for c in text)


def printable(text: str) -> str:
    """`text` with its control characters escaped (ESC as \\x1b): safe to print on a terminal."""
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)


class VaccbenchError(Exception):
    """A user-facing problem: bad input file, bad option, missing tool."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path:
            where = f"{self.path}:{line}: " if line else f"{self.path}: "
        super().__init__(where + message)


class ImageDecodeError(VaccbenchError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


class BaselineError(VaccbenchError):
    """A baseline or suite YAML file that cannot be used."""


class DatasetError(VaccbenchError):
    """A dataset folder or label file that cannot be read."""


class BackendError(VaccbenchError):
    """A backend that cannot build, load or run a model."""
