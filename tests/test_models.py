"""Model building: deploy form, weight file layouts, and clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_vaccbench.baselines import WeightsSpec, load_family
from pytest_vaccbench.errors import BackendError

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from pytest_vaccbench.models import build_model, create_architecture  # noqa: E402

BASELINES = Path(__file__).resolve().parents[1] / "baselines"
REPVGG = load_family(BASELINES / "repvgg.yaml").models
FAST_REPVGG = {"official-RepVGG-A0"}  # the rest (grouped ones included): the slow tier
MOBILENET = load_family(BASELINES / "mobilenet_v2.yaml").models


def _randomise_batchnorm(model) -> None:
    """Random init leaves BN at mean 0 / var 1: give every BN real statistics to fold, with a
    gain below 1 so that activations stay near unit scale through 20+ summed blocks."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) + 1.0)
            module.weight.data.copy_(torch.rand(n, generator=gen) * 0.3 + 0.3)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


@pytest.mark.parametrize("key", [k if k in FAST_REPVGG else pytest.param(k, marks=pytest.mark.slow)
                                 for k in REPVGG])
def test_repvgg_deploy_form_gives_the_training_form_logits(key: str) -> None:
    entry = REPVGG[key]
    if entry.arch is None:
        pytest.skip(f"{key}: no timm or torchvision architecture exists for this README row")
    from timm.utils.model import reparameterize_model

    torch.manual_seed(0)
    train = create_architecture(entry).eval()
    _randomise_batchnorm(train)
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        before = train(x)
    deploy = reparameterize_model(train)
    convs = [m for m in deploy.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.kernel_size == (3, 3) for m in convs if m.in_channels > 3 or m.stride == (2, 2))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())
    with torch.inference_mode():
        after = deploy(x)
    assert (before - after).abs().max().item() < 1e-4


def test_build_model_evaluates_repvgg_fused() -> None:
    model = build_model(REPVGG["official-RepVGG-A0"], None)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def _mobilenet(tmp_path: Path):
    entry = MOBILENET["timm-mobilenetv2_100"]
    torch.manual_seed(0)
    return entry, create_architecture(entry).eval()


@pytest.mark.parametrize("layout", ["state_dict", *(pytest.param(layout, marks=pytest.mark.slow) for layout in (
    "checkpoint-state_dict", "checkpoint-model", "module-prefix", "torchscript", "by-order"))])
def test_weight_file_layouts_load(tmp_path: Path, layout: str) -> None:
    entry, source = _mobilenet(tmp_path)
    state = source.state_dict()
    path = tmp_path / "w.pth"
    if layout == "state_dict":
        torch.save(state, path)
    elif layout == "checkpoint-state_dict":
        torch.save({"epoch": 3, "state_dict": state}, path)
    elif layout == "checkpoint-model":
        torch.save({"model": state, "optimizer": {}}, path)
    elif layout == "module-prefix":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif layout == "torchscript":
        torch.jit.trace(source, torch.randn(1, 3, 64, 64)).save(str(path))
    else:  # other key names, same order: loads only with key_map by-order
        torch.save({f"t{i}": v for i, v in enumerate(state.values())}, path)
        entry = dataclasses.replace(entry, weights=WeightsSpec(key_map="by-order"))
    model = build_model(entry, path)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), source(x))


def test_mismatched_weights_name_the_file(tmp_path: Path) -> None:
    entry, _ = _mobilenet(tmp_path)
    other = create_architecture(MOBILENET["ppcls-MobileNetV2_x0_5"])
    path = tmp_path / "wrong.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(BackendError) as info:
        build_model(entry, path)
    message = str(info.value)
    assert message.startswith(f"{path}: weights do not match timm mobilenetv2_100")
    assert "conv_stem.weight" in message and len(message) < 600


def test_unreadable_weights_name_the_file(tmp_path: Path) -> None:
    entry, _ = _mobilenet(tmp_path)
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendError, match=f"{path}: cannot read weights"):
        build_model(entry, path)


def test_unknown_architecture_names_the_baseline_line() -> None:
    entry = dataclasses.replace(MOBILENET["timm-mobilenetv2_100"], arch="mobilenetv9_300")
    with pytest.raises(BackendError, match="timm has no architecture 'mobilenetv9_300'.*mobilenet_v2.yaml:"):
        create_architecture(entry)
    entry = dataclasses.replace(MOBILENET["torchvision-mobilenet_v2"], arch="mobilenet_v9")
    with pytest.raises(BackendError, match="torchvision has no architecture 'mobilenet_v9'"):
        create_architecture(entry)
