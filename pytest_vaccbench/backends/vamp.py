"""The vamp backend: the accelerator's own runner (`vamp`, the vendor's binary) as a subprocess.

Contract (the model zoo's accuracy run): the images as npz files (prep.write_npz, the zoo's
image2npz), a datalist of their paths, then
    vamp -m <model prefix> --vdsp_params <json> -i I -p P -b B [-d DEVICE] [-s [3,H,W]]
         --datalist <datalist> --path_output <folder>
which writes `output_000000.npz`, `output_000001.npz`, ... in datalist order, each with
`output_0` = the class probabilities of one image ((1, C) or (C,), C = 1000 or 1001).
Outputs are matched to images by position in the datalist and scored by class INDEX.

Where the compiled models are (first match wins):
1. a `vamp:` block in the model's baseline entry, one mapping or a list of them:
   `{model: <prefix>, vdsp_params: <json>, precision: int8-percentile, shape: [3, 224, 224]}`;
   relative paths are relative to --vamp-root, else to the baseline file's folder; without
   `precision` it is read from the model folder's name (below).
2. under --vamp-root, the zoo's naming `<name>-<dtype>-<calibration>-3_<h>_<w>-vacc/<name>`,
   where <name> is the model key, else its arch, else its README name (so one compiled
   model can match several entries that share an arch; a `vamp:` block disambiguates).
   The newer zoo layout, `deploy_weights/<source>_<name>[_run_stream]_<fp16|int8>[_<calibration>]/mod`
   (under --vamp-root or its `deploy_weights/`), is found the same way; an int8 folder must
   name its calibration (the zoo's vamc config holds it), else a `vamp:` block gives it.
   Its vdsp_params JSON: `<key>-vdsp_params.json` in the model folder, in
   `<vamp-root>/vdsp_params/`, or in <vamp-root>; else `vdsp_params.json` in the model folder.
The precision is the compiled model's: `fp16` (fp16-none) or `int8-<calibration>`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
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
from . import Backend, RunOptions, class_scores

CALIBRATIONS = ("percentile", "max", "kl_divergence", "mse")
PRECISIONS = ("fp16", *(f"int8-{c}" for c in CALIBRATIONS))
UNCOMPILED = "uncompiled"  # the precision of the one (skipped) test of a model with no compiled model
MODEL_DIR_RE = re.compile(r"^(?P<name>.+)-(?P<dtype>fp16|int8)-(?P<calib>[A-Za-z0-9_]+)"
                          r"-(?P<c>\d+)_(?P<h>\d+)_(?P<w>\d+)-vacc$")
DEPLOY_DIR_RE = re.compile(r"^(?P<name>.+?)(?:_run_?(?:stream|model))?_(?P<dtype>fp16|int8)"
                           rf"(?:[-_](?P<calib>{'|'.join(CALIBRATIONS)}))?$")
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


@dataclass(frozen=True)
class CompiledModel:
    prefix: Path  # the value of -m
    precision: str
    vdsp_params: Path | None  # None: not found (looked_for says where)
    shape: tuple[int, ...] | None  # the baseline's `shape`, passed as -s
    input_size: int | None  # the compiled input's height = width (folder name or shape), if known
    origin: str  # where it was found, for messages
    looked_for: tuple[str, ...] = ()


def parse_model_dir(name: str) -> tuple[str, str, int | None] | None:
    """`mobilenet_v2-int8-percentile-3_224_224-vacc` -> (mobilenet_v2, int8-percentile, 224)."""
    match = MODEL_DIR_RE.match(name)
    if not match:
        return None
    precision = "fp16" if match["dtype"] == "fp16" else f"int8-{match['calib']}"
    return match["name"], precision, int(match["h"]) if match["h"] == match["w"] else None


def parse_deploy_dir(name: str) -> tuple[str, str] | None:
    """`timm_mobilenetv2_run_stream_int8_kl_divergence` -> (timm_mobilenetv2, int8-kl_divergence);
    None for an int8 folder that does not name its calibration."""
    match = DEPLOY_DIR_RE.match(name)
    if not match or (match["dtype"] == "int8" and not match["calib"]):
        return None
    return match["name"], "fp16" if match["dtype"] == "fp16" else f"int8-{match['calib']}"


def _line(entry: ModelEntry, node: Any) -> int:
    """The baseline line of a `vamp:` block (ruamel keeps it), else the model's."""
    line = getattr(getattr(node, "lc", None), "line", None)
    return line + 1 if line is not None else entry.line


def _blocks(entry: ModelEntry) -> list[Mapping[str, Any]]:
    raw = entry.vamp
    if raw is None:
        return []
    blocks = list(raw) if isinstance(raw, list) else [raw]
    for block in blocks:
        if not isinstance(block, Mapping) or "model" not in block or \
                set(block) - {"model", "vdsp_params", "precision", "shape"}:
            raise VaccbenchError(f"`vamp:` of {entry.key} must be a mapping (or a list of them) with "
                                 "`model` and optional vdsp_params, precision, shape",
                                 entry.baseline_path, _line(entry, block))
    return blocks


