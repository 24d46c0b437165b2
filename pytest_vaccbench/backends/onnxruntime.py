"""The onnxruntime backend: the exported ONNX graph on CPU (or an NVIDIA GPU), fp32/fp16/int8.

Where the fp32 graph comes from, first match wins:
1. the baseline entry's `onnx:` file (absolute, or in --onnx-dir, else in --weights-dir);
2. `--onnx-dir DIR` holding `<key>.onnx`, `<key>_<size>.onnx`, or for timm/torchvision
   models the zoo export script's `<arch>_<size>.onnx`;
3. an export of the entry's model with its local weights (export.cached_export; needs torch).
With a ready graph this backend needs neither torch nor timm.

Precisions: fp32 (the graph as is); fp16 (weights and activations in float16 with float32
inputs and outputs, onnxconverter-common's keep_io_types conversion); int8-<calibration>
(onnxruntime.quantization.quantize_static, QDQ format, signed int8 weights, per output
channel unless --int8-per-tensor, calibrated on calibration.calibration_set of the evaluated
dataset). The compiler's modes: max, percentile and kl_divergence get the ranges
onnxruntime's MinMax, Percentile (99.999) and Entropy calibrators compute, and mse the
range minimising the quantization error, all from thresholds.py's streaming calibration
(reading the crops from the image cache); `--ort-calibrator` runs onnxruntime's own
calibrators instead (slow, for comparison). A vamc build config (--vamc-config, or the
entry's `build:`) sets the mode, per-channel, the calibration count and preprocessing and
the layers kept in float (build_config.py); what it sets that is not mirrored is warned
about. Derived graphs and calibration ranges are cached under
`<cache>/onnx/derived/<graph sha256>/`, keyed by precision, options and the calibration
set's fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..baselines import ModelEntry
from ..build_config import BuildConfig, read_build_config
from ..calibration import DEFAULT_CALIBRATION_IMAGES, calibration_set
from ..dataset import Dataset, Sample
from ..errors import BackendError
from ..cache import kind_dir
from ..export import DEFAULT_OPSET, cached_export, file_digest, onnx_file_name, writable_dir
from ..image_cache import CachedCrops, CacheMiss
from ..layers import parse_keep
from ..safefiles import inside
from ..preprocess import PreprocessSpec, normalize
from ..weights import find_weights
from . import Backend, DecodeAhead, RunOptions, cached_crops, class_scores, iter_batches, open_entry

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
CALIBRATION_METHODS = {"int8-max": "MinMax", "int8-percentile": "Percentile",
                       "int8-kl_divergence": "Entropy", "int8-mse": None}  # onnxruntime's calibrator
CALIBRATION_BATCH = 16  # images per calibration step: bounds the calibrator's memory
PER_CHANNEL_OPSET = 13  # per-channel QDQ needs DequantizeLinear's axis attribute


class BuildConfigWarning(UserWarning):
    """A vamc build config setting the onnxruntime emulation does not follow."""


@dataclass(frozen=True)
class OrtSettings:
    """This backend's options (RunOptions.extra, filled from the plugin's command line)."""

    provider: str = "cpu"
    onnx_dir: Path | None = None
    opset: int = DEFAULT_OPSET
    per_channel: bool = True  # what the zoo's builds do
    calib_images: int = DEFAULT_CALIBRATION_IMAGES
    calib_include: bool = False
    vamc_config: Path | None = None
    ort_calibrator: bool = False  # onnxruntime's own calibrators instead of thresholds.py
    keep_fp32: str | None = None  # --int8-keep-fp32: layers left out of quantization

    @classmethod
    def from_options(cls, options: RunOptions) -> "OrtSettings":
        extra = options.extra
        onnx_dir = extra.get("onnx_dir")
        return cls(provider=extra.get("ort_provider") or "cpu",
                   onnx_dir=Path(onnx_dir).expanduser() if onnx_dir else None,
                   opset=extra.get("opset") or DEFAULT_OPSET,
                   per_channel=not extra.get("int8_per_tensor"),
                   calib_images=extra.get("calib_images") or DEFAULT_CALIBRATION_IMAGES,
                   calib_include=bool(extra.get("calib_include")),
                   vamc_config=Path(extra["vamc_config"]).expanduser() if extra.get("vamc_config") else None,
                   ort_calibrator=bool(extra.get("ort_calibrator")),
                   keep_fp32=extra.get("int8_keep_fp32") or None)


def build_config(entry: ModelEntry, settings: OrtSettings) -> BuildConfig | None:
    """The vamc build config the emulation mirrors: --vamc-config, else the entry's `build:`
    (a path relative to its baseline file), else None."""
    if settings.vamc_config is not None:
        path = settings.vamc_config
    else:
        field = getattr(entry, "build", None)  # the baseline schema's `build:` field
        if not field:
            return None
        path = Path(str(field)).expanduser()
        if not path.is_absolute():
            path = entry.baseline_path.parent / path
        if not path.is_file():
            raise BackendError(f"build config {field!r} of {entry.test_name} not found: {path} "
                               f"(`build:` at {entry.where}, relative to the baseline file)")
    return read_build_config(path)


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


def open_session(path: Path, entry: ModelEntry, providers: Sequence[str], threads: int,
                 spinning: bool = True) -> Any:
    """An inference session for `path`, after checking its input against the entry.
    `spinning` False: its idle threads yield at once instead of busy-waiting (onnxruntime's
    default), for when other work (decoding) needs the cores."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


