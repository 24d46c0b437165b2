"""Files the tool writes: safe names from untrusted text, paths kept inside their root,
whole-file writes, and the temporary files of killed runs removed.

Names in baseline files (family, model keys) and dataset names come from many people and
machines; they become folder names in the cache only through `safe_name`, and every path
built from them is checked with `inside` before anything is written there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import VaccbenchError

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}$")
FILE_MODE = 0o644  # cache files are shared by the users of a machine, read-only to the others


def safe_name(text: str) -> str:
    """`text` itself when it is a plain file name (letters, digits, `._+=-`, not starting
    with a dot, at most 100 characters), else its unsafe characters replaced by `_` plus a
    digest of the original: one path component, never `..`, never absolute, and distinct
    for distinct texts."""
    if _SAFE.match(text) and ".." not in text:
        return text
    plain = re.sub(r"[^A-Za-z0-9._+=-]+|\.{2,}", "_", text).strip("._")[:60] or "name"
    return f"{plain}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def inside(root: Path, path: Path) -> Path:
    """`path`, after checking that it resolves to somewhere under `root` (links followed)."""
    resolved, base = path.resolve(), root.resolve()
    if not resolved.is_relative_to(base):
        raise VaccbenchError(f"refusing to write {path}: it is outside {root}", path)
    return path


def file_identity(stat: os.stat_result) -> list[int]:
    """What changes whenever a file's content may have: its device and inode, size, mtime
    and ctime. The kernel sets the ctime on every write, rename into place and utime, and it
    cannot be set back: a file replaced by another of the same size with its mtime restored
    has another ctime (size and mtime alone cannot tell). Caches that remember a digest of
    a file's content remember it against this."""
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def output_target(path: Path, folder: bool = False, parents: bool = False) -> Path:
    """`path` when a command may write there: a file (or, with `folder`, a folder, made when
    absent) whose parent folder exists and is writable. A file target that is a folder, a
    folder target that is a file, and a missing parent are VaccbenchErrors that say what to
    do. With `parents` (pytest's report options, which make missing folders as pytest's
    --junitxml does) a missing parent is allowed when the nearest folder that exists above
    it is writable and no file stands in the way. Commands check every output this way
    before they start any work."""
    path = Path(path).expanduser()
    parent = path.resolve().parent
    if folder:
        if path.exists() and not path.is_dir():
            raise VaccbenchError("is a file, not a folder: give a folder (it is made when absent)", path)
        if path.is_dir():
            parent = path
    elif path.is_dir():
        raise VaccbenchError("is a folder: give a file name (e.g. one inside it)", path)
    if parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise VaccbenchError(f"cannot write here: {parent} is a file, not a folder", path)
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise VaccbenchError(f"cannot write here: the folder {parent} {what}; create it first, "
                             "or give a path in an existing folder", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VaccbenchError(f"cannot write here: the folder {parent} is not writable", path)
    return path


def write_atomic(path: Path, write: Callable[[BinaryIO], None], durable: bool = False) -> None:
    """Write through a temporary file in the same folder, then rename over `path`: a
    reader, a crash or a full disk sees the old file (or none) or the new one, never half,
    and no temporary file is left. The file keeps the old one's permissions (new files:
    FILE_MODE). `durable`: flushed to disk before the rename and the folder after it, so
    the file is old or new even after a power loss (baselines, reports)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8), durably: see `write_atomic`."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")), durable=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def owner_tag() -> str:
    """`<host>-<pid>`: put in temporary file names so that a later run can tell whether the
    process that made one is gone (`remove_orphans`)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(folder: Path, pattern: str) -> list[Path]:
    """Delete the files matching `pattern` whose name ends in the `owner_tag` (optionally
    followed by more `-`/`.` parts) of a process of this host that is gone: the leftovers
    of a run that was killed. Returns what was removed."""
    host = socket.gethostname()
    tag = re.compile(rf"{re.escape(host)}-(\d+)(?:[-.][^/]*)?$")
    removed = []
    for path in folder.glob(pattern):
        found = tag.search(path.name)
        if found and not alive(int(found.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path)
    return removed
