"""The vamp backend: the accelerator's own runner (`vamp`, the vendor's binary) as a subprocess.

Contract (the model zoo's accuracy run): the images as npz files (prep.write_npz, the zoo's
image2npz), a datalist of their paths, then
    vamp -m <model prefix> --vdsp_params <json> -i I -p P -b B [-d DEVICE] [-s [3,H,W]]
         --datalist <datalist> --path_output <folder>
which writes `output_000000.npz`, `output_000001.npz`, ... in datalist order, each with
`output_0` = the class probabilities of one image ((1, C) or (C,), C = 1000 or 1001).
Outputs are matched to images by position in the datalist and scored by class INDEX.

Where the compiled models are: backends/compiled.py (--vamp-root, or a `vamp:` block).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..baselines import ModelEntry
from ..cache import kind_dir
from ..dataset import Dataset
from ..errors import BackendError, VaccbenchError
from ..image_cache import files_digest
from ..prep import npz_header
from ..options import split_command
from ..safefiles import inside, safe_name
from . import RunOptions
from .compiled import CompiledBackend, CompiledModel, tail_lines

STDERR_TAIL_LINES = 20
DEFAULT_TIMEOUT = 3600.0


class VampError(BackendError):
    """vamp failed: crashed, hung, or wrote outputs that break the file contract."""


@dataclass(frozen=True)
class VampSettings:
    """The vamp options of a session (from RunOptions.extra, filled by the plugin)."""

    command: tuple[str, ...]  # --vamp-bin, split like a shell command line
    root: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    instances: int = 1
    processes: int = 1
    batch_size: int = 1
    device: int | None = None
    extra_args: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, extra: Mapping[str, Any]) -> "VampSettings":
        command = tuple(split_command(extra.get("vamp_bin") or "vamp", "--vamp-bin"))
        if not command:
            raise VaccbenchError("--vamp-bin is empty")
        root = extra.get("vamp_root")
        return cls(command=command, root=Path(root).expanduser().resolve() if root else None,
                   timeout=float(extra.get("vamp_timeout") or DEFAULT_TIMEOUT),
                   instances=int(extra.get("vamp_instances") or 1),
                   processes=int(extra.get("vamp_processes") or 1),
                   batch_size=int(extra.get("vamp_batch") or 1),
                   device=extra.get("device"),  # the one devices.DevicePool gave this process
                   extra_args=tuple(split_command(extra.get("vamp_args") or "", "--vamp-args")))

    def executable(self) -> str | None:
        """The binary's full path, or None when it is not there."""
        return shutil.which(self.command[0])


