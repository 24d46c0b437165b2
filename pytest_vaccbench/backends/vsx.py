"""The vsx backend: VastStreamX (`import vaststreamx as vsx`), the accelerator's Python
runtime, run as the model zoo's accuracy script runs it.

The compiled models are found as vamp's are (backends/compiled.py; --vsx-root, else
--vamp-root, or the entry's `vamp:` block), with the vdsp_params JSON of each model. Each
model runs in a process of its own, backends/vsx_runner.py under --vsx-python (default: this
interpreter), which makes the zoo script's calls in its order (set_device, Model, the fused
op from the JSON + the model op in a graph, a stream, then per batch: OpenCV decode, odd
sizes made even, RGB planar, create_image, run_sync or run_async). This process watches it:
every call it starts is announced, and when the stream stops answering for --vsx-timeout
seconds the process and its children are killed and the test fails naming that call. A
call that never returns or a native crash thus ends one model's process, never the session.

The first output of each image is its class scores (a softmax or not, as the build has it);
1001 classes lose the background column (class_scores). Every failure names the model, the
compiled model's files, the vdsp JSON and the device.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import progress
from ..baselines import ModelEntry
from ..dataset import Dataset
from ..errors import BackendError, VaccbenchError
from ..export import file_digest
from ..options import split_command
from ..preprocess import PreprocessSpec
from . import RunOptions
from .compiled import CompiledBackend, CompiledModel, find_compiled, tail_lines
from .vamp import ProcessTree
from .vsx_runner import MARK

DEFAULT_TIMEOUT = 300.0
MODES = ("sync", "async")
RUNNER = Path(__file__).with_name("vsx_runner.py")
PROBE_TIMEOUT = 120.0
TAIL_LINES = 20

PROBE = """\
import json
try:
    import vaststreamx as vsx
except BaseException as exc:
    print(json.dumps({"problem": f"{type(exc).__name__}: {exc}"}))
