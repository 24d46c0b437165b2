"""vamc build configs (the accelerator compiler's YAML): what an int8/fp16 build will do.

The onnxruntime backend reads one (`--vamc-config FILE`, or a baseline entry's `build:`
field) so that its int8 emulation mirrors the build the user will compile: the calibration
mode, per-channel weights, the calibration image count, the layers kept in higher precision
and the calibration preprocessing. Both generations of the zoo's layout are read:

- 2023 (`vamc build`): `model{name, inputs, checkpoint}`, `engine{common{do_quantization},
  calibration{quant_mode, per_channel, skip_conv_layers, ops_usingfp}}`,
  `dataset{path, sampler{get_data_num}, transform_ops}`;
- newer (`vamc compile`): `frontend{...}`, `backend{dtype, quantize{calibrate_mode,
  quantize_per_channel, skip_conv_layers, skip_matmul_layers, calibrate_chunk_by}}`,
  `dataset{sampler{get_data_num}, process_ops}`.

What the emulation cannot mirror (ops kept in fp by op type, chunked calibration, a
transform it does not know, ...) is collected in `BuildConfig.unmirrored`, for a warning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .baselines import read_yaml
from .errors import VaccbenchError
from .preprocess import MAX_SIDE, PreprocessSpec

CALIBRATE_MODES = ("percentile", "max", "kl_divergence", "mse")


class BuildConfigError(VaccbenchError):
    """A build config the emulation cannot read; the message names the file."""


@dataclass(frozen=True)
class BuildConfig:
    """One vamc build config, as the onnxruntime emulation needs it."""

    path: Path
    digest: str  # sha256 of the file: recorded with the results it produced
    generation: str  # "2023" | "newer"
    dtype: str  # "int8" | "fp16"
    calibrate_mode: str | None  # one of CALIBRATE_MODES for int8, None for fp16
    per_channel: bool
    skip_conv_layers: tuple[int, ...] = ()
    skip_matmul_layers: tuple[int, ...] = ()
    calib_images: int | None = None  # sampler.get_data_num; None: the whole calibration set
    preprocess: dict[str, Any] | None = None  # PreprocessSpec overrides from the transforms
    unmirrored: tuple[str, ...] = ()  # settings the emulation cannot follow

    @property
    def precision(self) -> str:
        """The precision name the vamp backend gives this build (`int8-percentile`, `fp16`)."""
        return "fp16" if self.dtype == "fp16" else f"int8-{self.calibrate_mode}"

    def calibration_spec(self, spec: PreprocessSpec) -> PreprocessSpec:
        """The model's preprocessing with the build's calibration transforms applied."""
        return spec.with_overrides(self.preprocess) if self.preprocess else spec

    def describe(self) -> str:
        skips = (f", skip conv {list(self.skip_conv_layers)}" if self.skip_conv_layers else "") + \
                (f", skip matmul {list(self.skip_matmul_layers)}" if self.skip_matmul_layers else "")
        count = f", {self.calib_images} calibration images" if self.calib_images else ""
        channel = "per-channel" if self.per_channel else "per-tensor"
        return f"{self.path.name} ({self.generation} layout): {self.precision}, {channel}{count}{skips}"


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _indices(value: Any, where: str, path: Path) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                              for v in value):
        raise BuildConfigError(f"{where} must be a list of layer indices (0, 1, ...), got {value!r}", path)
    return tuple(value)


def _size(value: Any, where: str, path: Path) -> int:
    """A resize or crop size in pixels; anything else is a BuildConfigError naming it."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_SIDE:
        raise BuildConfigError(f"{where} must be a size in pixels (1 to {MAX_SIDE}), got {value!r}", path)
    return value