def load_onnx(path: Path) -> Any:
    """The ONNX model at `path`; a missing, unreadable or non-ONNX file is a BackendError."""
    try:
        import onnx
    except ImportError:
        raise BackendError("reading ONNX graphs needs the onnx package: pip install "
                           "'pytest-vaccbench[onnx]'") from None
    if not Path(path).is_file():
        raise BackendError("ONNX file not found", path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise BackendError(f"not a readable ONNX model (corrupt or truncated file?): "
                           f"{type(exc).__name__}: {exc}", path) from None
    if not model.graph.node:  # protobuf reads an empty file as an empty model
        raise BackendError("not an ONNX model: it holds no graph", path)
    return model


def _save_onnx(model: Any, path: Path) -> Path:
    import onnx

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path


def _derived_dir(source: Path, cache_dir: Path) -> Path:
    root = kind_dir(cache_dir, "onnx")
    return writable_dir(inside(root, root / "derived" / file_digest(source, cache_dir)[:16]))


def fp16_graph(source: Path, cache_dir: Path) -> Path:
    """The float16 version of `source` with float32 inputs and outputs (cached)."""
    out = _derived_dir(source, cache_dir) / "fp16.onnx"
    if not out.is_file():
        from onnxconverter_common import float16

        model = load_onnx(source)
        _save_onnx(float16.convert_float_to_float16(model, keep_io_types=True), out)
    return out


def _graph_input(model: Any) -> tuple[str, int | None]:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    dim = inputs[0].type.tensor_type.shape.dim[0]
    return inputs[0].name, (dim.dim_value or None) if dim.HasField("dim_value") else None


@dataclass(frozen=True)
class Int8Recipe:
    """How an int8 graph is derived: what a vamc build config (or the options) ask for."""

    mode: str  # max | percentile | kl_divergence | mse
    per_channel: bool = True
    skip_conv_layers: tuple[int, ...] = ()
    skip_matmul_layers: tuple[int, ...] = ()
    ort_calibrator: bool = False  # onnxruntime's calibrators, not thresholds.py


def calibration_batches(dataset: Dataset, calibration: Dataset, eval_spec: PreprocessSpec,
                        spec: PreprocessSpec, batch: int, workers: int, image_cache_dir: Path | None,
                        drop_short: bool = False) -> Callable[[], Iterator[np.ndarray]]:
    """Normalised calibration batches, as often as asked. With the image cache the crops come
    from the evaluation's own entry (the whole dataset, same geometry), decoded once for both;
    a calibration preprocessing of another geometry gets its own entry. `drop_short`: leave
    out a last, short batch (a graph with a fixed batch size)."""
    samples = calibration.samples[:len(calibration.samples) // batch * batch] if drop_short else calibration.samples
    if not samples:
        raise BackendError(f"no full calibration batch of {batch} images in {len(calibration.samples)} "
                           "calibration images")
    if image_cache_dir is None:
        return lambda: iter_batches(samples, spec, batch, workers)
    pool = dataset.samples if spec.geometry_key() == eval_spec.geometry_key() else calibration.samples
    where = {sample: i for i, sample in enumerate(pool)}
    rows = np.array([where[s] for s in samples])

    def batches() -> Iterator[np.ndarray]:  # decodes (into the cache) only when first asked
        with cached_crops(pool, spec, workers, image_cache_dir, rows) as crops:
            for start in range(0, len(rows), batch):
                try:
                    chosen = crops.take(rows[start:start + batch])
                except CacheMiss as exc:  # checked a moment ago: changed while being read
                    raise BackendError(f"the image cache changed while the calibration read it ({exc}); "
                                       "run again") from None
                yield normalize(chosen, spec)
    return batches


def _per_channel_source(source: Path, out_dir: Path) -> Path:
    """`source` at opset 13 or later: per-channel QDQ needs DequantizeLinear's `axis`."""
    model = load_onnx(source)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset >= PER_CHANNEL_OPSET:
        return source
    upgraded = out_dir / f"opset{PER_CHANNEL_OPSET}.onnx"
    if not upgraded.is_file():
        from onnx import version_converter

        _save_onnx(version_converter.convert_version(model, PER_CHANNEL_OPSET), upgraded)
    return upgraded


def calibration_ranges(source: Path, recipe: Int8Recipe, batches: Callable[[], Iterator[np.ndarray]],
                       key: str, cache_dir: Path, threads: int = 1) -> Path:
    """The activation ranges of `source` for the recipe's mode, in onnxruntime's calibration
    cache format (cached: keyed by graph, calibration images and preprocessing, mode)."""
    from .. import thresholds

    out = _derived_dir(source, cache_dir) / f"ranges-{recipe.mode}-v{thresholds.VERSION}-{key}.json"
    if not out.is_file():
        try:
            ranges = thresholds.compute_ranges(thresholds.calibration_model(source), recipe.mode, batches, threads)
        except thresholds.CalibrationError as exc:
            raise BackendError(f"int8 calibration: {exc}", source) from None
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        os.replace(thresholds.save_calibration(ranges, recipe.mode, tmp), out)
    return out


def ort_ranges_path(source: Path, recipe: Int8Recipe, calibration_key: str, cache_dir: Path) -> Path:
    """Where onnxruntime's own calibrators' ranges for this recipe are cached (their format)."""
    return _derived_dir(source, cache_dir) / f"ranges-ort-{recipe.mode}-{calibration_key}.json"


def int8_graph(source: Path, recipe: Int8Recipe, batches: Callable[[], Iterator[np.ndarray]],
               calibration_key: str, cache_dir: Path, threads: int = 1) -> Path:
    """`source` quantized to int8 (QDQ) as the recipe says (cached).

    The cache key holds the graph's hash, the calibration images' fingerprint and
    preprocessing (`calibration_key`), the recipe and onnxruntime's version.
    """
    from .. import layers as layers_mod
    from .. import thresholds

    key = hashlib.sha256(f"{calibration_key}|{recipe}|{CALIBRATION_BATCH}|{thresholds.VERSION}|"
                         f"{_ort().__version__}".encode()).hexdigest()[:16]
    derived = _derived_dir(source, cache_dir)
    out = derived / (f"int8-{recipe.mode}-{'per-channel' if recipe.per_channel else 'per-tensor'}-{key}.onnx")
    if out.is_file():
        return out
    import onnxruntime.quantization as q

    quantized = _per_channel_source(source, derived) if recipe.per_channel else source
    model = load_onnx(quantized)
    try:
        excluded = layers_mod.nodes_for(layers_mod.quantizable_layers(model), recipe.skip_conv_layers,
                                        recipe.skip_matmul_layers)
    except ValueError as exc:
        raise BackendError(f"layers kept in float: {exc}", source) from None
    unnamed = set(excluded) - {node.name for node in model.graph.node}
    if unnamed:  # layers.py made up a name: onnxruntime could not tell which node to keep
        raise BackendError(f"cannot keep layers {sorted(unnamed)} in float: their nodes have no "
                           "names in the graph (export it with node names)", source)
    name, batch = _graph_input(model)
    del model
    common = dict(quant_format=q.QuantFormat.QDQ, per_channel=recipe.per_channel,
                  activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                  nodes_to_exclude=excluded)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with contextlib.redirect_stdout(io.StringIO()), without_preprocessing_advice():
            if recipe.ort_calibrator:
                method = CALIBRATION_METHODS[f"int8-{recipe.mode}"]
                if method is None:
                    raise BackendError(f"onnxruntime has no calibrator for {recipe.mode} "
                                       "(drop --ort-calibrator)", source)
                ranges = ort_ranges_path(source, recipe, calibration_key, cache_dir)
                reader = None if ranges.is_file() else _OrtReader(name, batch, batches())
                q.quantize_static(str(quantized), str(tmp), reader, calibration_cache_path=str(ranges),
                                  calibrate_method=getattr(q.CalibrationMethod, method),
                                  extra_options={"CalibStridedMinMax": 1}, **common)
            else:
                ranges = calibration_ranges(source, recipe, batches, calibration_key, cache_dir, threads)
                q.quantize_static(str(quantized), str(tmp), None, calibration_cache_path=str(ranges),
                                  calibrate_method=thresholds.calibration_method(recipe.mode), **common)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


class _Advice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in str(record.msg)


@contextlib.contextmanager
def without_preprocessing_advice() -> Iterator[None]:
    """quantize_static logs "Please consider (to run) pre-processing before quantization" on
    the root logger for every graph: advice about its own shape-inference tool, which an
    emulation of the accelerator's build does not follow. Dropped here; without a handler
    of the user's, logging's stderr fallback is not installed either."""
    root, advice = logging.getLogger(), _Advice()
    quiet = logging.NullHandler() if not root.handlers else None
    root.addFilter(advice)
    if quiet is not None:
        root.addHandler(quiet)
    try:
        yield
    finally:
        root.removeFilter(advice)
        if quiet is not None:
            root.removeHandler(quiet)


class _OrtReader:
    """The calibration batches for onnxruntime's calibrators (all held in memory, as they
    need), in ranges so that CalibStridedMinMax feeds them one at a time."""

    def __init__(self, name: str, batch: int | None, batches: Iterator[np.ndarray]) -> None:
        self.items = [{name: x} for x in batches if not batch or len(x) == batch]
        self.start, self.end = 0, len(self.items)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= self.end:
            return None
        self.start += 1
        return self.items[self.start - 1]

    def __len__(self) -> int:
        return len(self.items)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, end_index


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32", "fp16", *CALIBRATION_METHODS)
    packages = ("onnxruntime", "onnx")
    option_keys = ("ort_provider", "opset", "int8_per_tensor", "calib_images", "calib_include",
                   "ort_calibrator", "int8_keep_fp32")

    def precisions_for(self, entry: ModelEntry, requested: tuple[str, ...] | None,
                       options: RunOptions) -> tuple[str, ...] | None:
        """With a build config and no --precision: the build's precision (vamp's name for it)."""
        if requested is not None:
            return requested
        build = self._build(entry, options)
        return (build.precision,) if build is not None else None

    def provenance(self, entry: ModelEntry, precision: str, options: RunOptions) -> dict[str, Any]:
        """The build config an int8/fp16 emulation mirrored: its file and sha256."""
        build = self._build(entry, options) if precision != "fp32" else None
        return {"vamc_config": str(build.path), "vamc_config_sha256": build.digest} if build else {}

    @staticmethod
    def _build(entry: ModelEntry, options: RunOptions) -> BuildConfig | None:
        return build_config(entry, OrtSettings.from_options(options))

    def _calib_count(self, entry: ModelEntry, options: RunOptions) -> int:
        build = self._build(entry, options)
        return (build.calib_images if build and build.calib_images else
                OrtSettings.from_options(options).calib_images)

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

    def source(self, entry: ModelEntry, precision: str, options: RunOptions) -> str:
        """A ready graph's digest, else (exported from them) the weights'."""
        graph, _ = self.given_graph(entry, options)
        return file_digest(graph, options.cache_dir) if graph is not None else \
            super().source(entry, precision, options)

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
        build = self._build(entry, options)
        mode = precision.removeprefix("int8-")
        keep_conv, keep_matmul = parse_keep(settings.keep_fp32) if settings.keep_fp32 else ((), ())
        if build is None:
            recipe = Int8Recipe(mode, settings.per_channel, tuple(keep_conv), tuple(keep_matmul),
                                settings.ort_calibrator)
            spec = entry.preprocess
        else:
            if build.unmirrored:
                warnings.warn(BuildConfigWarning(
                    f"{build.path}: the onnxruntime emulation of {entry.test_name} does not mirror "
                    f"{'; '.join(build.unmirrored)}"), stacklevel=2)
            recipe = Int8Recipe(mode, build.per_channel,
                                tuple(sorted({*build.skip_conv_layers, *keep_conv})),
                                tuple(sorted({*build.skip_matmul_layers, *keep_matmul})),
                                settings.ort_calibrator)
            spec = build.calibration_spec(entry.preprocess)
        calibration = calibration_set(dataset, self._calib_count(entry, options))
        batch = _graph_input(load_onnx(source))[1]
        batches = calibration_batches(dataset, calibration, entry.preprocess, spec, batch or CALIBRATION_BATCH,
                                      options.workers, options.image_cache_dir, drop_short=bool(batch))
        key = hashlib.sha256(f"{calibration.fingerprint()}|{spec}|{batch or CALIBRATION_BATCH}".encode()).hexdigest()[:16]
        return int8_graph(source, recipe, batches, key, options.cache_dir, options.threads)

    def excluded_samples(self, entry: ModelEntry, precision: str, dataset: Dataset,
                         options: RunOptions) -> tuple[Sample, ...]:
        settings = OrtSettings.from_options(options)
        if precision not in CALIBRATION_METHODS or settings.calib_include:
            return ()
        calibration = calibration_set(dataset, self._calib_count(entry, options))
        if len(calibration.samples) >= len(dataset.samples):
            raise BackendError(f"the int8 calibration set takes all {len(dataset.samples)} images of "
                               f"{dataset.name}, leaving none to count: lower --calib-images "
                               f"(now {settings.calib_images}) or pass --calib-include")
        return calibration.samples

    def scores(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> np.ndarray:
        return self.scorer(entry, precision, dataset, options)(dataset.samples)

    def scorer(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> Callable[[Sequence[Sample]], np.ndarray]:
        """One graph (int8: calibrated on the whole dataset) and one session for every chunk,
        made when the first chunk comes. With the image cache and no entry for that chunk's
        images yet, the session's idle threads yield instead of spinning, leaving the cores
        to the decoding, which starts before the graph is exported (an export takes seconds);
        the chunks' order is fixed, so a run whose first chunk is decoded is a cold run. int8
        opens the entry after its calibration, which reads (or fills) one first."""
        providers = execution_providers(OrtSettings.from_options(options).provider)
        session: Any = None
        fixed: int | None = None

        def score(samples: Sequence[Sample]) -> np.ndarray:
            nonlocal session, fixed
            with contextlib.ExitStack() as stack:
                def entry_source() -> CachedCrops | DecodeAhead | None:
                    if options.image_cache_dir is None:
                        return None
                    return stack.enter_context(open_entry(samples, entry.preprocess, options.workers,
                                                          options.image_cache_dir))
                if session is None:
                    exported = precision not in CALIBRATION_METHODS and self.given_graph(entry, options)[0] is None
                    source = entry_source() if exported else None
                    path = self.graph(entry, precision, dataset, options)
                    if not exported:
                        source = entry_source()
                    session = open_session(path, entry, providers, options.threads,
                                           spinning=not isinstance(source, DecodeAhead))
                    fixed = fixed_batch(session, entry, path)
                else:
                    source = entry_source()
                batches = iter_batches(samples, entry.preprocess, fixed or self.batch_size(entry, options),
                                       options.workers, cache_dir=options.image_cache_dir, source=source)
                return class_scores(run_session(session, batches, fixed), entry)
        return score
