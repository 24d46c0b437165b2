"""Parity: every architecture of the baselines, exported to ONNX and run on onnxruntime fp32,
gives the same logits as PyTorch (max abs diff <= 1e-3) and the same top-5 classes.

Random init with a fixed seed (no pretrained weights exist here for most of them). A random
net in eval mode has BatchNorm statistics (0, 1) that fit nothing: its logits vanish or
explode (timm's inception_v3 reaches 1e12), so the comparison would say little. Each BN gets
random affine parameters and statistics measured on random input (one train-mode pass),
which keeps the logits O(1) and makes BN folding and RepVGG's branch fusion non-trivial.
The largest graphs (RepVGG-B2/B3, Inception v3: 100-450 MB of weights) are marked `slow`;
CI still runs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnxruntime")

from pytest_vaccbench.backends.onnxruntime import open_session, run_session  # noqa: E402
from pytest_vaccbench.baselines import ModelEntry, load_families  # noqa: E402
from pytest_vaccbench.export import ExportOptions, export_module, onnx_file_name  # noqa: E402
from pytest_vaccbench.metrics import topk  # noqa: E402
from pytest_vaccbench.models import create_architecture, to_deploy_form  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The fast tier exports one small model of each kind (depthwise, RepVGG deploy form); every
# other architecture is in the slow tier.
FAST = {"mobilenetv2_050", "repvgg_a0"}


def architectures() -> list[ModelEntry]:
    """One entry per distinct buildable architecture in the baselines.

    timm's pretrained tags (inception_v3.tf_in1k, ...) select weights, not a different
    graph, so they count once with their base name.
    """
    seen: dict[tuple, ModelEntry] = {}
    for family in load_families(ROOT / "baselines"):
        for entry in family.models.values():
            if entry.arch and entry.library in ("timm", "torchvision"):
                key = (entry.library, entry.arch.split(".")[0], entry.num_classes, entry.deploy,
                       entry.input_size)
                seen.setdefault(key, entry)
    return [seen[k] for k in sorted(seen)]


def seeded_model(entry: ModelEntry, seed: int = 0):
    """The entry's architecture at random init with meaningful BN statistics, deploy form."""
    torch.manual_seed(seed)
    model = create_architecture(entry)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration pass
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, 0.0, 0.1)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, entry.input_size, entry.input_size))
    model.eval()
    return to_deploy_form(model, entry)


def _param(entry: ModelEntry):
    arch = entry.arch.split(".")[0]
    marks = [] if arch in FAST else [pytest.mark.slow]
    return pytest.param(entry, id=f"{entry.library}-{arch}", marks=marks)


def test_every_seed_architecture_is_covered():
    """The list below the parity test is derived from the baselines, not typed in."""
    arches = {(e.library, e.arch.split(".")[0]) for e in architectures()}
    assert ("timm", "repvgg_b3g4") in arches and ("torchvision", "inception_v3") in arches
    assert ("timm", "efficientnet_lite0") in arches and ("timm", "ghostnet_130") in arches
    assert len(arches) == len(architectures()) == 20


@pytest.mark.parametrize("entry", [_param(e) for e in architectures()])
def test_onnxruntime_fp32_matches_pytorch(entry: ModelEntry, tmp_path: Path) -> None:
    model = seeded_model(entry)
    size = entry.input_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(images).numpy()
    path = export_module(model, tmp_path / onnx_file_name(entry.arch, size),
                         ExportOptions(size, dynamic_batch=True))
    got = run_session(open_session(path, entry, ["CPUExecutionProvider"], threads=2),
                      [images.numpy()])
    assert want.shape == got.shape == (2, entry.num_classes)
    # The logits must be spread out, or identical top-5 would prove nothing.
    assert np.ptp(np.sort(want, axis=1)[:, -5:], axis=1).min() > 1e-2, "degenerate random model"
    assert np.abs(got - want).max() <= 1e-3
    np.testing.assert_array_equal(topk(got, 5), topk(want, 5))
