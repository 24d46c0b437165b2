"""The `vaccbench` console script's own subcommands (the others are tested with their stage)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from pytest_vaccbench.cli import main


def test_backends_lists_the_registry_with_precisions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for line in ("reference    pytest_vaccbench.backends.reference:ReferenceBackend",
                 "vamp         pytest_vaccbench.backends.vamp:VampBackend"):
        assert line in out
    assert "int8-kl_divergence" in out


def test_dataset_describes_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for wnid in ("n01440764", "n01443537"):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{wnid}_x.JPEG")
    assert main(["dataset", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "layout:      wnid-names" in out and "images:      2 of 2" in out and "classes:     2" in out


def test_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaccbench dataset: error: ") and "does not exist" in err


def test_models_lists_each_models_runs_per_dataset_with_n(capsys: pytest.CaptureFixture[str]) -> None:
    baselines = str(Path(__file__).parents[1] / "baselines")
    assert main(["models", "--baselines", baselines, "timm-efficientnet_lite0", "repvgg/*A0"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"efficientnet_lite ({baselines}/efficientnet_lite.yaml)",
        "  timm-efficientnet_lite0  (published top1 / top5: 75.1 / -)",
        "    skimage-photos: reference/fp32 (n=5)",
        "    ilsvrc2012-val-subset: reference/fp32 (n=650), onnxruntime/fp32 (n=650), "
        "onnxruntime/fp16 (n=650), onnxruntime/int8-percentile (n=500)",
        "    imagenet-sample: reference/fp32 (n=500), onnxruntime/fp32 (n=500), onnxruntime/fp16 (n=500)",
        f"repvgg ({baselines}/repvgg.yaml)",
        "  official-RepVGG-A0  (published top1 / top5: 72.41 / 90.5)",
        "    imagenet-val: vamp/fp16 (n not recorded), vamp/int8-percentile (n not recorded, broken)"]
    assert main(["models", "--baselines", baselines, "--dataset", "imagenet-sample", "*mobilenet*"]) == 0
    out = capsys.readouterr().out
    assert "ghostnet" not in out and "    imagenet-sample: reference/int8 (n=500)" in out


TOP_ROOMS = {"plugin", "docgen.py"}  # the pytest plugin (a package) and doc tools


def test_stages_know_nothing_of_the_command_line_or_pytest() -> None:
    """The CLI and the plugin import the stages, never the other way round."""
    package = Path(__file__).parents[1] / "pytest_vaccbench"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if parts[0] in TOP_ROOMS or "cli" in parts:
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1 and (
                    words[1].split(".")[0] in ("argparse", "pytest", "_pytest")
                    or words[1].lstrip(".") in ("cli",) or words[1].startswith(("pytest_vaccbench.cli", ".cli", "..cli"))):
                offenders.append(f"{path.relative_to(package)}: {line.strip()}")
    assert not offenders, offenders
