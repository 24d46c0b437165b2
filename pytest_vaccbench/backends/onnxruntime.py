"""The onnxruntime backend: the exported ONNX graph on CPU (or an NVIDIA GPU), fp32/fp16/int8.

Where the fp32 graph comes from, first match wins:
1. the baseline entry's `onnx:` file (absolute, or in --onnx-dir, else in --weights-dir);
2. `--onnx-dir DIR` holding `<key>.onnx`, `<key>_<size>.onnx`, or for timm/torchvision
   models the zoo export script's `<arch>_<size>.onnx`;
3. an export of the entry's model with its local weights (export.cached_export; needs torch).
With a ready graph this backend needs neither torch nor timm.

Precisions: fp32 (the graph as is); fp16 (weights and activations in float16 with float32
inputs and outputs, onnxconverter-common's keep_io_types conversion); int8-<calibration>
(onnxruntime.quantization.quantize_static, QDQ format, signed int8 weights and activations,
calibrated on calibration.calibration_set of the evaluated dataset). The compiler's modes
map onto onnxruntime's calibrators: max -> MinMax, percentile -> Percentile (99.999),
kl_divergence -> Entropy. There is no `mse`: onnxruntime has no calibrator that minimises
the quantisation error (its fourth, Distribution, only serves float8). Derived graphs are
cached under `<cache>/onnx/derived/<graph sha256>/`, keyed by precision, options and the
calibration set's fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..baselines import ModelEntry
from ..calibration import DEFAULT_CALIBRATION_IMAGES, calibration_set
from ..dataset import Dataset, Sample
from ..errors import BackendError
from ..export import DEFAULT_OPSET, cached_export, file_digest, onnx_file_name, writable_dir
from ..preprocess import PreprocessSpec
from ..weights import find_weights
from . import Backend, RunOptions, class_scores, iter_batches

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
CALIBRATION_METHODS = {"int8-max": "MinMax", "int8-percentile": "Percentile",
                       "int8-kl_divergence": "Entropy"}
CALIBRATION_BATCH = 16  # images per calibration step: bounds the calibrator's memory
PER_CHANNEL_OPSET = 13  # per-channel QDQ needs DequantizeLinear's axis attribute


@dataclass(frozen=True)
class OrtSettings:
    """This backend's options (RunOptions.extra, filled from the plugin's command line)."""

    provider: str = "cpu"
    onnx_dir: Path | None = None
    opset: int = DEFAULT_OPSET
    per_channel: bool = False
    calib_images: int = DEFAULT_CALIBRATION_IMAGES
    calib_include: bool = False
    keep_fp32: str | None = None  # --int8-keep-fp32: layers left out of quantization

    @classmethod
    def from_options(cls, options: RunOptions) -> "OrtSettings":
        extra = options.extra
        onnx_dir = extra.get("onnx_dir")
        return cls(provider=extra.get("ort_provider") or "cpu",
                   onnx_dir=Path(onnx_dir).expanduser() if onnx_dir else None,
                   opset=extra.get("opset") or DEFAULT_OPSET,
                   per_channel=bool(extra.get("int8_per_channel")),
                   calib_images=extra.get("calib_images") or DEFAULT_CALIBRATION_IMAGES,
                   calib_include=bool(extra.get("calib_include")),
                   keep_fp32=extra.get("int8_keep_fp32") or None)


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendError("the onnxruntime backend needs onnxruntime: "
                           "pip install 'pytest-vaccbench[onnx]'") from None
    return onnxruntime


def execution_providers(name: str) -> list[str]:
    """onnxruntime provider list for `--ort-provider` (cpu, cuda, or a full provider name)."""
    wanted = PROVIDERS.get(name.lower(), name)
    available = _ort().get_available_providers()
    if wanted not in available:
        hint = (" (CUDA needs the onnxruntime-gpu package, an NVIDIA GPU and its driver)"
                if wanted == PROVIDERS["cuda"] else "")
        raise BackendError(f"execution provider {name!r} ({wanted}) is not available in this "
                           f"onnxruntime; available: {', '.join(available)}{hint}")
    return [wanted] + ([PROVIDERS["cpu"]] if wanted != PROVIDERS["cpu"] else [])


def open_session(path: Path, entry: ModelEntry, providers: Sequence[str], threads: int) -> Any:
    """An inference session for `path`, after checking its input against the entry."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), opts, providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types per failure
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"onnxruntime cannot load this model (corrupt or truncated .onnx "
                           f"file?): {reason}", path) from None
    fixed_batch(session, entry, path)
    return session


