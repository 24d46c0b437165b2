"""Reports of a session: terminal table, JSON with per-image predictions, JUnit properties,
the one-file HTML report (rendered in a real headless Chromium), and the SQLite history with
`vaccbench trend`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from vaccbench_fake import LABELS, N_IMAGES, FakeProject

from pytest_vaccbench.baselines import update_file
from pytest_vaccbench.cli import main
from pytest_vaccbench.report import Row, summary_lines
from pytest_vaccbench.run import Result

pytest.importorskip("skimage", reason="the built-in skimage-photos dataset needs scikit-image")

# Planned outcomes (5 images): lite0 60.0 vs 60.0 expected (pass), mobilenetv2_100 100.0 vs
# 40.0 (stale), tvq 20.0 vs 60.0 (regression), keras raises (no result), torchvision: 80.0
# with no baseline for the fake backend (skipped).
PLAN = {"timm-efficientnet_lite0": {"correct": 3}, "timm-mobilenetv2_100": {"correct": 5},
        "local-mobilenetv2_100-tvq": {"correct": 1}, "keras-mobilenetv2": {"raise": "no device"},
        "torchvision-mobilenet_v2": {"correct": 4}}
SEEDED = {("efficientnet_lite", "timm-efficientnet_lite0"): 60.0,
          ("mobilenet_v2", "timm-mobilenetv2_100"): 40.0,
          ("mobilenet_v2", "local-mobilenetv2_100-tvq"): 60.0,
          ("mobilenet_v2", "keras-mobilenetv2"): 60.0}


def _seeded(project: FakeProject) -> FakeProject:
    for (family, key), top1 in SEEDED.items():
        update_file(project.baselines / f"{family}.yaml",
                    [(key, "skimage-photos", "fake/fp32", {"top1": top1, "top5": 100.0, "n": N_IMAGES})])
    project.plan(PLAN)
    return project


@pytest.fixture
def project(pytester: pytest.Pytester) -> FakeProject:
    return _seeded(FakeProject(pytester.path, pytester))


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeProject, pytest.RunResult]:
    """One session writing every report, shared by the tests that read them (read-only)."""
    project = _seeded(FakeProject(tmp_path_factory.mktemp("reported")))
    (project.path / "out").mkdir()
    result = project.run("--vaccbench-json=out/report.json", "--vaccbench-html=out/report.html",
                         "--junitxml=out/junit.xml", "--vaccbench-history=out/history.db")
    result.assert_outcomes(passed=1, failed=3, skipped=1)
    return project, result


def test_terminal_summary_has_one_row_per_test(reported):
    _, result = reported
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "vaccbench accuracy on skimage-photos" in line)
    table = lines[start + 1:start + 8]
    assert table[0].split() == ["model", "run", "top1", "expect", "delta", "tol", "top5", "delta5",
                                "n", "status"]
    assert [line.split() for line in table[2:]] == [
        ["efficientnet_lite/timm-efficientnet_lite0", "fake/fp32", "60.000", "60.000", "+0.000",
         "0.50", "100.000", "+0.000", "5", "passed"],
        ["mobilenet_v2/torchvision-mobilenet_v2", "fake/fp32", *["-"] * 7, "skipped"],
        ["mobilenet_v2/timm-mobilenetv2_100", "fake/fp32", "100.000", "40.000", "+60.000", "0.50",
         "100.000", "+0.000", "5", "stale"],
        ["mobilenet_v2/keras-mobilenetv2", "fake/fp32", *["-"] * 7, "error"],
        ["mobilenet_v2/local-mobilenetv2_100-tvq", "fake/fp32", "20.000", "60.000", "-40.000",
         "0.50", "100.000", "+0.000", "5", "FAILED"]]
    assert max(len(line) for line in table) <= 120


def _result(family: str, model: str, backend: str, precision: str, correct1: int) -> Result:
    return Result(family, model, backend, precision, "imagenet-val", "f" * 16, 50000, correct1,
                  45000, 1.0, "/nonexistent.npz", "/b.yaml")


def test_summary_stays_within_120_columns_and_shortens_long_names():
    long = "ppcls-MobileNetV2_x0_25_with_a_very_long_suffix_from_some_zoo_export"
    rows = [Row("s.yaml::a", "passed", _result("mobilenet_v2", long, "onnxruntime",
                                                  "int8-kl_divergence", 35000),
                {"top1": 70.0, "top5": 90.0, "tol1": 0.5, "tol5": 0.5}),
            Row("s.yaml::mobilenet_v2/timm-x[vamp-int8-percentile]", "failed")]
    lines = summary_lines(rows)
    assert max(map(len, lines)) <= 120
    model = lines[2].split()[0]
    assert "~" in model and model.startswith("mobilenet_v2/p") and model.endswith("zoo_export")
    assert lines[2].split()[1:5] == ["onnxruntime/int8-kl_divergence", "70.000", "70.000", "+0.000"]
    assert lines[3].split()[:2] == ["mobilenet_v2/timm-x", "vamp/int8-percentile"]


def test_json_report_with_per_image_predictions_beside_it(reported):
    project, _ = reported
    document = json.loads((project.path / "out" / "report.json").read_text())
    tests = {t["nodeid"].split("::")[1]: t for t in document["tests"]}
    assert {k: t["status"] for k, t in tests.items()} == {  # every selected test, skipped too
        "efficientnet_lite/timm-efficientnet_lite0[fake-fp32]": "passed",
        "mobilenet_v2/timm-mobilenetv2_100[fake-fp32]": "stale",
        "mobilenet_v2/local-mobilenetv2_100-tvq[fake-fp32]": "FAILED",
        "mobilenet_v2/keras-mobilenetv2[fake-fp32]": "error",
        "mobilenet_v2/torchvision-mobilenet_v2[fake-fp32]": "skipped"}
    # with the reason, and the gate's details that JUnit has too
    assert "RuntimeError: no device" in tests["mobilenet_v2/keras-mobilenetv2[fake-fp32]"]["reason"]
    assert tests["mobilenet_v2/torchvision-mobilenet_v2[fake-fp32]"]["reason"].startswith(
        "no baseline for torchvision-mobilenet_v2 on dataset 'skimage-photos'")
    stale = tests["mobilenet_v2/timm-mobilenetv2_100[fake-fp32]"]
    assert stale["gate"]["verdict"] == "stale" and stale["gate"]["allowed"] == {"top1": 0.5, "top5": 0.5}
    assert stale["gate"]["top1_interval"][1] == 100.0
    assert document["session"]["exitstatus"] == 1
    for name, plan in PLAN.items():
        record = next((t for k, t in tests.items() if f"/{name}[" in k), None)
        if record is None or "correct" not in plan or record["status"] == "skipped":
            continue
        assert (record["n"], record["correct1"], record["top1"]) == \
            (N_IMAGES, plan["correct"], 100.0 * plan["correct"] / N_IMAGES)
        sidecar = project.path / "out" / record["predictions"]
        assert sidecar.parent.name == "report.predictions" and sidecar.is_file()
        with np.load(sidecar) as saved:  # recount from the saved per-image predictions
            assert saved["labels"].tolist() == LABELS
            assert saved["top5"].shape == (N_IMAGES, 5)
            assert int((saved["top5"][:, 0] == saved["labels"]).sum()) == plan["correct"]
            assert saved["files"].tolist()[0] == "camera.png"
    assert tests["mobilenet_v2/keras-mobilenetv2[fake-fp32]"].get("top1") is None
    assert tests["mobilenet_v2/timm-mobilenetv2_100[fake-fp32]"]["delta_top1"] == pytest.approx(60.0)


def test_junit_xml_carries_measured_and_expected_values(reported):
    project, _ = reported
    tree = ET.parse(project.path / "out" / "junit.xml")
    props = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in tree.iter("testcase")}
    tvq = props["mobilenet_v2/local-mobilenetv2_100-tvq[fake-fp32]"]
    assert {k: tvq[k] for k in ("model", "backend", "precision", "dataset", "n", "top1", "top5",
                                "expected_top1", "delta_top1", "tolerance_top1")} == {
        "model": "mobilenet_v2/local-mobilenetv2_100-tvq", "backend": "fake", "precision": "fp32",
        "dataset": "skimage-photos", "n": "5", "top1": "20.0", "top5": "100.0",
        "expected_top1": "60.0", "delta_top1": "-40.0", "tolerance_top1": "0.5"}
    assert json.loads(tvq["vaccbench"])["result"]["correct1"] == 1
    assert "top1" not in props["mobilenet_v2/keras-mobilenetv2[fake-fp32]"]  # no result, no numbers


def test_html_report_is_one_self_contained_file(reported):
    project, _ = reported
    page = (project.path / "out" / "report.html").read_text()
    for outside in ("http:", "https:", "<script", "<link", "src=", "@import", "url("):
        assert outside not in page
    assert page.count('<tr class="') == 5
    assert '<tr class="skipped">' in page and "no baseline for torchvision-mobilenet_v2" in page
    assert page.count('class="band"') == 3  # every test with a result and a baseline
    assert page.count('<circle class="delta passed"') == 1
    assert page.count('class="delta FAILED"') == 1 and page.count('class="delta stale"') == 1
    assert "error: no result" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--hide-scrollbars"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install "
                                             "chromium chromium-driver; .ci/run installs it)")
def test_html_report_renders_in_headless_chromium(reported, tmp_path):
    from PIL import Image

    project, _ = reported
    page = (project.path / "out" / "report.html").as_uri()
    flags = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert dom.count('<tr class="') == 5 and '<svg id="delta-plot"' in dom
    assert "mobilenet_v2/local-mobilenetv2_100-tvq" in dom

    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1100,700", f"--screenshot={shot}", page],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    red = (r > 180) & (g < 80) & (b < 80)  # failing markers (#c62828)
    green = (g > 100) & (r < 80) & (b < 80)  # the passing marker (#2e7d32)
    band = (abs(r - 0xcf) < 6) & (abs(g - 0xe8) < 6) & (abs(b - 0xd0) < 6)  # tolerance bands
    assert red.sum() > 100 and green.sum() > 30 and band.sum() > 500
    plot_rows = np.nonzero(band.any(axis=1))[0]
    assert plot_rows.min() < np.nonzero((r < 60) & (g < 60) & (b < 60))[0].max()  # plot, then table


def test_history_appends_every_session_and_trend_prints_it(reported, project, capsys):
    db = project.path / "history.db"
    shutil.copy(reported[0].path / "out" / "history.db", db)  # the first session
    project.plan({**PLAN, "local-mobilenetv2_100-tvq": {"correct": 3}})
    project.run(f"--vaccbench-history={db}").assert_outcomes(passed=2, failed=2, skipped=1)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)
        assert con.execute("SELECT count(*) FROM results").fetchone() == (10,)
    capsys.readouterr()  # the sessions' own output

    assert main(["trend", str(db), "--model", "*tvq"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "mobilenet_v2/local-mobilenetv2_100-tvq  fake/fp32  on skimage-photos"
    assert len(out) == 3
    assert out[1].split()[2:] == ["top1", "20.000", "top5", "100.000", "n=5", "FAILED"]
    assert out[2].split()[2:] == ["top1", "60.000", "top5", "100.000", "n=5", "passed", "+40.000"]

    assert main(["trend", str(db), "--model", "no-such-model"]) == 1
    assert main(["trend", str(project.path / "missing.db")]) == 2
    assert "history database does not exist" in capsys.readouterr().err


def test_trend_plots_a_png(reported, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the `plot` extra)")
    from PIL import Image

    project, _ = reported
    capsys.readouterr()
    out = tmp_path / "trend.png"
    assert main(["trend", str(project.path / "out" / "history.db"), "--png", str(out)]) == 0
    assert f"plot: {out}" in capsys.readouterr().out
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[:2] == (450, 900)
    assert (image.std(axis=2) > 40).sum() > 50  # coloured lines, not a blank canvas


def test_trend_without_matplotlib_says_how_to_install_it(reported, tmp_path, capsys, monkeypatch):
    import sys

    project, _ = reported
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["trend", str(project.path / "out" / "history.db"), "--png", str(tmp_path / "t.png")]) == 2
    assert "pip install 'pytest-vaccbench[plot]'" in capsys.readouterr().err


def test_report_paths_in_missing_folders_are_usage_errors(project: FakeProject):
    result = project.run("--vaccbench-html=nowhere/report.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vaccbench-html=nowhere/report.html: folder *nowhere does not exist*"])


def test_an_unwritable_history_fails_the_session_with_a_message(project: FakeProject):
    (project.path / "not-a-db").write_text("this is not sqlite\n" * 100)
    result = project.run("-k", "efficientnet_lite0", "--vaccbench-history=not-a-db")
    result.stdout.fnmatch_lines(["*ERROR writing history not-a-db: *not a usable history database*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert os.path.getsize(project.path / "not-a-db") == len("this is not sqlite\n") * 100


def test_a_difference_that_rounds_to_zero_is_shown_as_plus_zero():
    row = Row("s.yaml::a", "passed", _result("mobilenet_v2", "m", "reference", "fp32", 39692),
              {"top1": 79.385, "top5": 90.0, "tol1": 0.5, "tol5": 0.5})
    assert row.delta("top1") < 0  # 79.384 (39692 of 50000) against 79.385
    assert summary_lines([row])[2].split()[2:5] == ["79.384", "79.385", "-0.001"]
    row.expected["top1"] = 79.3841
    assert summary_lines([row])[2].split()[4] == "+0.000"
