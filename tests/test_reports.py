"""Reports of a session: terminal table, JSON with per-image predictions, JUnit properties,
and the SQLite history with `vaccbench trend` (the HTML report: test_report_html.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from report_pages import RED_PLAN as PLAN
from report_pages import seeded
from vaccbench_fake import LABELS, N_IMAGES, FakeProject

from pytest_vaccbench.cli import main
from pytest_vaccbench.report import Row, summary_lines
from pytest_vaccbench.run import Result

pytest.importorskip("skimage", reason="the built-in skimage-photos dataset needs scikit-image")

@pytest.fixture
def project(pytester: pytest.Pytester) -> FakeProject:
    return seeded(FakeProject(pytester.path, pytester))


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeProject, pytest.RunResult]:
    """One session writing every report, shared by the tests that read them (read-only)."""
    project = seeded(FakeProject(tmp_path_factory.mktemp("reported")))
    (project.path / "out").mkdir()
    result = project.run("--vaccbench-json=out/report.json", "--vaccbench-html=out/report.html",
                         "--junitxml=out/junit.xml", "--vaccbench-history=out/history.db")
    result.assert_outcomes(passed=1, failed=3, skipped=1)
    return project, result


def test_terminal_summary_has_one_row_per_test(reported):
    """pytester's terminal is 80 columns: the compact layout, a heading per family and run,
    then one line per test with top1, its difference, the allowed difference, n and the status."""
    _, result = reported
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "vaccbench accuracy on skimage-photos" in line)
    table = lines[start + 1:start + 11]
    assert table[0].split() == ["model", "top1", "delta", "allowed", "n", "status"]
    assert [line.split() for line in table[2:]] == [
        ["efficientnet_lite", "fake/fp32"],
        ["timm-efficientnet_lite0", "60.000", "+0.000", "0.500", "5", "passed"],
        ["mobilenet_v2", "fake/fp32"],
        ["torchvision-mobilenet_v2", *["-"] * 4, "skipped"],
        ["timm-mobilenetv2_100", "100.000", "+60.000", "0.500", "5", "stale"],
        ["keras-mobilenetv2", *["-"] * 4, "error"],
        ["local-mobilenetv2_100-tvq", "20.000", "-40.000", "0.500", "5", "FAILED"],
        ["skipped", "(1):", *table[9].split()[2:]]]
    assert max(len(line) for line in table[:9]) <= 80


def test_the_title_names_the_datasets_or_says_nothing_was_measured():
    from pytest_vaccbench.report import title

    rows = [Row("s.yaml::fam/a[reference-fp32]", "skipped", reason="weights not found"),
            Row("s.yaml::b", "passed", _result("fam", "b", "reference", "fp32", 100)),
            Row("s.yaml::c", "passed", _result("fam", "c", "reference", "fp32", 100))]
    assert title(rows[:1]) == "vaccbench accuracy: nothing measured"
    rows[2].result.dataset = "val-160"
    assert title(rows) == "vaccbench accuracy on imagenet-val, val-160"


def _result(family: str, model: str, backend: str, precision: str, correct1: int) -> Result:
    return Result(family, model, backend, precision, "imagenet-val", "f" * 16, 50000, correct1,
                  45000, 1.0, "/nonexistent.npz", "/b.yaml")


def test_summary_is_one_line_per_test_in_the_width_and_never_shortens_a_name():
    long = "ppcls-MobileNetV2_x0_25_with_a_very_long_suffix_from_some_zoo_export"
    rows = [Row("s.yaml::a", "passed", _result("mobilenet_v2", long, "onnxruntime",
                                                  "int8-kl_divergence", 35000),
                {"top1": 70.0, "top5": 90.0, "tol1": 0.5, "tol5": 0.5}),
            Row("s.yaml::b", "passed", _result("mobilenet_v2", "torchvision-mobilenet_v2_quantized",
                                               "onnxruntime", "int8-percentile", 35500),
                {"top1": 70.0, "top5": 90.0, "tol1": 0.5, "tol5": 0.5}),
            Row("s.yaml::mobilenet_v2/timm-x[vamp-int8-percentile]", "failed"),
            Row("s.yaml::c", "passed", _result("repvgg", "timm-repvgg_a0", "reference", "fp32", 36000))]
    tables = {width: summary_lines(rows, width) for width in (80, 120, 200)}
    body = {width: lines[2:] for width, lines in tables.items()}
    for width, lines in tables.items():
        assert lines[1] == "-" * len(lines[0])
        assert max(map(len, lines)) <= width or max(map(len, lines)) == len(long) + 2, width
        assert sum(line.split()[0] == long for line in body[width]) == 1  # whole, once
    # 200 columns: wide, a heading per family, then per test a line with every number
    assert tables[200][0].split() == ["model", "run", "top1", "expect", "delta", "allowed", "top5",
                                      "delta5", "n", "status"]
    assert [line.split() for line in body[200]] == [
        ["mobilenet_v2"],
        [long, "onnxruntime/int8-kl_divergence", "70.000", "70.000", "+0.000", "0.500", "90.000",
         "+0.000", "50000", "passed"],
        ["torchvision-mobilenet_v2_quantized", "onnxruntime/int8-percentile", "71.000", "70.000",
         "+1.000", "0.500", "90.000", "+0.000", "50000", "passed"],
        ["timm-x", "vamp/int8-percentile", *["-"] * 7, "error"],
        ["repvgg"], ["timm-repvgg_a0", "reference/fp32", "72.000", *["-"] * 3, "90.000", "-",
                     "50000", "no", "baseline"]]
    # 80 and 120: compact, a heading per family and run, one line per test with the compact
    # columns; only a key too long for its column (at 80) takes a line of its own
    compact = [["mobilenet_v2", "onnxruntime/int8-kl_divergence"],
               [long, "70.000", "+0.000", "0.500", "50000", "passed"],
               ["mobilenet_v2", "onnxruntime/int8-percentile"],
               ["torchvision-mobilenet_v2_quantized", "71.000", "+1.000", "0.500", "50000", "passed"],
               ["mobilenet_v2", "vamp/int8-percentile"], ["timm-x", *["-"] * 4, "error"],
               ["repvgg", "reference/fp32"], ["timm-repvgg_a0", "72.000", "-", "-", "50000", "no", "baseline"]]
    for width in (80, 120):
        assert tables[width][0].split() == ["model", "top1", "delta", "allowed", "n", "status"]
    assert [line.split() for line in body[120]] == compact
    assert [line.split() for line in body[80]] == [compact[0], [long], compact[1][1:], *compact[2:]]
    assert max(map(len, tables[120])) <= 120 and max(map(len, tables[80])) == 80


def test_a_column_added_to_the_registry_shows_in_both_layouts(monkeypatch):
    from pytest_vaccbench import report

    row = Row("s.yaml::a", "passed", _result("fam", "m", "reference", "fp32", 35000),
              {"top1": 70.0, "top5": 90.0, "tol1": 0.5, "tol5": 0.5})
    monkeypatch.setattr(report, "COLUMNS", (*report.COLUMNS, report.Column(
        "images", 6, "d", lambda r: r.result.n, terminal="compact")))
    for width in (60, 200):
        lines = summary_lines([row], width)
        assert lines[0].split()[-2:] == ["images", "status"]
        assert lines[-1].split()[-2:] == ["50000", "passed"]


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
    assert re.fullmatch(r"mobilenet_v2/local-mobilenetv2_100-tvq  fake/fp32  on skimage-photos "
                        r"\(n=5, fingerprint [0-9a-f]{16}\)", out[0])
    assert len(out) == 3
    assert out[1].split()[2:] == ["top1", "20.000", "top5", "100.000", "FAILED"]
    assert out[2].split()[2:] == ["top1", "60.000", "top5", "100.000", "passed", "+40.000"]

    # a run on other images (--limit 3) is another series, not a change in this one
    project.run(f"--vaccbench-history={db}", "--limit=3", "-k", "tvq")
    capsys.readouterr()
    assert main(["trend", str(db), "--model", "*tvq"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("(")[-1].split(",")[0] for line in out if not line.startswith(" ")] == ["n=3", "n=5"]
    assert len(out) == 5 and len(out[1].split()) == 7  # one point, no change

    assert main(["trend", str(db), "--model", "no-such-model"]) == 1
    assert main(["trend", str(project.path / "missing.db")]) == 2
    assert "history database does not exist" in capsys.readouterr().err


def test_trend_plots_a_png(reported, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the `plot` extra)")
    from PIL import Image

    project, _ = reported
    capsys.readouterr()
    out = tmp_path / "trend.png"
    assert main(["trend", str(project.path / "out" / "history.db"), "--png", str(out)]) == 0
    assert f"plot: {out}" in capsys.readouterr().out
    import matplotlib.pyplot as plt  # the legend names each series as the text does
    from pytest_vaccbench import history

    labels = []
    monkeypatch.setattr(plt.Axes, "legend", lambda ax, *a, **k: labels.extend(
        t.get_label() for t in ax.get_lines()))
    found = history.series(project.path / "out" / "history.db")
    history.plot_png(found, tmp_path / "again.png")
    assert labels == [history.series_label(key) for key in found] and "(n=5, fingerprint " in labels[0]
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[:2] == (450, 900)
    assert (image.std(axis=2) > 40).sum() > 50  # coloured lines, not a blank canvas


def test_trend_without_matplotlib_says_how_to_install_it(reported, tmp_path, capsys, monkeypatch):
    import sys

    project, _ = reported
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["trend", str(project.path / "out" / "history.db"), "--png", str(tmp_path / "t.png")]) == 2
    assert "pip install 'pytest-vaccbench[plot]'" in capsys.readouterr().err


def test_report_folders_are_created_as_junitxml_does(project: FakeProject):
    result = project.run("-k", "efficientnet_lite0", "--vaccbench-html=new/a/report.html",
                         "--vaccbench-json=new/b/r.json", "--junitxml=new/c/junit.xml")
    result.assert_outcomes(passed=1)
    for path in ("new/a/report.html", "new/b/r.json", "new/c/junit.xml"):
        assert (project.path / path).is_file(), path
    # a file where a folder would go is a usage error at startup (test_hostile), as for every output


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
    assert summary_lines([row], 160)[3].split()[2:5] == ["79.384", "79.385", "-0.001"]
    row.expected["top1"] = 79.3841
    assert summary_lines([row], 160)[3].split()[4] == "+0.000"


def test_readme_shows_the_80_column_table_as_it_prints():
    """The README's compact table, spacing included (the doc test runs the command and
    checks its words; this checks the layout of the same rows at 80 columns)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(readme) if line.startswith("$ COLUMNS=80 pytest"))
    head = next(i for i in range(start, len(readme)) if readme[i].startswith("model "))
    shown = readme[head:readme.index("[...]", head)]
    lite0 = Result("efficientnet_lite", "timm-efficientnet_lite0", "reference", "fp32",
                   "skimage-photos", "e90bc6d473699c2f", 5, 4, 5, 1.0, "", "")
    rows = [Row("suites/default.yaml::efficientnet_lite/timm-efficientnet_lite0[reference-fp32]",
                "passed", lite0, {"top1": 80.0, "top5": 100.0, "tol1": 0.5, "tol5": 0.5})]
    rows += [Row(f"suites/default.yaml::ghostnet/{key}[reference-fp32]", "skipped", reason="weights")
             for key in ("timm-ghostnet_100", "ppcls-GhostNet_x0_5", "ppcls-GhostNet_x1_0",
                         "ppcls-GhostNet_x1_3", "ppcls-GhostNet_x1_3_ssld")]
    assert summary_lines(rows, 80) == shown