def _transforms(ops: Any, where: str, path: Path, unmirrored: list[str]) -> dict[str, Any] | None:
    """`transform_ops` / `process_ops` -> PreprocessSpec overrides (a square resize, a centre crop,
    mean/std); ops given as `{type: Resize, size: [...]}`, `{Resize: {size: [...]}}` or `DecodeImage`."""
    if ops is None:
        return None
    if not isinstance(ops, list):
        raise BuildConfigError(f"{where} must be a list of ops, got {type(ops).__name__}", path)
    out: dict[str, Any] = {}
    div255 = True
    for op in ops:
        if isinstance(op, str):
            name, params = op, {}
        elif isinstance(op, Mapping) and "type" in op:
            name, params = op["type"], {k: v for k, v in op.items() if k != "type"}
        elif isinstance(op, Mapping) and len(op) == 1:
            name, params = next(iter(op.items()))
            params = params if isinstance(params, Mapping) else {}
        else:
            raise BuildConfigError(f"{where}: cannot read op {op!r}", path)
        if name in ("DecodeImage", "ToTensor"):
            continue
        if name == "Resize" and isinstance(params.get("size"), (list, int)):
            size = params["size"]
            h, w = (size, size) if isinstance(size, int) else (size + size)[:2]
            _size(h, f"{where} Resize size", path)
            if h != w:
                unmirrored.append(f"{where} Resize to a non-square {h}x{w}")
            out.update(resize=int(h), resize_mode="square")
        elif name == "CenterCrop" and isinstance(params.get("crop_size"), (list, int)):
            size = params["crop_size"]
            out["crop"] = _size(size if isinstance(size, int) else (size or [None])[0],
                                f"{where} CenterCrop crop_size", path)
        elif name == "Normalize" and "mean" in params and "std" in params:
            out.update(mean=[float(v) for v in params["mean"]], std=[float(v) for v in params["std"]])
            div255 = params.get("div255", True) is not False
        else:
            unmirrored.append(f"{where} op {name} {dict(params) or ''}".rstrip())
    if not div255:  # mean/std in 0..255 units
        out["pixel_scale"] = 1.0
    return out or None


def read_build_config(path: Path) -> BuildConfig:
    """Read a vamc build config of either generation; errors name the file and what is wrong."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise BuildConfigError("not a vamc build config (expected a YAML mapping)", path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    unmirrored: list[str] = []
    if isinstance(data.get("backend"), Mapping):  # newer: vamc compile
        generation, prefix = "newer", "backend.quantize"
        quantize = _get(data, "backend", "quantize") or {}
        dtype = str(_get(data, "backend", "dtype") or "int8").lower()
        mode = quantize.get("calibrate_mode")
        if mode is None and "alibrate_mode" in quantize:  # a misspelling found in the zoo
            mode = quantize["alibrate_mode"]
            unmirrored.append(f"{prefix}.alibrate_mode (read as calibrate_mode: vamc may ignore it)")
        per_channel = quantize.get("quantize_per_channel", False)
        ops_key = "process_ops"
    elif isinstance(data.get("engine"), Mapping):  # 2023: vamc build
        generation, prefix = "2023", "engine.calibration"
        quantize = _get(data, "engine", "calibration") or {}
        do_quant = _get(data, "engine", "common", "do_quantization")
        if do_quant is None:
            do_quant = _get(data, "engine", "do_quantization")
        dtype = "fp16" if do_quant is False or str(do_quant).lower() == "fp16" else "int8"
        if str(do_quant).lower() == "debug":
            unmirrored.append("do_quantization: debug")
        mode = quantize.get("quant_mode")
        per_channel = quantize.get("per_channel", False)
        ops_key = "transform_ops"
    else:
        raise BuildConfigError("not a vamc build config: no `backend:` (newer layout) or `engine:` "
                               "(2023 layout) section", path)
    if dtype not in ("int8", "fp16"):
        raise BuildConfigError(f"dtype {dtype!r} is not int8 or fp16", path)
    if dtype == "int8":
        mode = str(mode or "percentile").lower()  # vamc's default calibration
        if mode not in CALIBRATE_MODES:
            raise BuildConfigError(f"{prefix} calibration mode {mode!r} is not one of {CALIBRATE_MODES}", path)
    else:
        mode = None
    if not isinstance(per_channel, bool):
        raise BuildConfigError(f"{prefix} per-channel must be true or false, got {per_channel!r}", path)
    for key in ("ops_usingfp", "calibrate_chunk_by"):
        if quantize.get(key) not in (None, [], -1):
            unmirrored.append(f"{prefix}.{key}: {quantize[key]!r}")
    known = {"calibrate_mode", "alibrate_mode", "quant_mode", "quantize_per_channel", "per_channel",
             "skip_conv_layers", "skip_matmul_layers", "ops_usingfp", "calibrate_chunk_by"}
    unmirrored += [f"{prefix}.{k}: {v!r}" for k, v in quantize.items() if k not in known]
    count = _get(data, "dataset", "sampler", "get_data_num")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise BuildConfigError(f"dataset.sampler.get_data_num must be a positive count, got {count!r}", path)
    return BuildConfig(
        path=path, digest=digest, generation=generation, dtype=dtype, calibrate_mode=mode,
        per_channel=per_channel,
        skip_conv_layers=_indices(quantize.get("skip_conv_layers"), f"{prefix}.skip_conv_layers", path),
        skip_matmul_layers=_indices(quantize.get("skip_matmul_layers"), f"{prefix}.skip_matmul_layers", path),
        calib_images=count,
        preprocess=_transforms(_get(data, "dataset", ops_key), f"dataset.{ops_key}", path, unmirrored),
        unmirrored=tuple(unmirrored))
