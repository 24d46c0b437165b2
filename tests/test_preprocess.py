"""Preprocessing is checked against torchvision.transforms, the recipe the READMEs state."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_vaccbench.errors import ImageDecodeError
from pytest_vaccbench.preprocess import PreprocessSpec, load_crop, preprocess, resized_size

torch = pytest.importorskip("torch")
T = pytest.importorskip("torchvision.transforms")

RECIPES = {
    # the seed READMEs' transforms lists, and the efficientnet_lite0 baseline's
    "mobilenet_v2": (PreprocessSpec(resize=256, crop=224), dict(resize=256, crop=224)),
    "inception_v3": (PreprocessSpec(resize=342, crop=299, mean=(0.5,) * 3, std=(0.5,) * 3),
                     dict(resize=342, crop=299, mean=[0.5] * 3, std=[0.5] * 3)),
    "efficientnet_lite": (PreprocessSpec(resize=256, crop=224, interpolation="bicubic",
                                         mean=(0.5,) * 3, std=(0.5,) * 3),
                          dict(resize=256, crop=224, interpolation="bicubic", mean=[0.5] * 3,
                               std=[0.5] * 3)),
    "square": (PreprocessSpec(resize=256, crop=224, resize_mode="square"),
               dict(resize=(256, 256), crop=224)),
}


def torchvision_tensor(path: Path, resize, crop, mean=(0.485, 0.456, 0.406),
                       std=(0.229, 0.224, 0.225), interpolation="bilinear") -> np.ndarray:
    mode = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}
    transform = T.Compose([T.Resize(resize, interpolation=mode[interpolation]), T.CenterCrop(crop),
                           T.ToTensor(), T.Normalize(mean=mean, std=std)])
    with Image.open(path) as img:
        return transform(img.convert("RGB")).numpy()


def _sample_images(shared_data: Path, n: int) -> list[Path]:
    images = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))
    return images[:: max(1, len(images) // n)][:n]


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_matches_torchvision_on_real_images(shared_data: Path, recipe: str) -> None:
    spec, kwargs = RECIPES[recipe]
    images = _sample_images(shared_data, 12) + sorted(
        (shared_data / "ilsvrc2012-val-subset" / "images").glob("*.JPEG"))[:3]
    for path in images:
        ours = preprocess(path, spec)
        theirs = torchvision_tensor(path, **kwargs)
        assert ours.shape == theirs.shape, path
        assert np.abs(ours - theirs).max() <= 1e-6, path


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _photo(size=(300, 200)) -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    rgb = np.stack([x % 256, y % 256, (x + y) % 256], -1) + rng.integers(0, 20, (size[1], size[0], 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_grayscale_cmyk_rgba_palette_become_rgb_like_torchvision(tmp_path: Path, mode: str) -> None:
    fmt = "PNG" if mode in ("RGBA", "P") else "JPEG"
    path = _save(_photo().convert(mode), tmp_path / f"img.{fmt.lower()}", format=fmt)
    spec, kwargs = RECIPES["mobilenet_v2"]
    ours = preprocess(path, spec)
    assert ours.shape == (3, 224, 224)
    assert np.abs(ours - torchvision_tensor(path, **kwargs)).max() <= 1e-6


def test_image_smaller_than_crop_is_padded_like_torchvision(tmp_path: Path) -> None:
    path = _save(_photo((180, 120)), tmp_path / "small.png")
    spec = PreprocessSpec(resize=100, crop=224)
    ours = preprocess(path, spec)
    assert np.abs(ours - torchvision_tensor(path, resize=100, crop=224)).max() <= 1e-6


def test_resize_rounding_follows_torchvision() -> None:
    spec = PreprocessSpec(resize=256, crop=224)
    # torchvision: long side = int(256 * long / short), truncated
    assert resized_size(500, 375, spec) == (341, 256)
    assert resized_size(375, 500, spec) == (256, 341)
    assert resized_size(227, 227, spec) == (256, 256)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ILSVRC2012_val_00000001.JPEG"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    with pytest.raises(ImageDecodeError) as info:
        load_crop(path, PreprocessSpec(resize=256, crop=224))
    assert str(path) in str(info.value)
    assert "corrupt" in str(info.value) or "cannot decode" in str(info.value)


def test_truncated_jpeg_names_the_file(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _photo((400, 300)).save(buffer, format="JPEG", quality=95)
    path = tmp_path / "truncated.JPEG"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    for library in ("pil", "cv2"):
        with pytest.raises(ImageDecodeError) as info:
            load_crop(path, PreprocessSpec(resize=256, crop=224, library=library))
        assert str(path) in str(info.value)


def test_cv2_library_decodes_the_same_pixels_as_pil_before_resizing(tmp_path: Path) -> None:
    path = _save(_photo(), tmp_path / "lossless.png")
    no_resize = dict(resize=200, crop=200, resize_mode="short-side")
    pil = load_crop(path, PreprocessSpec(**no_resize, library="pil"))
    cv2 = load_crop(path, PreprocessSpec(**no_resize, library="cv2"))
    assert np.array_equal(pil, cv2)