def fixed_batch(session: Any, entry: ModelEntry, path: Path) -> int | None:
    """The graph's fixed batch size (None when dynamic); a wrong input shape is an error."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise BackendError(f"expected one image input, the graph has {len(inputs)}: "
                           f"{[i.name for i in inputs]}", path)
    shape = list(inputs[0].shape)
    size = entry.input_size
    if len(shape) != 4 or any(isinstance(d, int) and d != want
                              for d, want in zip(shape[1:], (3, size, size))):
        raise BackendError(f"input {inputs[0].name!r} has shape {shape}, but {entry.test_name} "
                           f"needs (batch, 3, {size}, {size}) (input_size at {entry.where})", path)
    return shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None


def run_session(session: Any, batches: Iterable[np.ndarray], batch: int | None = None) -> np.ndarray:
    """First output of the graph for each batch, concatenated; a fixed-batch graph gets the
    last, short batch padded with zeros (and the padding's rows dropped)."""
    name = session.get_inputs()[0].name
    outputs = []
    for x in batches:
        n = len(x)
        if batch and n < batch:
            x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
        outputs.append(np.asarray(session.run(None, {name: x})[0], dtype=np.float32)[:n])
    return np.concatenate(outputs)


def _load_onnx(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise BackendError("fp16 and int8 need the onnx package: pip install 'pytest-vaccbench[onnx]'") from None
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise BackendError(f"not a readable ONNX model (corrupt or truncated file?): "
                           f"{type(exc).__name__}: {exc}", path) from None


def _save_onnx(model: Any, path: Path) -> Path:
    import onnx

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path


def _derived_dir(source: Path, cache_dir: Path) -> Path:
    return writable_dir(cache_dir / "onnx" / "derived" / file_digest(source, cache_dir)[:16])


def fp16_graph(source: Path, cache_dir: Path) -> Path:
    """The float16 version of `source` with float32 inputs and outputs (cached)."""
    out = _derived_dir(source, cache_dir) / "fp16.onnx"
    if not out.is_file():
        from onnxconverter_common import float16

        model = _load_onnx(source)
        _save_onnx(float16.convert_float_to_float16(model, keep_io_types=True), out)
    return out


def _graph_input(model: Any) -> tuple[str, int | None]:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    dim = inputs[0].type.tensor_type.shape.dim[0]
    return inputs[0].name, (dim.dim_value or None) if dim.HasField("dim_value") else None


def keep_fp32_nodes(source: Path, layers: str) -> list[str]:
    """Node names of `--int8-keep-fp32` layers (conv0,conv17,matmul0: see layers.py)."""
    from ..layers import nodes_for, quantizable_layers
    from ..triage import parse_keep

    try:
        return nodes_for(quantizable_layers(_load_onnx(source)), *parse_keep(layers))
    except ValueError as exc:
        raise BackendError(f"--int8-keep-fp32={layers}: {exc}", source) from None


def int8_graph(source: Path, precision: str, calibration: Dataset, spec: PreprocessSpec,
               per_channel: bool, cache_dir: Path, workers: int = 1,
               keep_fp32: Sequence[str] = ()) -> Path:
    """`source` quantized to int8 (QDQ) with the precision's calibrator (cached); the nodes
    `keep_fp32` stay in float (quantize_static's nodes_to_exclude).

    The cache key holds the graph's hash, the calibration images' fingerprint and
    preprocessing, the calibrator, the per-channel choice, the nodes kept in float and
    onnxruntime's version.
    """
    method = CALIBRATION_METHODS[precision]
    key = hashlib.sha256(f"{calibration.fingerprint()}|{spec}|{method}|{per_channel}|"
                         f"{CALIBRATION_BATCH}|{_ort().__version__}"
                         f"{'|' + ','.join(keep_fp32) if keep_fp32 else ''}".encode()).hexdigest()[:16]
    out = (_derived_dir(source, cache_dir) /
           f"{precision}-{'per-channel' if per_channel else 'per-tensor'}-{key}.onnx")
    if out.is_file():
        return out
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    model = _load_onnx(source)
    name, batch = _graph_input(model)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if per_channel and opset < PER_CHANNEL_OPSET:  # DequantizeLinear's `axis` came in opset 13
        from onnx import version_converter

        source = _save_onnx(version_converter.convert_version(model, PER_CHANNEL_OPSET),
                            out.with_name(f"opset{PER_CHANNEL_OPSET}.onnx"))
    del model
    items = [{name: x} for x in iter_batches(calibration.samples, spec, batch or CALIBRATION_BATCH,
                                             workers) if not batch or len(x) == batch]
    if not items:
        raise BackendError(f"no full calibration batch of {batch} images in "
                           f"{len(calibration.samples)} calibration images", source)

    class Batches(CalibrationDataReader):
        """The calibration batches; ranges let the calibrator take them a few at a time."""

        def __init__(self) -> None:
            self.start, self.end = 0, len(items)

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.start >= self.end:
                return None
            self.start += 1
            return items[self.start - 1]

        def __len__(self) -> int:
            return len(items)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.start, self.end = start_index, end_index

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
            quantize_static(str(source), str(tmp), Batches(), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, method),
                            nodes_to_exclude=list(keep_fp32),
                            extra_options={"CalibStridedMinMax": 1})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32", "fp16", *CALIBRATION_METHODS)
    packages = ("onnxruntime", "onnx")
    option_keys = ("ort_provider", "opset", "int8_per_channel", "calib_images", "calib_include",
                   "int8_keep_fp32")

    def given_graph(self, entry: ModelEntry, options: RunOptions) -> tuple[Path | None, list[str]]:
        """A ready fp32 graph for the entry, and where it was looked for."""
        settings = OrtSettings.from_options(options)
        if entry.onnx:
            path = Path(entry.onnx).expanduser()
            if not path.is_absolute():
                path = (settings.onnx_dir or options.weights_dir) / path
            return (path if path.is_file() else None), [str(path)]
        if settings.onnx_dir is None:
            return None, []
        names = [f"{entry.key}.onnx", onnx_file_name(entry.key, entry.input_size)]
        if entry.arch and entry.sources[0] in ("timm", "torchvision"):  # the zoo script's name
            names.append(onnx_file_name(entry.arch, entry.input_size))
        candidates = [settings.onnx_dir / n for n in names]
        return next((p for p in candidates if p.is_file()), None), [str(p) for p in candidates]

    def skip_reason(self, entry: ModelEntry, precision: str, options: RunOptions) -> str | None:
        try:
            _ort()
        except BackendError as exc:
            return str(exc)
        graph, looked = self.given_graph(entry, options)
        if graph is not None:
            return None
        if entry.onnx:
            return f"ONNX file not found for {entry.test_name}: {looked[0]} (`onnx:` at {entry.where})"
        lookup = find_weights(entry, options.weights_dir)
        if lookup.path is None:
            also = f" (no ready graph either: looked for {', '.join(looked)})" if looked else \
                " (or give a ready graph with --onnx-dir DIR holding <key>.onnx)"
            return lookup.skip_reason(entry) + also
        if importlib.util.find_spec("torch") is None:
            return (f"{entry.test_name} has no ready .onnx and exporting it needs PyTorch: "
                    "pip install 'pytest-vaccbench[torch]', or pass --onnx-dir DIR")
        return None

    def fp32_graph(self, entry: ModelEntry, options: RunOptions) -> Path:
        graph, _ = self.given_graph(entry, options)
        if graph is not None:
            return graph
        weights = find_weights(entry, options.weights_dir).path
        if weights is None:
            raise BackendError(find_weights(entry, options.weights_dir).skip_reason(entry))
        return cached_export(entry, weights, options.cache_dir, OrtSettings.from_options(options).opset)

    def graph(self, entry: ModelEntry, precision: str, dataset: Dataset, options: RunOptions) -> Path:
        """The ONNX file this precision runs: fp32 as given/exported, or a cached derivative."""
        source = self.fp32_graph(entry, options)
        if precision == "fp32":
            return source
        open_session(source, entry, [PROVIDERS["cpu"]], 1)  # corrupt file or wrong input: say so now
        if precision == "fp16":
            return fp16_graph(source, options.cache_dir)
        settings = OrtSettings.from_options(options)
        keep = keep_fp32_nodes(source, settings.keep_fp32) if settings.keep_fp32 else ()
        return int8_graph(source, precision, calibration_set(dataset, settings.calib_images),
                          entry.preprocess, settings.per_channel, options.cache_dir, options.workers,
                          keep)

    def excluded_samples(self, entry: ModelEntry, precision: str, dataset: Dataset,
                         options: RunOptions) -> tuple[Sample, ...]:
        settings = OrtSettings.from_options(options)
        if precision not in CALIBRATION_METHODS or settings.calib_include:
            return ()
        calibration = calibration_set(dataset, settings.calib_images)
        if len(calibration.samples) >= len(dataset.samples):
            raise BackendError(f"the int8 calibration set takes all {len(dataset.samples)} images of "
                               f"{dataset.name}, leaving none to count: lower --calib-images "
                               f"(now {settings.calib_images}) or pass --calib-include")
        return calibration.samples

    def scores(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> np.ndarray:
        providers = execution_providers(OrtSettings.from_options(options).provider)
        path = self.graph(entry, precision, dataset, options)
        session = open_session(path, entry, providers, options.threads)
        fixed = fixed_batch(session, entry, path)
        batch_size = fixed or self.batch_size(entry, options)
        batches = iter_batches(dataset.samples, entry.preprocess, batch_size, options.workers,
                               cache_dir=options.image_cache_dir)
        return class_scores(run_session(session, batches, fixed), entry)