else:
    version = getattr(vsx, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as installed
            version = installed("vaststreamx")
        except Exception:
            version = "unknown"
    print(json.dumps({"version": str(version)}))
"""


class VsxError(BackendError):
    """The VastStreamX run of a model failed: device, model, stream or outputs."""


@dataclass(frozen=True)
class VsxSettings:
    """The vsx options of a session (from RunOptions.extra, filled by the plugin)."""

    python: tuple[str, ...]  # --vsx-python, split like a shell command line
    root: Path | None = None
    mode: str = "sync"
    batch_size: int = 1
    timeout: float = DEFAULT_TIMEOUT
    device: int = 0  # the one devices.DevicePool gave this process, else 0 (the zoo's default)

    @classmethod
    def from_options(cls, extra: Mapping[str, Any]) -> "VsxSettings":
        python = tuple(split_command(extra.get("vsx_python") or "", "--vsx-python")) or (sys.executable,)
        root = extra.get("vsx_root") or extra.get("vamp_root")
        mode = extra.get("vsx_mode") or "sync"
        if mode not in MODES:
            raise VaccbenchError(f"--vsx-mode={mode}: must be one of {', '.join(MODES)}")
        device = extra.get("device")
        return cls(python=python, root=Path(root).expanduser().resolve() if root else None,
                   mode=mode, batch_size=int(extra.get("vsx_batch") or 1),
                   timeout=float(extra.get("vsx_timeout") or DEFAULT_TIMEOUT),
                   device=0 if device is None else int(device))


@dataclass(frozen=True)
class Sdk:
    """What `import vaststreamx` gives in the --vsx-python interpreter."""

    version: str | None
    problem: str | None = None


_SDKS: dict[tuple[tuple[str, ...], str | None], Sdk] = {}


def find_sdk(python: tuple[str, ...]) -> Sdk:
    """Whether `python` imports the SDK, and its version; asked once per interpreter and
    PYTHONPATH in a process (each test asks)."""
    key = (python, os.environ.get("PYTHONPATH"))
    if key not in _SDKS:
        _SDKS[key] = _probe(python)
    return _SDKS[key]


def _probe(python: tuple[str, ...]) -> Sdk:
    try:
        done = subprocess.run([*python, "-c", PROBE], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT)
    except OSError as exc:
        return Sdk(None, f"cannot run {shlex.join(python)}: {exc.strerror}")
    except subprocess.TimeoutExpired:
        return Sdk(None, f"{shlex.join(python)} did not import it within {PROBE_TIMEOUT:g} s")
    for line in reversed(done.stdout.splitlines()):  # the SDK may print its own lines first
        with contextlib.suppress(ValueError):
            answer = json.loads(line)
            if isinstance(answer, dict):
                return Sdk(answer.get("version"), answer.get("problem"))
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return Sdk(None, f"{shlex.join(python)} exited with code {done.returncode} ({tail})")


def describe(entry: ModelEntry, precision: str, model: CompiledModel, device: int) -> str:
    """The lines every vsx failure ends with: model, compiled files, vdsp JSON, device."""
    files = ", ".join(p.name for p in model.files()) or "no files"
    return (f"\n  model: {entry.test_name} vsx/{precision}, compiled model {model.prefix} ({files})"
            f"\n  vdsp_params: {model.vdsp_params}\n  device: {device}")


def _tail(path: Path) -> str:
    return "\n".join(f"  | {line}" for line in tail_lines(path, TAIL_LINES) or [])


class VsxBackend(CompiledBackend):
    name = "vsx"
    option_keys = ("vsx_mode",)
    root_option = "--vsx-root (or --vamp-root)"
    error = VsxError
    default_batch_size = 1  # the zoo script's

    def root(self, options: RunOptions) -> Path | None:
        return VsxSettings.from_options(options.extra).root

    def runtime_missing(self, options: RunOptions) -> str | None:
        python = VsxSettings.from_options(options.extra).python
        sdk = find_sdk(python)
        if sdk.problem:
            return (f"VastStreamX SDK not found: `import vaststreamx` fails in {shlex.join(python)} "
                    f"({sdk.problem}); run on a device host with the SDK installed, or pass "
                    "--vsx-python with the interpreter that has it")
        return None

    def batch_size(self, entry: ModelEntry, options: RunOptions) -> int:
        """--vsx-batch: the batch the compiled model is loaded with (vsx.Model's)."""
        return VsxSettings.from_options(options.extra).batch_size

    def versions(self, options: RunOptions) -> list[str]:
        sdk = find_sdk(VsxSettings.from_options(options.extra).python)
        return [f"vaststreamx {sdk.version}"] if sdk.version else []

    def provenance(self, entry: ModelEntry, precision: str, options: RunOptions) -> dict[str, Any]:
        """The SDK's version, the device, and the sha256 of the compiled model's files and of
        the vdsp JSON: which build ran where."""
        settings = VsxSettings.from_options(options.extra)
        model = next((m for m in find_compiled(entry, settings.root) if m.precision == precision), None)
        found: dict[str, Any] = {"vsx_sdk": find_sdk(settings.python).version,
                                 "vsx_device": settings.device}
        if model is not None:
            found["compiled_sha256"] = {p.name: file_digest(p, options.cache_dir) for p in model.files()}
            if model.vdsp_params is not None and model.vdsp_params.is_file():
                found["vdsp_sha256"] = file_digest(model.vdsp_params, options.cache_dir)
            if model.crop_resize_ext:
                found["crop_resize_ext"] = True
        return found

    def host_spec(self, entry: ModelEntry, precision: str, options: RunOptions) -> PreprocessSpec:
        """What the device computes from each image for this model, as a CPU preprocessing:
        the fused op of its vdsp JSON after the host's odd-to-even resize (with
        `crop_resize_ext`, the short-side variant). Feeding it to a CPU backend separates the
        device's preprocessing from the rest of the device's run."""
        from ..vdsp import ext_spec, host_spec

        model = self.compiled_model(entry, precision, options)
        spec = self.vdsp_spec(model)
        return ext_spec(spec) if model.crop_resize_ext else host_spec(spec)

    def scores(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> np.ndarray:
        settings = VsxSettings.from_options(options.extra)
        model = self.compiled_model(entry, precision, options)
        context = describe(entry, precision, model, settings.device)
        try:
            spec = self.vdsp_spec(model)
        except VaccbenchError as exc:
            raise VsxError(f"{exc}{context}") from None
        run_dir = self.run_dir(entry, precision, options)
        job = {"prefix": str(model.prefix), "vdsp": str(model.vdsp_params), "device": settings.device,
               "batch": settings.batch_size, "mode": settings.mode, "size": spec.output_size,
               "resize": spec.resize, "crop_resize_ext": model.crop_resize_ext,
               "workers": options.workers, "output": str(run_dir / "scores.npy"),
               "images": [str(s.path) for s in dataset.samples]}
        (run_dir / "job.json").write_text(json.dumps(job, indent=1))
        run_script(settings, run_dir, context)
        try:
            scores = np.load(run_dir / "scores.npy", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise VsxError(f"cannot read the VastStreamX run's scores ({exc}); its files are in "
                           f"{run_dir}{context}") from None
        if scores.ndim != 2 or scores.shape[0] != len(dataset.samples):
            raise VsxError(f"the VastStreamX run gave scores of shape {scores.shape} for "
                           f"{len(dataset.samples)} images; its files are in {run_dir}{context}")
        return self.finish(scores, entry, run_dir, f"its scores are in {run_dir}{context}")


POLL_SECONDS = 0.2  # how often the runner's process tree is listed while it runs


def run_script(settings: VsxSettings, run_dir: Path, context: str) -> None:
    """Run backends/vsx_runner.py on run_dir/job.json; its events advance the progress, and
    its silence beyond settings.timeout, its error or its death fail with `context`."""
    command = [*settings.python, str(RUNNER), str(run_dir / "job.json")]
    (run_dir / "vsx.command.txt").write_text(shlex.join(command) + "\n")
    stderr, stdout_log = run_dir / "vsx.stderr.log", run_dir / "vsx.stdout.log"

    def failure(message: str) -> VsxError:
        tail = _tail(stderr)
        logs = f"\n  its log: {stderr}" + (f"\n{tail}" if tail else "")
        return VsxError(f"{message}{context}{logs}")

    with open(stderr, "wb") as err, open(stdout_log, "w") as log:
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            raise VsxError(f"cannot start {shlex.join(command[:1])}: {exc.strerror}{context}") from None
        tree = ProcessTree(proc.pid)
        events = Events(log)
        try:
            events.follow(proc, tree, settings.timeout)
            proc.stdout.close()  # type: ignore[union-attr]
        except TimeoutError:
            tree.kill(proc)
            raise failure(f"the stream stopped answering: nothing within {settings.timeout:g} s "
                          f"(--vsx-timeout) while: {events.step}; the VastStreamX process and its "
                          "children were killed") from None
        except BaseException:  # Ctrl-C, pytest-timeout: leave nothing running
            tree.kill(proc)
            raise
        tree.kill(proc)  # children it left behind
    code = proc.returncode
    if events.error is not None:
        said = events.error if events.step in events.error else f"{events.error} (while: {events.step})"
        raise failure(said)
    if code != 0 or not events.finished:
        how = (f"was killed by signal {-code} ({_signal_name(-code)})" if code < 0
               else f"exited with code {code}")
        raise failure(f"the VastStreamX process {how} while: {events.step}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


class Events:
    """The runner's `@vaccbench {json}` lines, read as they come; other output goes to `log`."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.step = "starting the VastStreamX process"
        self.error: str | None = None
        self.finished = False
        self._pending = b""

    def handle(self, line: str) -> None:
        if not line.startswith(MARK):
            self.log.write(line + "\n")
            return
        try:
            event = json.loads(line[len(MARK):])
        except ValueError:
            event = None
        if not isinstance(event, dict):  # not one of the runner's events: output like any other
            self.log.write(line + "\n")
            return
        self.step = event.get("step", self.step)
        if "done" in event:
            progress.advance(int(event["done"]))
        if "error" in event:
            self.error = str(event["error"])
        self.finished = self.finished or bool(event.get("finished"))

    def follow(self, proc: subprocess.Popen, tree: ProcessTree, timeout: float) -> None:
        """Read until the runner exits; TimeoutError after `timeout` seconds without a line."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        listed = 0.0  # when the process tree was last listed
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError
                if selector.select(timeout=min(POLL_SECONDS, deadline - now)):
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break  # the runner closed its stdout: it is exiting
                    *lines, self._pending = (self._pending + chunk).split(b"\n")
                    for line in lines:
                        self.handle(line.decode(errors="replace"))
                    deadline = time.monotonic() + timeout
                if now - listed >= POLL_SECONDS:  # listing /proc costs: not after every line
                    tree.refresh()
                    listed = now
        finally:
            selector.close()
        if self._pending:
            self.handle(self._pending.decode(errors="replace"))
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError from None