def _from_block(entry: ModelEntry, block: Mapping[str, Any], root: Path | None) -> CompiledModel:
    base = root or entry.baseline_path.parent
    line = _line(entry, block)
    origin = f"{entry.baseline_path.name}:{line}"
    prefix = (base / str(block["model"])).resolve()
    parsed = parse_model_dir(prefix.parent.name)
    precision = block.get("precision") or (parsed[1] if parsed else None)
    if precision is None:
        raise VaccbenchError(f"`vamp:` of {entry.key}: no `precision`, and the folder name "
                             f"{prefix.parent.name!r} does not say it (<name>-int8-percentile-3_224_224-vacc)",
                             entry.baseline_path, line)
    shape = block.get("shape")
    if shape is not None and (not isinstance(shape, list) or len(shape) != 3
                              or not all(isinstance(d, int) for d in shape)):
        raise VaccbenchError(f"`vamp.shape` of {entry.key} must be [channels, height, width]",
                             entry.baseline_path, line)
    shape = tuple(shape) if shape else None
    size = shape[1] if shape and shape[1] == shape[2] else (parsed[2] if parsed else None)
    if block.get("vdsp_params"):
        vdsp = (base / str(block["vdsp_params"])).resolve()
        return CompiledModel(prefix, str(precision), vdsp if vdsp.is_file() else None, shape, size,
                             origin, (str(vdsp),))
    return replace(_with_vdsp(entry, prefix, str(precision), size, root, origin), shape=shape)


def _with_vdsp(entry: ModelEntry, prefix: Path, precision: str, input_size: int | None,
               root: Path | None, origin: str) -> CompiledModel:
    name = f"{entry.key}-vdsp_params.json"
    candidates = [prefix.parent / name]
    if root:
        candidates += [root / "vdsp_params" / name, root / name]
    candidates.append(prefix.parent / "vdsp_params.json")
    found = next((c for c in candidates if c.is_file()), None)
    return CompiledModel(prefix, precision, found, None, input_size, origin,
                         tuple(map(str, candidates)))


def _names(entry: ModelEntry) -> list[str]:
    return list(dict.fromkeys(n for n in (entry.key, entry.arch, entry.name) if n))


def find_compiled(entry: ModelEntry, settings: VampSettings) -> list[CompiledModel]:
    """Every compiled model of this entry: the baseline's `vamp:` blocks, else --vamp-root."""
    blocks = _blocks(entry)
    if blocks:
        return [_from_block(entry, block, settings.root) for block in blocks]
    if settings.root is None or not settings.root.is_dir():
        return []
    folders = [(d, parse_model_dir(d.name)) for d in sorted(settings.root.iterdir()) if d.is_dir()]
    deployed = [(d, parse_deploy_dir(d.name)) for base in (settings.root, settings.root / "deploy_weights")
                if base.is_dir() for d in sorted(base.iterdir()) if any(d.glob("mod.*"))]
    for name in _names(entry):
        found = [_with_vdsp(entry, folder / name, parsed[1], parsed[2], settings.root, str(folder))
                 for folder, parsed in folders if parsed and parsed[0] == name]
        found += [_with_vdsp(entry, folder / "mod", parsed[1], None, settings.root, str(folder))
                  for folder, parsed in deployed if parsed and parsed[0] in _deploy_names(name, entry)]
        if found:
            return found
    return []


def _deploy_names(name: str, entry: ModelEntry) -> set[str]:
    """The newer zoo's folder names are `<source>_<name>`: key, arch or README name, with or
    without the source, '-' read as '_'."""
    plain = name.replace("-", "_")
    return {plain, f"{entry.sources[0]}_{plain}" if entry.sources else plain}


def _where_looked(entry: ModelEntry, settings: VampSettings) -> str:
    if settings.root is None:
        return (f"no --vamp-root given and no `vamp:` block for {entry.key} in "
                f"{entry.baseline_path}:{entry.line}")
    pattern = " or ".join(f"{n}-<fp16|int8>-<calibration>-3_<h>_<w>-vacc/{n}" for n in _names(entry))
    pattern += " or [deploy_weights/]<source>_<name>[_run_stream]_<fp16|int8_<calibration>>/mod"
    return f"looked in {settings.root} for {pattern}"


def expects_vamp(entry: ModelEntry, precision: str) -> bool:
    """Whether the baseline records vamp results at this precision (for any dataset)."""
    return any(f"vamp/{precision}" in (runs or {}) for runs in entry.expected.values())


