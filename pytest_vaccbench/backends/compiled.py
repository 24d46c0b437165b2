"""Compiled models on disk: what the accelerator's runners (`vamp`, `vsx`) load, and where.

Where a model's compiled builds are (first match wins):
1. a `vamp:` block in the model's baseline entry, one mapping or a list of them:
   `{model: <prefix>, vdsp_params: <json>, precision: int8-percentile, shape: [3, 224, 224],
   crop_resize_ext: true}`; relative paths are relative to the models root, else to the
   baseline file's folder; without `precision` it is read from the model folder's name (below).
   `crop_resize_ext` (vsx only) asks for the vendor's per-image short-side resize.
2. under the models root, the zoo's naming `<name>-<dtype>-<calibration>-3_<h>_<w>-vacc/<name>`,
   where <name> is the model key, else its arch, else its README name (so one compiled
   model can match several entries that share an arch; a `vamp:` block disambiguates).
   The newer zoo layout, `deploy_weights/<source>_<name>[_run_stream]_<fp16|int8>[_<calibration>]/mod`
   (under the root or its `deploy_weights/`), is found the same way; an int8 folder must
   name its calibration (the zoo's vamc config holds it), else a `vamp:` block gives it.
   Its vdsp_params JSON: `<key>-vdsp_params.json` in the model folder, in
   `<root>/vdsp_params/`, or in <root>; else `vdsp_params.json` in the model folder.
The precision is the compiled model's: `fp16` (fp16-none) or `int8-<calibration>`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..baselines import ModelEntry
from ..cache import kind_dir
from ..errors import BackendError, VaccbenchError
from ..preprocess import PreprocessSpec
from ..safefiles import safe_name
from . import Backend, RunOptions, class_scores

CALIBRATIONS = ("percentile", "max", "kl_divergence", "mse")
PRECISIONS = ("fp16", *(f"int8-{c}" for c in CALIBRATIONS))
UNCOMPILED = "uncompiled"  # the precision of the one (skipped) test of a model with no compiled model
MODEL_DIR_RE = re.compile(r"^(?P<name>.+)-(?P<dtype>fp16|int8)-(?P<calib>[A-Za-z0-9_]+)"
                          r"-(?P<c>\d+)_(?P<h>\d+)_(?P<w>\d+)-vacc$")
DEPLOY_DIR_RE = re.compile(r"^(?P<name>.+?)(?:_run_?(?:stream|model))?_(?P<dtype>fp16|int8)"
                           rf"(?:[-_](?P<calib>{'|'.join(CALIBRATIONS)}))?$")
BLOCK_KEYS = {"model", "vdsp_params", "precision", "shape", "crop_resize_ext"}
TAIL_BYTES = 1 << 16  # read from the end of a runner's log for its last lines
TAIL_LINE = 400  # characters of one log line shown


@dataclass(frozen=True)
class CompiledModel:
    prefix: Path  # the model prefix the runner loads (vamp -m, vsx.Model)
    precision: str
    vdsp_params: Path | None  # None: not found (looked_for says where)
    shape: tuple[int, ...] | None  # the baseline's `shape`, passed to vamp as -s
    input_size: int | None  # the compiled input's height = width (folder name or shape), if known
    origin: str  # where it was found, for messages
    looked_for: tuple[str, ...] = ()
    crop_resize_ext: bool = False  # vsx: the per-image short-side resize instead of the JSON's stretch

    def files(self) -> list[Path]:
        """The compiled model's files: `<prefix>.*` (mod.so, mod.json, mod.params, ...)."""
        if not self.prefix.parent.is_dir():
            return []
        return sorted(p for p in self.prefix.parent.glob(f"{self.prefix.name}.*") if p.is_file())


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
        if not isinstance(block, Mapping) or "model" not in block or set(block) - BLOCK_KEYS:
            raise VaccbenchError(f"`vamp:` of {entry.key} must be a mapping (or a list of them) with "
                                 "`model` and optional vdsp_params, precision, shape, crop_resize_ext",
                                 entry.baseline_path, _line(entry, block))
        if not isinstance(block.get("crop_resize_ext", False), bool):
            raise VaccbenchError(f"`vamp.crop_resize_ext` of {entry.key} must be true or false",
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
    ext = bool(block.get("crop_resize_ext", False))
    if block.get("vdsp_params"):
        vdsp = (base / str(block["vdsp_params"])).resolve()
        return CompiledModel(prefix, str(precision), vdsp if vdsp.is_file() else None, shape, size,
                             origin, (str(vdsp),), ext)
    return replace(_with_vdsp(entry, prefix, str(precision), size, root, origin), shape=shape,
                   crop_resize_ext=ext)


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


def find_compiled(entry: ModelEntry, root: Path | None) -> list[CompiledModel]:
    """Every compiled model of this entry: the baseline's `vamp:` blocks, else under `root`."""
    blocks = _blocks(entry)
    if blocks:
        return [_from_block(entry, block, root) for block in blocks]
    if root is None or not root.is_dir():
        return []
    folders = [(d, parse_model_dir(d.name)) for d in sorted(root.iterdir()) if d.is_dir()]
    deployed = [(d, parse_deploy_dir(d.name)) for base in (root, root / "deploy_weights")
                if base.is_dir() for d in sorted(base.iterdir()) if any(d.glob("mod.*"))]
    for name in _names(entry):
        found = [_with_vdsp(entry, folder / name, parsed[1], parsed[2], root, str(folder))
                 for folder, parsed in folders if parsed and parsed[0] == name]
        found += [_with_vdsp(entry, folder / "mod", parsed[1], None, root, str(folder))
                  for folder, parsed in deployed if parsed and parsed[0] in _deploy_names(name, entry)]
        if found:
            return found
    return []


def _deploy_names(name: str, entry: ModelEntry) -> set[str]:
    """The newer zoo's folder names are `<source>_<name>`: key, arch or README name, with or
    without the source, '-' read as '_'."""
    plain = name.replace("-", "_")
    return {plain, f"{entry.sources[0]}_{plain}" if entry.sources else plain}


def where_looked(entry: ModelEntry, root: Path | None, root_option: str) -> str:
    """Where the compiled models of `entry` were looked for, for messages."""
    if root is None:
        return (f"no {root_option} given and no `vamp:` block for {entry.key} in "
                f"{entry.baseline_path}:{entry.line}")
    pattern = " or ".join(f"{n}-<fp16|int8>-<calibration>-3_<h>_<w>-vacc/{n}" for n in _names(entry))
    pattern += " or [deploy_weights/]<source>_<name>[_run_stream]_<fp16|int8_<calibration>>/mod"
    return f"looked in {root} for {pattern}"


def expects(entry: ModelEntry, backend: str, precision: str) -> bool:
    """Whether the baseline records `backend` results at this precision (for any dataset)."""
    return any(f"{backend}/{precision}" in (runs or {}) for runs in entry.expected.values())


def check_model_files(model: CompiledModel, error: type[BackendError]) -> None:
    """The compiled model (prefix.so/.json/.params, or any prefix.*) and its vdsp JSON exist."""
    prefix = model.prefix
    if not prefix.parent.is_dir() or not (prefix.exists() or model.files()):
        raise error(f"compiled model not found: no {prefix.name}.* files in {prefix.parent} "
                    f"(from {model.origin})", prefix)
    if model.vdsp_params is None or not model.vdsp_params.is_file():
        raise error(f"vdsp_params JSON not found for {prefix}: looked for "
                    f"{', '.join(model.looked_for)}")


class CompiledBackend(Backend):
    """A backend that runs the accelerator's compiled models: its precisions are those of the
    builds found for a model, and a model without one is skipped saying where it looked."""

    precisions = (*PRECISIONS, UNCOMPILED)
    preprocesses_on_device = True  # the vdsp_params JSON, on the accelerator
    root_option: str  # the option naming the models root, for messages
    error: type[BackendError] = BackendError

    def root(self, options: RunOptions) -> Path | None:
        """The models root given for this backend."""
        raise NotImplementedError

    def runtime_missing(self, options: RunOptions) -> str | None:
        """Why the accelerator's runtime cannot run here (not installed), or None."""
        return None

    def precisions_for(self, entry: ModelEntry, requested: tuple[str, ...] | None,
                       options: RunOptions) -> tuple[str, ...] | None:
        """Without --precision: the precisions compiled for this model, and those its baseline
        expects (so that a compiled model that went missing fails instead of vanishing)."""
        if requested:
            return requested
        found = {m.precision for m in find_compiled(entry, self.root(options))}
        prefix = f"{self.name}/"
        found |= {run.split("/", 1)[1] for runs in entry.expected.values()
                  for run in (runs or {}) if run.startswith(prefix)}
        return tuple(sorted(found)) or (UNCOMPILED,)

    def skip_reason(self, entry: ModelEntry, precision: str, options: RunOptions) -> str | None:
        missing = self.runtime_missing(options)
        if missing:
            return missing
        root = self.root(options)
        if precision == UNCOMPILED:
            return f"no compiled model for {entry.test_name}: {where_looked(entry, root, self.root_option)}"
        compiled = find_compiled(entry, root)
        if any(m.precision == precision for m in compiled) or expects(entry, self.name, precision):
            return None  # a baseline that expects it makes a missing model a failure, not a skip
        have = ", ".join(f"{m.precision} ({m.prefix})" for m in compiled) or "none"
        return (f"no {precision} compiled model for {entry.test_name} (compiled: {have}); "
                f"{where_looked(entry, root, self.root_option)}")

    def compiled_model(self, entry: ModelEntry, precision: str, options: RunOptions) -> CompiledModel:
        """The entry's compiled model at `precision`, its files and vdsp JSON checked."""
        root = self.root(options)
        model = next((m for m in find_compiled(entry, root) if m.precision == precision), None)
        if model is None:
            raise self.error(f"{entry.baseline_path.name} expects {self.name}/{precision} results for "
                             f"{entry.key}, but there is no {precision} compiled model: "
                             f"{where_looked(entry, root, self.root_option)}")
        check_model_files(model, self.error)
        return model

    def run_dir(self, entry: ModelEntry, precision: str, options: RunOptions) -> Path:
        """A new folder for one run's files, `<cache>/<backend>-runs/<key>-<precision>-XXXX`."""
        runs = kind_dir(options.cache_dir, f"{self.name}-runs")
        runs.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{safe_name(f'{entry.key}-{precision}')}-", dir=runs))

    def finish(self, raw: np.ndarray, entry: ModelEntry, run_dir: Path, where: str) -> np.ndarray:
        """The run's scores over the 1000 classes; its folder is removed, or kept (and named
        by `where`) when they are not class scores."""
        try:
            scores = class_scores(raw, entry)
        except BackendError as exc:
            raise self.error(f"{exc}; {where}") from None
        shutil.rmtree(run_dir, ignore_errors=True)  # kept when anything failed, for a look
        return scores

    def vdsp_spec(self, model: CompiledModel) -> PreprocessSpec:
        """The model's vdsp JSON as a PreprocessSpec; its output size must be the model's input."""
        from ..vdsp import load_vdsp

        spec = load_vdsp(model.vdsp_params)  # type: ignore[arg-type]  # a broken file fails here
        if model.input_size and spec.output_size != model.input_size:
            raise self.error(f"{model.vdsp_params} makes {spec.output_size}x{spec.output_size} "
                             f"inputs, but the compiled model {model.prefix} takes "
                             f"{model.input_size}x{model.input_size}")
        return spec


def tail_lines(path: Path, lines: int) -> list[str] | None:
    """The last `lines` lines of a runner's log of any size (vamp's or the vsx process's
    stderr), read from its last TAIL_BYTES, each cut to TAIL_LINE characters; None when it
    cannot be read."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read(TAIL_BYTES)
    except OSError:
        return None
    text = data.decode(errors="replace").rstrip().splitlines()
    if size > TAIL_BYTES:
        text = text[1:]  # the first line is cut
    return [line if len(line) <= TAIL_LINE else line[:TAIL_LINE] + " ..." for line in text[-lines:]]
