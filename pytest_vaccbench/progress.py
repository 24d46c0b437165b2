"""Progress of a long inference: images done and images/s on one terminal line.

Three parties, so that no shared signature has to carry a progress object:
- the front end (the plugin, a script) says where progress may be drawn: `shown_on(write)`;
- `run.evaluate` opens a task around one backend run: `task(total, label)`;
- the batch loop reports finished images: `advance(n)` (`backends.iter_batches` does; a
  backend with its own loop calls it too). Without a front end or a task these are no-ops.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

Write = Callable[[str], None]

_screen: tuple[Write, int, float] | None = None  # where to draw, free columns, delay
_task: "Progress | None" = None


class Progress:
    """Draws `[####......] 320/650 images  45.2 img/s  label` in place, with ANSI erase.

    Nothing is drawn during the first `delay` seconds (short runs stay quiet), then at most
    every `interval` seconds; `close` erases the line, leaving the terminal as it was.
    """

    def __init__(self, total: int, label: str, write: Write, width: int = 60, delay: float = 1.0,
                 interval: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.label, self.write, self.width = total, label, write, width
        self.delay, self.interval, self.clock = delay, interval, clock
        self.done = 0
        self.start = clock()
        self._last_draw: float | None = None
        self._drawn = 0  # characters currently on the screen

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        due = self._last_draw is None or now - self._last_draw >= self.interval
        if now - self.start >= self.delay and (due or self.done >= self.total):
            self._draw(self.line(now))
            self._last_draw = now

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        cells = 20
        filled = cells * self.done // max(self.total, 1)
        text = (f"[{'#' * filled}{'.' * (cells - filled)}] {self.done}/{self.total} images  "
                f"{self.done / elapsed:.1f} img/s  {self.label}")
        return text[:self.width]

    def _draw(self, text: str) -> None:
        self.write("\b" * self._drawn + text + "\x1b[K")
        self._drawn = len(text)

    def close(self) -> None:
        if self._drawn:
            self.write("\b" * self._drawn + "\x1b[K")
            self._drawn = 0


@contextmanager
def shown_on(write: Write, width: int, delay: float = 1.0) -> Iterator[None]:
    """Draw the progress of tasks opened inside this block with `write`, in `width` columns,
    once a task has run for `delay` seconds."""
    global _screen
    previous, _screen = _screen, (write, width, delay)
    try:
        yield
    finally:
        _screen = previous


@contextmanager
def task(total: int, label: str) -> Iterator[Progress | None]:
    """A run over `total` images; shown only inside `shown_on`."""
    global _task
    if _screen is None:
        yield None
        return
    write, width, delay = _screen
    previous, _task = _task, Progress(total, label, write, width, delay)
    try:
        yield _task
    finally:
        _task.close()
        _task = previous


def advance(n: int) -> None:
    """`n` more images went through the model."""
    if _task is not None:
        _task.advance(n)
