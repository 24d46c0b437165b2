"""Real weights on real ImageNet images (../shared/data; skipped when absent).

1. The suite's per-image predictions equal an independent timm + torchvision-transforms
   evaluation of the same recipe, image by image.
2. The project's own suite gates mobilenetv2 and efficientnet_lite0 on both real datasets
   against the results recorded in baselines/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from vaccbench_fake import summary_table

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
T = pytest.importorskip("torchvision.transforms")

from pytest_vaccbench.backends import RunOptions  # noqa: E402
from pytest_vaccbench.baselines import load_family  # noqa: E402
from pytest_vaccbench.dataset import resolve  # noqa: E402
from pytest_vaccbench.run import Case, evaluate  # noqa: E402

pytestmark = pytest.mark.slow  # real models on the shared images: the slow tier

ROOT = Path(__file__).resolve().parents[1]


def independent_top5(paths: list[Path], weights: Path) -> np.ndarray:
    """timm's mobilenetv2_100 + the README's torchvision.transforms list, written out plainly."""
    from PIL import Image

    model = timm.create_model("mobilenetv2_100", pretrained=False)
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                           T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), 50):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start:start + 50]])
            out.append(model(batch).topk(5, dim=1).indices.numpy())
    return np.concatenate(out)


def test_mobilenetv2_matches_independent_timm_torchvision_image_by_image(
        shared_data: Path, tmp_path: Path) -> None:
    entry = load_family(ROOT / "baselines" / "mobilenet_v2.yaml").models["local-mobilenetv2_100-tvq"]
    dataset = resolve(str(shared_data / "imagenet-sample"))
    options = RunOptions(weights_dir=shared_data / "weights", cache_dir=tmp_path, batch_size=32)
    result = evaluate(Case(entry, "reference", "fp32"), dataset, options)
    ours = np.load(result.predictions)["top5"]
    theirs = independent_top5([s.path for s in dataset.samples], shared_data / "weights" / entry.weights.file)
    assert ours.shape == theirs.shape == (500, 5)
    assert np.array_equal(ours[:, 0], theirs[:, 0]), "top-1 differs on some images"
    assert all(set(a) == set(b) for a, b in zip(ours, theirs)), "top-5 sets differ on some images"
    labels = np.array(dataset.labels)
    assert result.correct1 == int((theirs[:, 0] == labels).sum())
    assert result.correct5 == int((theirs == labels[:, None]).any(axis=1).sum())


@pytest.mark.parametrize("dataset", ["ilsvrc2012-val-subset", "imagenet-sample"])
def test_suite_gates_real_models_on_real_data(pytester: pytest.Pytester, shared_data: Path,
                                              dataset: str) -> None:
    result = pytester.runpytest(
        str(ROOT / "suites" / "default.yaml"), "-p", "no:cacheprovider", "-k",
        "timm-efficientnet_lite0 or local-mobilenetv2_100-tvq", f"--dataset={shared_data / dataset}",
        f"--weights-dir={shared_data / 'weights'}")
    result.assert_outcomes(passed=2)
    table = summary_table(result.stdout.lines)
    assert {name: cells[-1] for name, cells in table.items()} == {
        "efficientnet_lite/timm-efficientnet_lite0 reference/fp32": "passed",
        "mobilenet_v2/local-mobilenetv2_100-tvq reference/fp32": "passed"}