class VampBackend(CompiledBackend):
    name = "vamp"
    option_keys = ("vamp_instances", "vamp_processes", "vamp_batch", "vamp_args")
    root_option = "--vamp-root"
    error = VampError

    def root(self, options: RunOptions) -> Path | None:
        return VampSettings.from_options(options.extra).root

    def runtime_missing(self, options: RunOptions) -> str | None:
        settings = VampSettings.from_options(options.extra)
        if settings.executable() is None:
            return (f"vamp binary not found: {settings.command[0]!r} is not an executable on PATH; "
                    "run on a machine with a VastAI accelerator and its SDK, or pass --vamp-bin")
        return None

    def scores(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> np.ndarray:
        from ..prep import write_datalist, write_npz

        settings = VampSettings.from_options(options.extra)
        model = self.compiled_model(entry, precision, options)
        self.vdsp_spec(model)  # a broken file, or one for another input size, fails here
        # keyed by the images' content, as the image cache is: a changed image is a new folder
        npz_root = kind_dir(options.cache_dir, "vamp-npz")
        inputs = inside(npz_root, npz_root / f"{safe_name(dataset.name)}-"
                                             f"{files_digest(dataset.samples)[:16]}")
        npz = write_npz([s.path for s in dataset.samples], inputs, options.workers)
        datalist = inputs / "npz_datalist.txt"
        write_datalist(npz.paths, datalist)
        run_dir = self.run_dir(entry, precision, options)
        output = run_dir / "output"
        output.mkdir()
        command = vamp_command(settings, model, datalist, output)
        run_vamp(command, settings.timeout, run_dir)
        probabilities = read_outputs(output, len(npz.paths), run_dir)
        return self.finish(probabilities, entry, run_dir, f"vamp's outputs are in {output}")


def vamp_command(settings: VampSettings, model: CompiledModel, datalist: Path,
                 output: Path) -> list[str]:
    """The accuracy-run command line, as the model zoo documents it."""
    command = [*settings.command, "-m", str(model.prefix), "--vdsp_params", str(model.vdsp_params),
               "-i", str(settings.instances), "-p", str(settings.processes),
               "-b", str(settings.batch_size)]
    if settings.device is not None:
        command += ["-d", str(settings.device)]
    if model.shape:
        command += ["-s", "[" + ",".join(str(d) for d in model.shape) + "]"]
    return [*command, "--datalist", str(datalist), "--path_output", str(output),
            *settings.extra_args]


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last `lines` lines of vamp's stderr, however large it grew."""
    shown = tail_lines(path, lines)
    if shown is None:
        return "  (no output)"
    return "\n".join(f"  | {line}" for line in shown) or "  (empty)"


POLL_SECONDS = 0.2  # how often the descendants of a running vamp are listed


class ProcessTree:
    """vamp and every process it started, listed while it runs: a child that left vamp's
    process group (setsid) or whose parent exited is still known, and killed with the rest."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._psutil = psutil
        self.root = pid
        self.known: dict[int, Any] = {}

    def refresh(self) -> None:
        try:
            children = self._psutil.Process(self.root).children(recursive=True)
        except self._psutil.Error:
            children = []
        for known in list(self.known.values()):  # orphans keep their own descendants
            with contextlib.suppress(self._psutil.Error):
                children += known.children(recursive=True)
        for child in children:
            self.known.setdefault(child.pid, child)

    def kill(self, proc: subprocess.Popen, grace: float = 2.0) -> None:
        """SIGTERM, then SIGKILL, to vamp's process group and to every descendant seen."""
        self.refresh()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        for child in self.known.values():  # psutil checks the pid is still that process
            with contextlib.suppress(self._psutil.Error):
                child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        self._psutil.wait_procs(list(self.known.values()), timeout=max(0.1, grace / 2))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for child in self.known.values():
            with contextlib.suppress(self._psutil.Error):
                child.kill()
        proc.wait()


def _wait(proc: subprocess.Popen, tree: ProcessTree, timeout: float) -> int:
    """proc's exit code, listing its descendants every POLL_SECONDS; TimeoutExpired after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        tree.refresh()
        try:
            return proc.wait(timeout=max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise


def run_vamp(command: Sequence[str], timeout: float, run_dir: Path) -> None:
    """Run vamp in its own process group; its stdout/stderr go to files in `run_dir`."""
    stdout, stderr = run_dir / "vamp.stdout.log", run_dir / "vamp.stderr.log"
    (run_dir / "vamp.command.txt").write_text(shlex.join(command) + "\n")
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        try:
            proc = subprocess.Popen(list(command), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            raise VampError(f"cannot start vamp ({shlex.join(command[:1])}): {exc.strerror}") from None
        tree = ProcessTree(proc.pid)
        try:
            code = _wait(proc, tree, timeout)
        except subprocess.TimeoutExpired:
            tree.kill(proc)
            raise VampError(f"vamp did not finish within {timeout:g} s (--vamp-timeout); it and its "
                            f"child processes were killed.\n  command: {shlex.join(command)}\n"
                            f"last lines of its stderr ({stderr}):\n{_tail(stderr)}") from None
        except BaseException:  # Ctrl-C, pytest-timeout: leave no vamp running
            tree.kill(proc)
            raise
    tree.kill(proc)  # children it left behind
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise VampError(f"vamp {how}.\n  command: {shlex.join(command)}\n"
                        f"last lines of its stderr ({stderr}):\n{_tail(stderr)}")


CLASSES = (1000, 1001)  # the class counts of a model's scores (1001: a background class first)


def read_outputs(folder: Path, count: int, run_dir: Path) -> np.ndarray:
    """`output_000000.npz` ... -> (count, classes) float32, in datalist order. Each file's
    shape is checked from its header before its data is read, and the rows are written
    into one array made for `count` rows: memory is bounded by the answer's size."""
    stderr = run_dir / "vamp.stderr.log"

    def problem(message: str, path: Path | None = None) -> VampError:
        return VampError(f"{message}\nlast lines of vamp's stderr ({stderr}):\n{_tail(stderr)}", path)

    expected = [f"output_{i:06d}.npz" for i in range(count)]
    present = {p.name for p in folder.glob("output_*.npz")}
    missing = [n for n in expected if n not in present]
    extra = sorted(present - set(expected))
    if missing or extra:
        listed = missing or extra
        raise problem(f"vamp wrote {len(present)} output files for {count} inputs in {folder}: "
                      f"{'missing' if missing else 'unexpected'} {', '.join(listed[:5])}"
                      f"{' ...' if len(listed) > 5 else ''}")
    scores: np.ndarray | None = None
    for i, name in enumerate(expected):
        path = folder / name
        try:
            if path.stat().st_size == 0:
                raise EOFError
            shape, dtype = npz_header(path, "output_0")
        except KeyError:
            raise problem(f"no `output_0` in this output (keys: {_keys(path)})", path) from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            what = "an empty file" if isinstance(exc, EOFError) else f"{exc}"
            raise problem(f"cannot read vamp output ({what}): not an npz file as vamp writes "
                          "them; check the vamp version and its stderr", path) from None
        classes = shape[-1] if len(shape) in (1, 2) and (len(shape) == 1 or shape[0] == 1) else None
        if classes not in CLASSES or (scores is not None and classes != scores.shape[1]):
            want = (f"(1, {scores.shape[1]}) like the outputs before it" if scores is not None else
                    f"(1, classes) or (classes,), classes {' or '.join(map(str, CLASSES))}")
            raise problem(f"output_0 has shape {shape}, expected {want}: one image's class "
                          "scores per output file", path)
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise problem(f"output_0 holds {dtype}, not class scores (numbers)", path)
        try:
            with np.load(path, allow_pickle=False) as data:
                row = np.asarray(data["output_0"], dtype=np.float32).reshape(-1)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise problem(f"cannot read vamp output ({exc}): not an npz file as vamp writes "
                          "them; check the vamp version and its stderr", path) from None
        bad = int(np.count_nonzero(~np.isfinite(row)))
        if bad:
            raise problem(f"output_0 holds {bad} NaN/inf values of {row.size}", path)
        if scores is None:
            scores = np.empty((count, classes), np.float32)
        scores[i] = row
    return scores if scores is not None else np.empty((0, CLASSES[0]), np.float32)


def _keys(path: Path) -> list[str]:
    with contextlib.suppress(OSError, zipfile.BadZipFile):
        with zipfile.ZipFile(path) as archive:
            return [n.removesuffix(".npy") for n in archive.namelist()[:10]]
    return []

