"""Export: a timm/torchvision model + local weights -> an ONNX graph, and the cache of exports.

This is the model zoo's deploy step 1 (`export_timm_torchvision_model.py`): input named
`input` of shape (1, 3, size, size) (or a dynamic batch), opset 11, file
`<model>_<size>.onnx`, checked with the ONNX checker. RepVGG-style models are exported in
their deploy form (models.build_model fuses the branches), as the accelerator receives them.

The onnxruntime backend exports on demand through `cached_export`: the file is kept under
`<cache>/onnx/` keyed by library, architecture, deploy form, a hash of the weight file's
bytes, opset and input size, so a second run loads it instead of exporting again. Needs
torch (the `torch` extra) and onnx; nothing else in the package imports this module's
torch parts.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .baselines import DEFAULT_TOLERANCE, ModelEntry, Tolerance, WeightsSpec, atomic_write
from .cache import kind_dir
from .errors import BackendError, VaccbenchError
from .preprocess import PreprocessSpec
from .safefiles import file_identity, inside, owner_tag, remove_orphans, safe_name

DEFAULT_OPSET = 11  # the zoo's export script; every seed architecture exports with it
INPUT_NAME = "input"
OUTPUT_NAME = "output"
_DIGESTS: dict[tuple[object, ...], str] = {}


@dataclass(frozen=True)
class ExportOptions:
    input_size: int
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = False  # the zoo exports batch 1; the backend wants any batch
    simplify: bool = False  # onnxsim, when installed


def onnx_file_name(model_name: str, input_size: int) -> str:
    """`<model>_<size>.onnx`, as the zoo's export script names its files."""
    return f"{model_name}_{input_size}.onnx"


def writable_dir(path: Path) -> Path:
    """Create `path` if needed; an unwritable cache is a clear error, not a traceback."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise BackendError(f"cannot write to this directory ({exc.strerror}); choose another with "
                           "--vaccbench-cache DIR or $VACCBENCH_CACHE", path) from None
    return path


def file_digest(path: Path, cache_dir: Path) -> str:
    """sha256 of a file's bytes: the key of everything derived from a weights file or a
    graph (exports, fp16 and int8 graphs, calibration ranges).

    Weight files and graphs are hundreds of MB: the digest is remembered in memory and in
    `<cache>/digests.json` against the file's `file_identity`, so later runs (and other
    processes) read the file again only when its content may have changed.
    """
    path = path.resolve()
    identity = file_identity(path.stat())
    key = (str(path), *identity)
    if key in _DIGESTS:
        return _DIGESTS[key]
    memo_file = kind_dir(cache_dir, "digests.json")
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):  # valid JSON, but not what this function writes
        memo = {}
    record = memo.get(key[0])
    if isinstance(record, dict) and record.get("identity") == identity and \
            isinstance(record.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", record["sha256"]):
        digest = record["sha256"]
    else:
        h = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        if file_identity(path.stat()) == identity:  # not changed while it was read
            memo[key[0]] = {"identity": identity, "sha256": digest}
            with contextlib.suppress(OSError):  # a read-only cache: remembered in this process only
                memo_file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(memo_file, json.dumps(memo, indent=1, sort_keys=True))
    _DIGESTS[key] = digest
    return digest


def export_module(model: Any, path: Path, options: ExportOptions) -> Path:
    """Export an eval-mode torch module to `path` (written atomically), then check it."""
    import torch

    try:
        import onnx
    except ImportError:
        raise BackendError("exporting needs the onnx package: pip install 'pytest-vaccbench[onnx]'") from None
    size = options.input_size
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if options.dynamic_batch else None
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path.parent, f".{glob.escape(path.name)}.*.tmp")  # of exports that were killed
    tmp = path.with_name(f".{path.name}.{owner_tag()}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # dynamo=False on purpose (no onnxscript needed); torch warns that it is the legacy path
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False,
                              opset_version=options.opset, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=dynamic)
        onnx.checker.check_model(str(tmp))
        if options.simplify:
            simplify(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, VaccbenchError):
            raise
        raise BackendError(f"ONNX export failed ({type(exc).__name__}: {exc})", path) from exc
    return path


def simplify(path: Path) -> None:
    """Constant-fold and clean the graph in place with onnxsim (optional dependency)."""
    try:
        import onnx
        import onnxsim
    except ImportError:
        raise BackendError("--simplify needs onnxsim: pip install onnxsim") from None
    model, ok = onnxsim.simplify(onnx.load(str(path)))
    if not ok:
        raise BackendError("onnxsim could not validate the simplified graph", path)
    onnx.save(model, str(path))


def export_entry(entry: ModelEntry, weights: Path | None, path: Path, options: ExportOptions) -> Path:
    """Build the entry's model (deploy form, local weights) and export it."""
    from .models import build_model

    return export_module(build_model(entry, weights), path, options)


def cached_export(entry: ModelEntry, weights: Path, cache_dir: Path,
                  opset: int = DEFAULT_OPSET) -> Path:
    """The entry's dynamic-batch ONNX graph from the cache, exported on the first call."""
    if not entry.arch or entry.library not in ("timm", "torchvision"):
        raise BackendError(f"{entry.test_name} cannot be exported (library {entry.library!r}, "
                           f"arch {entry.arch!r}); give it an `onnx:` file or use --onnx-dir",
                           entry.baseline_path, entry.line)
    digest = file_digest(weights, cache_dir)
    model_dir = "-".join(filter(None, [entry.library, entry.arch, entry.deploy,
                                       f"{entry.num_classes}cls", entry.weights.key_map]))
    root = kind_dir(cache_dir, "onnx")
    folder = inside(root, root / safe_name(model_dir) / f"w{digest[:16]}-opset{opset}-dynamic")
    path = writable_dir(folder) / safe_name(onnx_file_name(entry.arch, entry.input_size))
    if not path.is_file():
        export_entry(entry, weights, path, ExportOptions(entry.input_size, opset, dynamic_batch=True))
    return path


def adhoc_entry(library: str, arch: str, input_size: int, num_classes: int = 1000,
                key_map: str = "names", deploy: str | None = "reparameterize") -> ModelEntry:
    """A model described on the command line, as the zoo's export script takes it.

    Deploy form by default: timm's re-parameterisation fuses RepVGG-style branches and
    leaves other models unchanged. Preprocessing (used only when such an entry is evaluated)
    is the ImageNet convention: resize the short side to size / 0.875, centre crop.
    """
    return ModelEntry(family="cli", key=arch, name=arch, sources=(library,), library=library,
                      arch=arch, input_size=input_size,
                      preprocess=PreprocessSpec(resize=round(input_size / 0.875), crop=input_size),
                      tolerance=Tolerance(**DEFAULT_TOLERANCE), baseline_path=Path("<command line>"), line=0,
                      weights=WeightsSpec(key_map=key_map), num_classes=num_classes, deploy=deploy)
