"""vdsp_params JSON (the accelerator's fused preprocessing) -> a PreprocessSpec.

The accelerator does not run torchvision transforms: `vamp` hands each original-size RGB
image to a fused vdsp op described by a JSON file, and the CPU emulation of that op is the
ordinary `preprocess.load_crop` + `normalize` with the spec parsed here. Running the CPU
backends with it (`--preprocess=vdsp:FILE`) separates "the accelerator's preprocessing
costs X points" from "quantization costs Y points".

Two generations of the file:
- newer: `{"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR", "OpConfig": {...}}`:
  a SQUARE resize to ResizeWidth x ResizeHeight, a crop of OimageWidth x OimageHeight at
  the fixed offset (CropX, CropY). `..._RGB_RESIZE_CVTCOLOR_NORM_TENSOR` has no crop: it
  resizes the image to OimageWidth x OimageHeight (its files have no ResizeWidth/Height).
- older (2023): `{"vdsp_op_type": "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8",
  "config": [{"Property": ..., "Value": ...}, ...]}` with mean/std stored as fp16 bit
  patterns (`meanr` 14275 is 0.4851). Its geometry is read literally: the short edge is
  resized to `short_edge_threshold` (aspect ratio kept), then a centre crop of `crop_size`.

Shared semantics: the images are decoded with OpenCV (the zoo's image2npz); ResizeType
BILINEAR_CV = OpenCV bilinear, BILINEAR_PILLOW = Pillow bilinear; mean/std are rounded
to fp16 as the hardware stores them, and Mean[i]/Std[i] (older: mean r/g/b = positions
0/1/2) apply to OUTPUT channel i, after the colour conversion (RGB2BGR and BGR2RGB both swap
the planes of the RGB input); NormaType says whether pixels are divided by 255 first.

What reaches the fused op depends on the runner. vamp gets the image at its original size
(image2npz). The VastStreamX script (the `vsx` backend) first resizes an image with an odd
height or width to the even size below it; `--preprocess=vsx:FILE` emulates that too
(`host_spec`). Its per-image variant, `crop_resize_ext`, resizes the short side instead of
stretching (`crop_resize_ext` and `ext_spec` give its geometry).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import VaccbenchError
from .preprocess import PreprocessSpec

NEW_OP_TYPES = {"FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR": True,  # op -> crops?
                "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR": False}
OLD_OP_TYPES = ("RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8",)
RESIZE_TYPES = {"BILINEAR_CV": "cv2", "BILINEAR_PILLOW": "pil"}
# NormaType -> (pixel_scale, uses mean/std): out = (x / pixel_scale - mean) / std
NORMA_TYPES = {"DIV255_MINUSMEAN_DIVSTD": (255.0, True), "MINUSMEAN_DIVSTD": (1.0, True),
               "DIV255": (255.0, False), "EQUAL": (1.0, False)}
IMAGE_FORMATS = ("RGB_PLANAR",)  # what image2npz writes: the only input vamp gets here
COLOR_CVT = {"NO_CHANGE": False, "RGB2BGR": True, "BGR2RGB": True}  # code -> swaps channels?
OLD_PROPERTIES = {"iimage_format", "iimage_width", "iimage_height", "iimage_width_pitch",
                  "iimage_height_pitch", "short_edge_threshold", "crop_size", "meanr", "meang",
                  "meanb", "stdr", "stdg", "stdb", "norma_type", "resize_type", "color_cvt_code",
                  "color_space"}


class VdspError(VaccbenchError):
    """A vdsp_params file that cannot be read or uses something the emulation lacks."""


def fp16(value: float) -> float:
    """The value as the accelerator stores it (IEEE half precision)."""
    return float(np.float16(value))


def fp16_from_bits(bits: int) -> float:
    """An fp16 bit pattern stored as an integer (older files): 14275 -> 0.4851."""
    return float(np.array([bits], dtype=np.uint16).view(np.float16)[0])


def _choice(table: Mapping[str, Any], value: Any, what: str, path: Path) -> Any:
    if str(value) not in table:
        raise VdspError(f"{what} {value!r} is not supported (known: {', '.join(table)})", path)
    return table[str(value)]


def _int(config: Mapping[str, Any], key: str, path: Path) -> int:
    if key not in config:
        raise VdspError(f"missing {key!r}", path)
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VdspError(f"{key} must be a non-negative integer, got {value!r}", path)
    return value


def _spec(path: Path, *, resize: int, resize_mode: str, crop: int | None,
          crop_offset: tuple[int, int] | None, resize_type: Any, norma_type: Any,
          mean: list[float], std: list[float], image_format: Any, color_cvt: Any) -> PreprocessSpec:
    """The spec shared by both formats; mean/std arrive in output-channel order."""
    library = _choice(RESIZE_TYPES, resize_type, "ResizeType", path)
    pixel_scale, uses_mean_std = _choice(NORMA_TYPES, norma_type, "NormaType", path)
    if image_format not in IMAGE_FORMATS:
        raise VdspError(f"input image format {image_format!r} is not emulated (known: "
                        f"{', '.join(IMAGE_FORMATS)}, as image2npz writes the inputs)", path)
    order = "BGR" if _choice(COLOR_CVT, color_cvt, "color conversion", path) else "RGB"
    if len(mean) != 3 or len(std) != 3:
        raise VdspError("Mean and Std need three values", path)
    if not uses_mean_std:
        mean, std = [0.0] * 3, [1.0] * 3
    # The model sees the input's channels (RGB planar, as image2npz writes it) swapped or not;
    # PreprocessSpec keeps mean/std in RGB order, so BGR output means reversed lists here.
    if order == "BGR":
        mean, std = mean[::-1], std[::-1]
    try:
        return PreprocessSpec(resize=resize, crop=crop, resize_mode=resize_mode,
                              interpolation="bilinear", library=library, decoder="cv2",
                              mean=tuple(fp16(m) for m in mean), std=tuple(fp16(s) for s in std),
                              channel_order=order, crop_offset=crop_offset,
                              pixel_scale=pixel_scale)
    except VaccbenchError as exc:
        raise VdspError(str(exc), path) from None


def _from_new(data: Mapping[str, Any], path: Path) -> PreprocessSpec:
    op = data["OpType"]
    if op not in NEW_OP_TYPES:
        raise VdspError(f"OpType {op!r} is not a classification preprocessing op this tool "
                        f"emulates (known: {', '.join(NEW_OP_TYPES)})", path)
    config = data.get("OpConfig")
    if not isinstance(config, Mapping):
        raise VdspError("OpConfig must be an object", path)
    out_w, out_h = _int(config, "OimageWidth", path), _int(config, "OimageHeight", path)
    if out_w != out_h:
        raise VdspError(f"OimageWidth {out_w} != OimageHeight {out_h}: only square outputs "
                        "are emulated", path)
    crops = NEW_OP_TYPES[op]
    if crops or "ResizeWidth" in config:
        width, height = _int(config, "ResizeWidth", path), _int(config, "ResizeHeight", path)
    else:  # the op without a crop resizes straight to the output size; the zoo's files say no more
        width = height = out_w
    if width != height:
        raise VdspError(f"ResizeWidth {width} != ResizeHeight {height}: only square resizes "
                        "are emulated", path)
    if not crops and out_w != width:
        raise VdspError(f"{op} has no crop, so OimageWidth {out_w} must equal ResizeWidth {width}",
                        path)
    offset = (_int(config, "CropX", path), _int(config, "CropY", path)) if crops else None
    if offset and (offset[0] + out_w > width or offset[1] + out_h > height):
        raise VdspError(f"crop {out_w}x{out_h} at {offset} does not fit the {width}x{height} "
                        "resize", path)
    for key in ("Mean", "Std", "NormaType", "ResizeType", "IimageFormat"):
        if key not in config:
            raise VdspError(f"OpConfig is missing {key!r}", path)
    return _spec(path, resize=width, resize_mode="square", crop=out_w if crops else None,
                 crop_offset=offset, resize_type=config["ResizeType"],
                 norma_type=config["NormaType"], mean=list(config["Mean"]),
                 std=list(config["Std"]), image_format=config["IimageFormat"],
                 color_cvt=config.get("ColorCvtCode", "NO_CHANGE"))


def _from_old(data: Mapping[str, Any], path: Path) -> PreprocessSpec:
    op = data["vdsp_op_type"]
    if op not in OLD_OP_TYPES:
        raise VdspError(f"vdsp_op_type {op!r} is not supported (known: {', '.join(OLD_OP_TYPES)}; "
                        "the numeric sdk1.0 codes are not)", path)
    entries = data.get("config")
    if not isinstance(entries, list):
        raise VdspError("`config` must be a list of {Property, Value} objects", path)
    config: dict[str, Any] = {}
    for i, item in enumerate(entries):
        if not isinstance(item, Mapping) or "Property" not in item or "Value" not in item:
            raise VdspError(f"config[{i}] must have `Property` and `Value`", path)
        if item["Property"] not in OLD_PROPERTIES:
            raise VdspError(f"config[{i}]: unknown property {item['Property']!r}", path)
        config[item["Property"]] = item["Value"]
    channels = ("r", "g", "b")
    mean = [fp16_from_bits(_int(config, f"mean{c}", path)) for c in channels]
    std = [fp16_from_bits(_int(config, f"std{c}", path)) for c in channels]
    for key in ("norma_type", "resize_type", "iimage_format"):
        if key not in config:
            raise VdspError(f"config has no {key!r} property", path)
    return _spec(path, resize=_int(config, "short_edge_threshold", path), resize_mode="short-side",
                 crop=_int(config, "crop_size", path), crop_offset=None,
                 resize_type=config["resize_type"], norma_type=config["norma_type"],
                 mean=mean, std=std, image_format=config["iimage_format"],
                 color_cvt=str(config.get("color_cvt_code", "NO_CHANGE")).removeprefix("COLOR_"))


def parse_vdsp(data: Any, path: str | Path) -> PreprocessSpec:
    """Either format, already loaded from JSON; `path` names the file in errors."""
    path = Path(path)
    if isinstance(data, Mapping) and "OpType" in data:
        return _from_new(data, path)
    if isinstance(data, Mapping) and "vdsp_op_type" in data:
        return _from_old(data, path)
    raise VdspError("not a vdsp_params file: expected an object with `OpType` + `OpConfig` "
                    "(newer) or `vdsp_op_type` + `config` (2023)", path)


def load_vdsp(path: str | Path) -> PreprocessSpec:
    """Read a vdsp_params JSON file into the PreprocessSpec that emulates it on the CPU."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise VdspError(f"cannot read vdsp_params file: {exc.strerror}", path) from None
    except UnicodeDecodeError as exc:
        raise VdspError(f"vdsp_params file is not UTF-8 text (offset {exc.start})", path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VdspError(f"invalid JSON: {exc.msg}", path, exc.lineno) from None
    return parse_vdsp(data, path)


def host_spec(spec: PreprocessSpec) -> PreprocessSpec:
    """What the fused op computes from the image a VastStreamX host hands it: the host first
    makes an odd height or width even (OpenCV bilinear), then the device runs `spec`."""
    return replace(spec, even_size=True)


def crop_resize_ext(width: int, height: int, resize: int, size: int) -> tuple[int, int, int, int]:
    """The vendor samples' per-image fused-op attributes for a short-side resize, as passed
    to `Stream.run_sync(images, {"crop_resize_ext": [...]})`: the short side of a
    `width` x `height` image goes to `resize` (the long side floored), then a `size` crop
    at the centre, offsets rounded up. Returns (crop_x, crop_y, resize_w, resize_h)."""
    if width > height:
        resize_w, resize_h = resize * width // height, resize
    else:
        resize_w, resize_h = resize, resize * height // width
    return (resize_w - size + 1) // 2, (resize_h - size + 1) // 2, resize_w, resize_h


def ext_spec(spec: PreprocessSpec) -> PreprocessSpec:
    """The CPU emulation of a VastStreamX run with per-image `crop_resize_ext` attributes:
    the host's even step, the short side to the file's resize, a centre crop of its output
    size (offsets as `crop_resize_ext` rounds them), then the file's normalisation."""
    return replace(host_spec(spec), resize_mode="short-side", crop=spec.output_size,
                   crop_offset=None, crop_rounding="up")


def variant_name(path: str | Path, kind: str = "vdsp") -> str:
    """How results with this file's preprocessing are labelled: `<kind>-<file stem>`."""
    stem = Path(path).stem
    for suffix in ("-vdsp_params", "_vdsp_params"):
        stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
    return f"{kind}-{stem}"


PREPROCESS_KINDS = {"vdsp": "the fused op on the image at its size (vamp)",
                    "vsx": "the fused op after the VastStreamX host's odd-to-even resize"}


def preprocess_option(value: str) -> tuple[str, PreprocessSpec]:
    """`--preprocess=vdsp:FILE` or `vsx:FILE` -> (variant name, spec)."""
    kind, _, target = value.partition(":")
    if kind not in PREPROCESS_KINDS or not target:
        raise VdspError(f"--preprocess={value}: expected vdsp:<vdsp_params JSON file> (as vamp "
                        "feeds the device) or vsx:<vdsp_params JSON file> (as VastStreamX does)")
    spec = load_vdsp(target)
    return variant_name(target, kind), host_spec(spec) if kind == "vsx" else spec
