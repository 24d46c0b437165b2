"""Preprocessing: image file -> normalised CHW float32 tensor, exactly as the model expects.

Two steps, kept apart on purpose:
- `load_crop`: decode, resize, crop -> uint8 HWC RGB. This is the expensive, cacheable part.
- `normalize`: uint8 HWC -> float32 CHW, (x / pixel_scale - mean) / std in float32; with
  the default pixel_scale 255 this is what torchvision's ToTensor + Normalize compute.

With library "pil" the geometry follows torchvision.transforms on PIL images:
Resize(int) keeps the aspect ratio with the short side at `resize` (long side truncated
to int), Resize((h, w)) squares, CenterCrop rounds the offset and pads with zeros when the
image is smaller than the crop.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .errors import ImageDecodeError, VaccbenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MAX_SIDE = 8192  # the largest resize or crop a model input may ask for
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
RESIZE_MODES = ("short-side", "square")
LIBRARIES = ("pil", "cv2")
CROP_ROUNDINGS = ("torchvision", "up")  # centre-crop offset: round((w - c) / 2), or (w - c + 1) // 2


@dataclass(frozen=True)
class PreprocessSpec:
    """Every choice that moves accuracy, stated explicitly."""

    resize: int
    crop: int | None = None
    resize_mode: str = "short-side"
    interpolation: str = "bilinear"
    library: str = "pil"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    crop_offset: tuple[int, int] | None = None  # fixed (x, y); None = centre crop
    pixel_scale: float = 255.0  # x / pixel_scale before mean/std; 1 = mean/std in 0..255 units
    decoder: str | None = None  # pil | cv2 when it differs from `library` (the accelerator: cv2)
    # What the VastStreamX host script does before the device sees an image: an odd height
    # or width is first resized (OpenCV bilinear) to the even size below it.
    even_size: bool = False
    crop_rounding: str = "torchvision"  # "up": the vendor's (w - crop + 1) // 2 (crop_resize_ext)

    def __post_init__(self) -> None:
        for what, size in (("resize", self.resize), ("crop", self.crop)):
            if (size is not None or what == "resize") and not (
                    isinstance(size, int) and not isinstance(size, bool) and 0 < size <= MAX_SIDE):
                raise VaccbenchError(f"{what} {size!r} is not a size in pixels (1 to {MAX_SIDE})")
        if self.resize_mode not in RESIZE_MODES:
            raise VaccbenchError(f"resize_mode {self.resize_mode!r} is not one of {RESIZE_MODES}")
        if self.interpolation not in INTERPOLATIONS:
            raise VaccbenchError(f"interpolation {self.interpolation!r} is not one of {INTERPOLATIONS}")
        if self.library not in LIBRARIES:
            raise VaccbenchError(f"library {self.library!r} is not one of {LIBRARIES}")
        if self.decoder not in (None, *LIBRARIES):
            raise VaccbenchError(f"decoder {self.decoder!r} is not one of {LIBRARIES}")
        if self.even_size and (self.decoder or self.library) != "cv2":
            raise VaccbenchError("even_size is the VastStreamX host's OpenCV step: it needs the cv2 decoder")
        if self.crop_rounding not in CROP_ROUNDINGS:
            raise VaccbenchError(f"crop_rounding {self.crop_rounding!r} is not one of {CROP_ROUNDINGS}")
        if self.channel_order not in ("RGB", "BGR"):
            raise VaccbenchError(f"channel_order {self.channel_order!r} is not RGB or BGR")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise VaccbenchError("mean and std need three values (one per channel)")
        if self.pixel_scale <= 0 or any(s == 0 for s in self.std):
            raise VaccbenchError("pixel_scale and std must be non-zero")

    @property
    def output_size(self) -> int:
        return self.crop if self.crop else self.resize

    def geometry_key(self) -> str:
        """What decides the uint8 crop: the key of the preprocessed-image cache."""
        decoder = f"{self.decoder}decode-" if self.decoder not in (None, self.library) else ""
        even = "even-" if self.even_size else ""
        rounding = f"-round{self.crop_rounding}" if self.crop_rounding != "torchvision" else ""
        return (f"{decoder}{even}{self.library}-{self.interpolation}-{self.resize_mode}{self.resize}"
                f"-crop{self.crop}-off{self.crop_offset}{rounding}-{self.channel_order}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "PreprocessSpec":
        known = {"resize", "crop", "resize_mode", "interpolation", "library", "mean", "std",
                 "channel_order", "crop_offset", "pixel_scale", "decoder", "even_size", "crop_rounding"}
        unknown = set(data) - known
        if unknown:
            raise VaccbenchError(f"unknown preprocess keys {sorted(unknown)}; known: {sorted(known)}")
        if "resize" not in data:
            raise VaccbenchError("preprocess needs `resize`")
        kwargs = dict(data)
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        if kwargs.get("crop_offset") is not None:
            kwargs["crop_offset"] = tuple(int(v) for v in kwargs["crop_offset"])
        return cls(**kwargs)

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {"resize": self.resize, "resize_mode": self.resize_mode,
                               "crop": self.crop, "interpolation": self.interpolation,
                               "library": self.library, "mean": list(self.mean),
                               "std": list(self.std)}
        if self.channel_order != "RGB":
            out["channel_order"] = self.channel_order
        if self.crop_offset is not None:
            out["crop_offset"] = list(self.crop_offset)
        if self.pixel_scale != 255.0:
            out["pixel_scale"] = self.pixel_scale
        if self.decoder is not None:
            out["decoder"] = self.decoder
        if self.even_size:
            out["even_size"] = True
        if self.crop_rounding != "torchvision":
            out["crop_rounding"] = self.crop_rounding
        return out

    def with_overrides(self, data: Mapping[str, Any]) -> "PreprocessSpec":
        merged = {**self.to_mapping(), **data}
        return PreprocessSpec.from_mapping(merged)


def resized_size(width: int, height: int, spec: PreprocessSpec) -> tuple[int, int]:
    """(width, height) after the resize step, with torchvision's rounding."""
    if spec.resize_mode == "square":
        return spec.resize, spec.resize
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = spec.resize, int(spec.resize * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def crop_box(width: int, height: int, spec: PreprocessSpec) -> tuple[int, int]:
    """(left, top) of the crop, torchvision's CenterCrop rounding or a fixed offset."""
    size = spec.crop
    assert size is not None
    if spec.crop_offset is not None:
        return spec.crop_offset
    if spec.crop_rounding == "up":
        return (width - size + 1) // 2, (height - size + 1) // 2
    return int(round((width - size) / 2.0)), int(round((height - size) / 2.0))


# One limit for every decoder, checked from the image header before any pixel is decoded:
# Pillow's default MAX_IMAGE_PIXELS, about 0.27 GB as decoded RGB. ImageNet's largest
# validation image has 7.6 Mpixels.
MAX_PIXELS = 89_478_485


class ImageTooLargeError(ImageDecodeError):
    """An image whose header declares more than MAX_PIXELS pixels."""


def _too_large(path: str | Path, size: str) -> ImageTooLargeError:
    return ImageTooLargeError(f"image is {size}, over the limit of {MAX_PIXELS} pixels for "
                            "every decoder (a decompression bomb, or not a photo); shrink it or "
                            "leave it out of the dataset", path)


def _check_pixels(img: Any, path: str | Path) -> None:
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise _too_large(path, f"{width}x{height} = {width * height} pixels")
    if img.mode == "F":  # Pillow would convert it to black, OpenCV refuses it: one rule, refused
        raise ImageDecodeError("has floating-point samples (a float TIFF?), not a photo's 8 or 16 "
                               "bits: convert it to 8-bit", path)


@contextlib.contextmanager
def _opened(path: str | Path) -> Iterator[Any]:
    """The image opened with Pillow, which has read its header only; too large, unreadable
    and undecodable images are ImageDecodeErrors naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS decides
            with Image.open(path) as img:
                _check_pixels(img, path)
                yield img
    except Image.DecompressionBombError as exc:  # Pillow refuses beyond 2 x MAX_PIXELS itself
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(path, f"{found.group(1) if found else 'more than twice that many'} pixels") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not a readable image (corrupt or unknown format)", path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}", path) from None


def check_pixels(path: str | Path) -> None:
    """The check every decoder makes before decoding: Pillow reads the image's header, and an
    image over MAX_PIXELS (ImageTooLargeError), with floating-point samples, or in a format
    whose header Pillow cannot read (a Radiance HDR named .png: OpenCV would decode it
    unchecked) is an ImageDecodeError."""
    with _opened(path):
        pass


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def decode_rgb(path: str | Path) -> "Any":
    """Open an image as a PIL RGB image; grayscale, CMYK, palette and RGBA are converted.

    16-bit grayscale keeps its high byte, as OpenCV's IMREAD_COLOR does (Pillow's own
    conversion would clip every value above 255 to white)."""
    from PIL import Image

    with _opened(path) as img:
        img.load()  # leaving the block closes the file, not the pixels
    if img.mode in _SIXTEEN_BIT:
        high = (np.clip(np.asarray(img), 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(high, "L").convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


_PIL_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
RESIZE_BOUND = 16  # the whole resized image is made when at most this many times the crop's area


def crop_window(width: int, height: int, spec: PreprocessSpec) -> tuple[int, int] | None:
    """(left, top) of the crop in the resized image when only that window is worth resizing:
    the resized image would be over RESIZE_BOUND times the crop's area (a 1 x 12000 image,
    short side to 224, is 224 x 2,688,000 pixels before its centre crop). None: resize it whole."""
    size = resized_size(width, height, spec)
    if not spec.crop or size[0] * size[1] <= RESIZE_BOUND * spec.crop ** 2:
        return None
    left, top = crop_box(*size, spec)
    if left < 0 or top < 0 or left + spec.crop > size[0] or top + spec.crop > size[1]:
        raise VaccbenchError(f"crop {spec.crop} at ({left}, {top}) does not fit an image of "
                             f"{size[0]}x{size[1]}")
    return left, top


def _resize_crop_pil(img: Any, spec: PreprocessSpec) -> np.ndarray:
    size = resized_size(img.width, img.height, spec)
    window = crop_window(img.width, img.height, spec)
    if window is not None:  # resize only the crop's window: Pillow's box, the same pixels
        (left, top), crop = window, spec.crop
        sx, sy = img.width / size[0], img.height / size[1]
        box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
        return np.asarray(img.resize((crop, crop), _PIL_FILTERS[spec.interpolation], box=box),
                          dtype=np.uint8)
    if size != (img.width, img.height):
        img = img.resize(size, _PIL_FILTERS[spec.interpolation])
    return _crop(np.asarray(img, dtype=np.uint8), spec)


def decode_cv2_rgb(path: str | Path) -> np.ndarray:
    """Decode with OpenCV (as the accelerator's tools do), BGR -> RGB: uint8 (H, W, 3)."""
    import cv2

    check_pixels(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except OSError as exc:
        raise ImageDecodeError(f"cannot read image file: {exc.strerror}", path) from None
    except cv2.error as exc:
        raise ImageDecodeError(f"OpenCV cannot decode this image: {str(exc).strip().splitlines()[-1]}",
                               path) from None
    if bgr is None:
        raise ImageDecodeError("OpenCV cannot decode this image (corrupt or unknown format)", path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def even_size(arr: np.ndarray) -> np.ndarray:
    """The VastStreamX host script's first step: an image whose height or width is odd is
    resized (OpenCV bilinear) to the even size below, (w // 2 * 2, h // 2 * 2); others are
    returned as they are."""
    import cv2

    height, width = arr.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return arr
    return cv2.resize(arr, (width // 2 * 2, height // 2 * 2))


def _resize_crop_cv2(arr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    import cv2

    height, width = arr.shape[:2]
    size = resized_size(width, height, spec)
    flags = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR,
             "bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4,
             "box": cv2.INTER_AREA, "hamming": cv2.INTER_AREA}
    window = crop_window(width, height, spec)
    if window is not None:
        return _window_cv2(arr, size, window, spec.crop or 0, flags[spec.interpolation])
    if size != (width, height):
        arr = cv2.resize(arr, size, interpolation=flags[spec.interpolation])
    return _crop(arr, spec)


def _window_cv2(arr: np.ndarray, size: tuple[int, int], window: tuple[int, int], crop: int,
                flag: int) -> np.ndarray:
    """The crop of an image too long to resize whole (crop_window), with OpenCV: the source
    rows and columns under the crop, with a margin for the filter, resized at the same scale.
    OpenCV has no resize of a box: the window starts where its resized pixels fall closest
    to the whole image's (on the grid: the same pixels; else within a fraction of a pixel)."""
    import cv2

    height, width = arr.shape[:2]
    scale = (width / size[0], height / size[1])
    start, stop = [], []
    for axis, (offset, extent) in enumerate(zip(window, (width, height))):
        margin = int(np.ceil(4 * max(scale[axis], 1.0))) + 1  # Lanczos4 reaches 4 pixels out
        last = max(0, int(np.floor(offset * scale[axis])) - margin)
        candidates = np.arange(max(0, last - 64 * margin), last + 1)
        off_grid = np.abs((candidates / scale[axis] + 0.5) % 1 - 0.5)
        start.append(int(candidates[::-1][np.argmin(off_grid[::-1])]))
        stop.append(min(extent, int(np.ceil((offset + crop) * scale[axis])) + margin))
    part = arr[start[1]:stop[1], start[0]:stop[0]]
    resized = cv2.resize(part, None, fx=1 / scale[0], fy=1 / scale[1], interpolation=flag)
    x, y = (int(round(window[axis] - start[axis] / scale[axis])) for axis in (0, 1))
    out = resized[y:y + crop, x:x + crop]
    if out.shape[:2] != (crop, crop):  # the window's rounding at an edge: pad like a crop would
        out = np.pad(out, ((0, crop - out.shape[0]), (0, crop - out.shape[1]), (0, 0)), mode="edge")
    return out


def _crop(arr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The crop as a view of `arr` (no copy unless the image needs padding)."""
    if not spec.crop:
        return arr
    size = spec.crop
    height, width = arr.shape[:2]
    if height < size or width < size:  # torchvision pads with zeros, then crops the centre
        pad_h, pad_w = max(size - height, 0), max(size - width, 0)
        top, left = pad_h // 2, pad_w // 2
        arr = np.pad(arr, ((top, pad_h - top), (left, pad_w - left), (0, 0)))
        height, width = arr.shape[:2]
    left, top = crop_box(width, height, spec)
    out = arr[top:top + size, left:left + size]
    if out.shape[:2] != (size, size):
        raise VaccbenchError(f"crop {size} at ({left}, {top}) does not fit an image of {width}x{height}")
    return out


def resize_crop(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize and crop an already decoded uint8 (H, W, 3) RGB image, with the spec's library."""
    if spec.library == "pil":
        from PIL import Image

        return _resize_crop_pil(Image.fromarray(rgb), spec)
    return _resize_crop_cv2(rgb, spec)


def load_crop(path: str | Path, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Decode, resize and crop one image: uint8 array (H, W, 3) in RGB order.

    With `out` (e.g. a row of a batch or of the on-disk cache) the crop is written there
    instead of into a new array, saving one copy per image.
    """
    if (spec.decoder or spec.library) == "pil":
        img = decode_rgb(path)
        crop = _resize_crop_pil(img, spec) if spec.library == "pil" else resize_crop(np.asarray(img), spec)
    else:
        decoded = decode_cv2_rgb(path)
        crop = resize_crop(even_size(decoded) if spec.even_size else decoded, spec)
    if out is None:
        return np.ascontiguousarray(crop)
    if out.shape != crop.shape:
        raise VaccbenchError(f"image gives a {crop.shape[1]}x{crop.shape[0]} crop, the batch "
                             f"holds {out.shape[1]}x{out.shape[0]} (spec without a crop and a "
                             "short-side resize gives images of different sizes)", path)
    out[...] = crop
    return out


@lru_cache(maxsize=64)
def _lookup_table(mean: tuple[float, ...], std: tuple[float, ...], scale: float) -> np.ndarray:
    """(3, 256) float32: the normalised value of every uint8 level, per RGB channel.

    Computed with the same float32 operations as torchvision's ToTensor + Normalize
    ((v / scale - mean) / std), so a table lookup gives bit-identical values, in one pass
    over the batch instead of four.
    """
    levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(scale)
    return (levels - np.asarray(mean, dtype=np.float32)[:, None]) / np.asarray(std, dtype=np.float32)[:, None]


def normalize(batch: np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W), in the spec's channel order.

    mean and std are given in RGB order whatever the channel order (as in the baselines).
    `out`, when given, is a float32 (N, 3, H, W) array (or a slice of one) to fill.
    The lookup is OpenCV's LUT, one plane at a time, written in place: 4x numpy's fancy
    indexing over the interleaved channels, and the same values.
    """
    import cv2

    n, height, width, _ = batch.shape
    if out is None:
        out = np.empty((n, 3, height, width), dtype=np.float32)
    table = _lookup_table(spec.mean, spec.std, float(spec.pixel_scale))
    for i in range(n):
        planes = cv2.split(np.ascontiguousarray(batch[i]))
        for channel in range(3):
            target = out[i, 2 - channel if spec.channel_order == "BGR" else channel]
            if target.flags.c_contiguous:
                written = cv2.LUT(planes[channel], table[channel], dst=target)
                if written is target or np.shares_memory(written, target):
                    continue
            target[...] = cv2.LUT(planes[channel], table[channel])
    return out


def preprocess(path: str | Path, spec: PreprocessSpec) -> np.ndarray:
    """One image -> float32 (3, H, W): the model's input."""
    return normalize(load_crop(path, spec)[None], spec)[0]


__all__ = ["PreprocessSpec", "load_crop", "even_size", "check_pixels", "MAX_PIXELS", "resize_crop", "normalize", "preprocess", "decode_rgb",
           "decode_cv2_rgb", "resized_size", "crop_box", "IMAGENET_MEAN", "IMAGENET_STD"]
