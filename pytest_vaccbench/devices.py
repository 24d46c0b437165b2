"""Device pool: each test process (an xdist worker, or the one pytest process) holds one
accelerator for its whole session, through a file lock per device.

The lock is an OS lock (filelock), so the kernel drops it when its holder dies: a worker that
xdist starts in place of a crashed one takes a device nobody holds, never the dead worker's
number mapped onto a card that does not exist or that another worker is using.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import VaccbenchError

POLL_SECONDS = 0.2


def check_workers(ids: tuple[int, ...], workers: int) -> None:
    """More processes than devices would leave some without one: refuse at startup."""
    if workers > len(ids):
        raise VaccbenchError(f"{workers} xdist workers for {len(ids)} device(s) "
                             f"({','.join(map(str, ids))}): each worker holds one device; "
                             f"run with -n {len(ids)} or fewer, or give more --devices")


@dataclass
class DevicePool:
    """The devices of `ids`, one lock file each under `lock_dir` (shared by every process
    that may use the same cards: all workers of a session, and other sessions on the host)."""

    ids: tuple[int, ...]
    lock_dir: Path
    held: tuple[int, FileLock] | None = field(default=None, init=False)
    problem: str | None = field(default=None, init=False)  # why this process holds none

    @property
    def device(self) -> int | None:
        """The device this process holds, if any."""
        return self.held[0] if self.held else None

    def lock_path(self, device: int) -> Path:
        return self.lock_dir / f"device-{device}.lock"

    def acquire(self, wait: float = 30.0) -> int:
        """Take the first free device, waiting up to `wait` seconds for one; keep it until
        `release` (or until this process ends)."""
        if self.held is not None:
            return self.held[0]
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VaccbenchError(f"cannot create the device lock folder: {exc.strerror}",
                                 self.lock_dir) from None
        deadline = time.monotonic() + wait
        while True:
            for device in self.ids:
                lock = FileLock(self.lock_path(device), thread_local=False)
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                self.held = (device, lock)
                return device
            if time.monotonic() >= deadline:
                raise VaccbenchError(
                    f"no free device among {','.join(map(str, self.ids))} after {wait:g} s: other "
                    f"processes hold all their locks in {self.lock_dir}; wait for them, or give "
                    "this session other --devices")
            time.sleep(POLL_SECONDS)

    def release(self) -> None:
        if self.held is not None:
            self.held[1].release()
            self.held = None
