"""Real predictions written as the device hosts write them, scored and gated: this tool's own
efficientnet_lite0 predictions on the 650 shared ImageNet val images (../shared/data) as a
result.txt in both line formats and as vamp output files, each scored by `vaccbench score`
(and `pytest --results`) to the suite's recorded numbers exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import result_files as rf

pytest.importorskip("timm")

from pytest_vaccbench.backends import RunOptions, get_backend  # noqa: E402
from pytest_vaccbench.baselines import load_family  # noqa: E402
from pytest_vaccbench.cli import main  # noqa: E402
from pytest_vaccbench.dataset import resolve  # noqa: E402
from pytest_vaccbench.metrics import topk  # noqa: E402
from pytest_vaccbench.resultfiles import write_result_txt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUBSET = "ilsvrc2012-val-subset"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reference backend's fp32 scores of efficientnet_lite0 on the 650 images, the
    baseline's figures for them, and a folder for the result files."""
    entry = load_family(ROOT / "baselines" / "efficientnet_lite.yaml").models["timm-efficientnet_lite0"]
    data = resolve(str(shared_data / SUBSET))
    work = tmp_path_factory.mktemp("score-real")
    options = RunOptions(weights_dir=shared_data / "weights", cache_dir=work / "cache", batch_size=32)
    scores = get_backend("reference").scores(entry, "fp32", data, options)
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities = exp / exp.sum(axis=1, keepdims=True)
    return {"data": data, "probabilities": probabilities, "top5": topk(scores, 5), "work": work,
            "labels": shared_data / SUBSET / "val_label.txt",
            "expected": entry.expected[SUBSET]["reference/fp32"]}


def score(real: dict, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, dict]:
    report = real["work"] / f"report-{len(list(real['work'].glob('report-*')))}.json"
    code = main(["score", *args, "--model", "efficientnet_lite/timm-efficientnet_lite0", "--run",
                 "reference/fp32", "--dataset-name", SUBSET, "--baselines", str(ROOT / "baselines"),
                 "--vaccbench-cache", str(real["work"] / "cache"), "--vaccbench-json", str(report)])
    out = capsys.readouterr().out
    (record,) = json.loads(report.read_text())["tests"]
    return code, out, record


def measured(real: dict) -> str:
    e = real["expected"]
    return f"measured: top1 {e['top1']:.3f} top5 {e['top5']:.3f} (n=650"


def test_relay_result_txt_in_class_folders_scores_the_suites_numbers(
        real: dict, capsys: pytest.CaptureFixture[str]) -> None:
    data, top5 = real["data"], real["top5"]
    labels = [s.label for s in data.samples]
    path = real["work"] / "result.txt"
    write_result_txt(path, rf.folder_paths([s.path.name for s in data.samples], labels), top5,
                     np.take_along_axis(real["probabilities"], top5, axis=1))
    code, out, record = score(real, capsys, str(path))
    assert code == 0, out
    assert measured(real) in out and record["status"] == "passed"
    assert (record["n"], record["top1"]) == (650, pytest.approx(real["expected"]["top1"], abs=5e-4))
    zoo1, zoo5, groups = rf.eval_topk(path)  # the zoo's scorer, re-implemented independently
    assert f"zoo scorer (eval_topk.py): top1 {zoo1:.3f} top5 {zoo5:.3f} ({groups} groups" in out
    assert record["scored_from"]["zoo_scorer"]["top1"] == round(zoo1, 3)


def test_plain_result_txt_with_the_label_file_is_the_suites_run(
        real: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """Real image paths and val_label.txt: the same images, so the same fingerprint as the
    suite's run, and the gate compares exactly (no sampling allowance)."""
    data, top5 = real["data"], real["top5"]
    path = real["work"] / "plain.txt"
    write_result_txt(path, [str(s.path) for s in data.samples], top5,
                     np.take_along_axis(real["probabilities"], top5, axis=1), relay=False)
    code, out, record = score(real, capsys, str(path), "--labels", str(real["labels"]))
    assert code == 0, out
    assert measured(real) in out
    assert record["fingerprint"] == real["expected"]["fingerprint"] == data.fingerprint()
    assert "reference/fp32 build within the allowed difference (n=650)" in out and "sampling" not in out
    assert "zoo scorer (eval_topk.py): no number: its scorer stops with KeyError 'images'" in out


def test_vamp_outputs_score_the_suites_numbers(real: dict, capsys: pytest.CaptureFixture[str]) -> None:
    data = real["data"]
    folder, datalist = real["work"] / "vamp" / "output", real["work"] / "vamp" / "npz_datalist.txt"
    folder.mkdir(parents=True)
    lines = []
    for i, (sample, probabilities) in enumerate(zip(data.samples, real["probabilities"])):
        np.savez(folder / f"output_{i:06d}.npz", output_0=probabilities[None].astype(np.float32))
        lines.append(f"/data/npz/{rf.WNIDS[sample.label]}/{sample.path.stem}.npz")
    datalist.write_text("\n".join(lines) + "\n")
    code, out, record = score(real, capsys, str(folder), str(datalist), "--labels", str(real["labels"]))
    assert code == 0, out
    assert measured(real) in out and record["fingerprint"] == data.fingerprint()


def test_pytest_results_gates_the_same_files(real: dict, pytester: pytest.Pytester) -> None:
    data, top5 = real["data"], real["top5"]
    run = real["work"] / "nightly" / "efficientnet_lite" / "timm-efficientnet_lite0" / "reference-fp32"
    run.mkdir(parents=True)
    write_result_txt(run / "result.txt", [str(s.path) for s in data.samples], top5,
                     np.take_along_axis(real["probabilities"], top5, axis=1))
    report = real["work"] / "nightly.json"
    done = pytester.runpytest(str(ROOT / "suites"), "-p", "no:cacheprovider", "-k", "efficientnet_lite0",
                              f"--results={real['work'] / 'nightly'}", f"--dataset-name={SUBSET}",
                              f"--labels={real['labels']}", "--vaccbench-strict",
                              f"--vaccbench-cache={real['work'] / 'cache'}", f"--vaccbench-json={report}")
    assert done.ret == 0, done.stdout.str()
    (record,) = json.loads(report.read_text())["tests"]
    assert record["status"] == "passed" and record["fingerprint"] == real["expected"]["fingerprint"]
    assert round(record["top1"], 3) == real["expected"]["top1"]
    assert round(record["top5"], 3) == real["expected"]["top5"]