class VampBackend(Backend):
    name = "vamp"
    precisions = (*PRECISIONS, UNCOMPILED)
    option_keys = ("vamp_instances", "vamp_processes", "vamp_batch", "vamp_args")
    preprocesses_on_device = True  # the vdsp_params JSON, on the accelerator

    def precisions_for(self, entry: ModelEntry, requested: tuple[str, ...] | None,
                       options: RunOptions) -> tuple[str, ...] | None:
        """Without --precision: the precisions compiled for this model, and those its baseline
        expects (so that a compiled model that went missing fails instead of vanishing)."""
        if requested:
            return requested
        settings = VampSettings.from_options(options.extra)
        found = {m.precision for m in find_compiled(entry, settings)}
        found |= {run.split("/", 1)[1] for runs in entry.expected.values()
                  for run in (runs or {}) if run.startswith("vamp/")}
        return tuple(sorted(found)) or (UNCOMPILED,)

    def skip_reason(self, entry: ModelEntry, precision: str, options: RunOptions) -> str | None:
        settings = VampSettings.from_options(options.extra)
        if settings.executable() is None:
            return (f"vamp binary not found: {settings.command[0]!r} is not an executable on PATH; "
                    "run on a machine with a VastAI accelerator and its SDK, or pass --vamp-bin")
        if precision == UNCOMPILED:
            return f"no compiled model for {entry.test_name}: {_where_looked(entry, settings)}"
        compiled = find_compiled(entry, settings)
        if any(m.precision == precision for m in compiled) or expects_vamp(entry, precision):
            return None  # a baseline that expects it makes a missing model a failure, not a skip
        have = ", ".join(f"{m.precision} ({m.prefix})" for m in compiled) or "none"
        return (f"no {precision} compiled model for {entry.test_name} (compiled: {have}); "
                f"{_where_looked(entry, settings)}")

    def scores(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> np.ndarray:
        from ..prep import write_datalist, write_npz
        from ..vdsp import load_vdsp

        settings = VampSettings.from_options(options.extra)
        model = next((m for m in find_compiled(entry, settings) if m.precision == precision), None)
        if model is None:
            raise VampError(f"{entry.baseline_path.name} expects vamp/{precision} results for "
                            f"{entry.key}, but there is no {precision} compiled model: "
                            f"{_where_looked(entry, settings)}")
        check_model_files(model)
        spec = load_vdsp(model.vdsp_params)  # type: ignore[arg-type]  # a broken file fails here
        if model.input_size and spec.output_size != model.input_size:
            raise VampError(f"{model.vdsp_params} makes {spec.output_size}x{spec.output_size} "
                            f"inputs, but the compiled model {model.prefix} takes "
                            f"{model.input_size}x{model.input_size}")
        # keyed by the images' content, as the image cache is: a changed image is a new folder
        npz_root = kind_dir(options.cache_dir, "vamp-npz")
        inputs = inside(npz_root, npz_root / f"{safe_name(dataset.name)}-"
                                             f"{files_digest(dataset.samples)[:16]}")
        npz = write_npz([s.path for s in dataset.samples], inputs, options.workers)
        datalist = inputs / "npz_datalist.txt"
        write_datalist(npz.paths, datalist)
        runs = kind_dir(options.cache_dir, "vamp-runs")
        runs.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix=f"{safe_name(f'{entry.key}-{precision}')}-", dir=runs))
        output = run_dir / "output"
        output.mkdir()
        command = vamp_command(settings, model, datalist, output)
        run_vamp(command, settings.timeout, run_dir)
        probabilities = read_outputs(output, len(npz.paths), run_dir)
        try:
            scores = class_scores(probabilities, entry)
        except BackendError as exc:
            raise VampError(f"{exc}; vamp's outputs are in {output}") from None
        shutil.rmtree(run_dir, ignore_errors=True)  # kept when anything failed, for a look
        return scores


def check_model_files(model: CompiledModel) -> None:
    """The compiled model (prefix.so/.json/.params, or any prefix.*) and its vdsp JSON exist."""
    prefix = model.prefix
    if not prefix.parent.is_dir() or not (prefix.exists() or any(prefix.parent.glob(f"{prefix.name}.*"))):
        raise VampError(f"compiled model not found: no {prefix.name}.* files in {prefix.parent} "
                        f"(from {model.origin})", prefix)
    if model.vdsp_params is None or not model.vdsp_params.is_file():
        raise VampError(f"vdsp_params JSON not found for {prefix}: looked for "
                        f"{', '.join(model.looked_for)}")


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


TAIL_BYTES = 1 << 16  # read from the end of vamp's stderr for its last lines
TAIL_LINE = 400  # characters of one stderr line shown


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last `lines` lines of a log of any size, from its last TAIL_BYTES."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read(TAIL_BYTES)
    except OSError:
        return "  (no output)"
    text = data.decode(errors="replace").rstrip().splitlines()
    if size > TAIL_BYTES:
        text = text[1:]  # the first line is cut
    shown = [line if len(line) <= TAIL_LINE else line[:TAIL_LINE] + " ..." for line in text[-lines:]]
    return "\n".join(f"  | {line}" for line in shown) or "  (empty)"


POLL_SECONDS = 0.2  # how often the descendants of a running vamp are listed


class _Tree:
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


def _wait(proc: subprocess.Popen, tree: _Tree, timeout: float) -> int:
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
        tree = _Tree(proc.pid)
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

