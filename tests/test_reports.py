"""Reports of a session: terminal table, JSON with per-image predictions, JUnit properties,
the one-file HTML report (rendered in a real headless Chromium), and the SQLite history with
`vaccbench trend`."""

from __future__ import annotations

import json
import os
import re
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
    """pytester's terminal is 80 columns: per test its key and run, then its numbers."""
    _, result = reported
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "vaccbench accuracy on skimage-photos" in line)
    table = lines[start + 1:start + 16]
    assert table[0] == "model  run"
    assert table[1].split() == ["top1", "expect", "delta", "allowed", "top5", "delta5", "n", "status"]
    assert [line.split() for line in table[3:]] == [
        ["efficientnet_lite"],
        ["timm-efficientnet_lite0", "fake/fp32"],
        ["60.000", "60.000", "+0.000", "0.50", "100.000", "+0.000", "5", "passed"],
        ["mobilenet_v2"],
        ["torchvision-mobilenet_v2", "fake/fp32"], [*["-"] * 7, "skipped"],
        ["timm-mobilenetv2_100", "fake/fp32"],
        ["100.000", "40.000", "+60.000", "0.50", "100.000", "+0.000", "5", "stale"],
        ["keras-mobilenetv2", "fake/fp32"], [*["-"] * 7, "error"],
        ["local-mobilenetv2_100-tvq", "fake/fp32"],
        ["20.000", "60.000", "-40.000", "0.50", "100.000", "+0.000", "5", "FAILED"]]
    assert max(len(line) for line in table) <= 80


def _result(family: str, model: str, backend: str, precision: str, correct1: int) -> Result:
    return Result(family, model, backend, precision, "imagenet-val", "f" * 16, 50000, correct1,
                  45000, 1.0, "/nonexistent.npz", "/b.yaml")


def test_summary_fits_the_width_and_never_shortens_a_name():
    long = "ppcls-MobileNetV2_x0_25_with_a_very_long_suffix_from_some_zoo_export"
    rows = [Row("s.yaml::a", "passed", _result("mobilenet_v2", long, "onnxruntime",
                                                  "int8-kl_divergence", 35000),
                {"top1": 70.0, "top5": 90.0, "tol1": 0.5, "tol5": 0.5}),
            Row("s.yaml::b", "passed", _result("mobilenet_v2", "local-mobilenetv2_100-tvq",
                                               "onnxruntime", "int8-percentile", 35500),
                {"top1": 70.0, "top5": 90.0, "tol1": 0.5, "tol5": 0.5}),
            Row("s.yaml::mobilenet_v2/timm-x[vamp-int8-percentile]", "failed"),
            Row("s.yaml::c", "passed", _result("repvgg", "timm-repvgg_a0", "reference", "fp32", 36000))]
    tables = {width: summary_lines(rows, width) for width in (80, 120, 200)}
    body = {width: lines[next(i for i, l in enumerate(lines) if l.startswith("---")) + 1:]
            for width, lines in tables.items()}
    for width, lines in tables.items():
        assert max(map(len, lines)) <= width or max(map(len, lines)) == len(long) + 2, width
        assert [line for line in lines if not line.startswith(" ")][2:] == ["mobilenet_v2", "repvgg"]
        assert sum(line.split()[0] == long for line in body[width]) == 1  # whole, once
    # the same words and numbers in every width (headers aside), in the same order
    words = {width: " ".join(lines).split() for width, lines in body.items()}
    assert words[80] == words[120] == words[200]
    assert words[80][:12] == ["mobilenet_v2", long, "onnxruntime/int8-kl_divergence", "70.000", "70.000",
                              "+0.000", "0.50", "90.000", "+0.000", "50000", "passed",
                              "local-mobilenetv2_100-tvq"]
    assert [line.split() for line in body[200][:3]] == [
        ["mobilenet_v2"], words[80][1:11], words[80][11:21]]  # one line per test at 200
    assert body[80][1].strip() == long and len(body[80]) == 2 + 4 * 2 + 1  # two or three at 80


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
    (project.path / "blocked").write_text("a file where the folder would go")
    result = project.run("-k", "efficientnet_lite0", "--vaccbench-json=blocked/r.json")
    result.stdout.fnmatch_lines(["*ERROR writing JSON report blocked/r.json: *"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


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


def _gated_rows() -> list[Row]:
    """Rows gated by the real gate on 500 of 50,000 images against a whole-set baseline of
    70.0: 68.0 passes only on the sampling allowance, 60.0 fails beyond it."""
    from pytest_vaccbench.baselines import Tolerance
    from pytest_vaccbench.gate import Expectation, Images, judge
    from pytest_vaccbench.metrics import Accuracy

    expected = Expectation(70.0, 90.0, Tolerance(0.5, 0.5), "test", n=50000)
    rows = []
    for name, correct1 in (("rescued", 340), ("regressed", 300)):
        verdict = judge(Accuracy(500, correct1, 450), expected,
                        Images("imagenet-val", 500, 50000, "abc"), "pytest --update-baselines")
        result = Result("fam", name, "onnxruntime", "fp32", "imagenet-val", "abc", 500, correct1,
                        450, 1.0, "/nonexistent.npz", "/b.yaml")
        rows.append(Row(f"s.yaml::fam/{name}[onnxruntime-fp32]", "passed" if verdict.passed else "failed",
                        result, {"top1": 70.0, "top5": 90.0, "tol1": 0.5, "tol5": 0.5},
                        gate=verdict.details))
    # a pass on 500 of 50,000 images cannot see a drop of twice the tolerance: weak
    assert [r.status for r in rows] == ["weak", "FAILED"]
    assert 0.5 < abs(rows[0].delta("top1")) < rows[0].allowed("top1")  # the sampling allowance's case
    return rows


def test_html_band_is_the_allowance_the_gate_used():
    from pytest_vaccbench.report import html_report

    rows = _gated_rows()
    page = html_report(rows, {})
    def rects(kind: str) -> list[tuple[float, float]]:
        found = re.findall(rf'class="{kind}" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', page)
        return [(float(x), float(w)) for x, w in found]

    bands, tols = rects("band"), rects("tolerance")
    dots = [float(cx) for cx in re.findall(r'<circle class="delta \w+" cx="([\d.]+)"', page)]
    assert len(bands) == len(tols) == len(dots) == 2
    for (bx, bw), (tx, tw), cx, row in zip(bands, tols, dots, rows):
        assert bw / tw == pytest.approx(row.allowed("top1") / 0.5, rel=0.01)
        assert (bx <= cx <= bx + bw) == (row.status != "FAILED")
        assert not tx <= cx <= tx + tw  # outside the tolerance alone, in both rows
    assert f"allowed ±{rows[0].allowed('top1'):.3f}" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install "
                                             "chromium chromium-driver; .ci/run installs it)")
def test_chromium_draws_a_row_passed_on_the_sampling_allowance_inside_its_band(tmp_path):
    from PIL import Image

    from pytest_vaccbench.report import html_report

    page = tmp_path / "report.html"
    page.write_text(html_report(_gated_rows(), {}))
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1100,500", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]

    def near(colour: int) -> np.ndarray:
        return ((abs(r - (colour >> 16)) < 8) & (abs(g - (colour >> 8 & 255)) < 8)
                & (abs(b - (colour & 255)) < 8))

    band = near(0xcfe8d0) | near(0xa5d6a7)  # the allowed band, its tolerance core darker
    lines = np.nonzero(band.any(axis=1))[0]
    groups = np.split(lines, np.nonzero(np.diff(lines) > 1)[0] + 1)
    assert len(groups) == 2  # one band per row
    for group, colour, inside in ((groups[0], 0x2e7d32, True), (groups[1], 0xc62828, False)):
        ys = slice(group.min(), group.max() + 1)
        # columns filled over several pixel rows: anti-aliased edges do not count
        xs = np.nonzero(band[ys].sum(axis=0) >= 4)[0]
        dot = np.nonzero(near(colour)[ys].sum(axis=0) >= 2)[0]
        core = np.nonzero(near(0xa5d6a7)[ys].sum(axis=0) >= 4)[0]
        assert dot.size > 5, "no marker in this row"
        centre = (dot.min() + dot.max()) / 2
        assert (xs.min() < centre < xs.max()) == inside
        assert not core.min() <= centre <= core.max()  # outside the tolerance alone


def test_html_lists_the_classes_each_run_lost_against_fp32(tmp_path):
    from pytest_vaccbench.report import html_report

    labels = np.array([0, 0, 1, 1, 2, 2], dtype=np.int16)
    rows = []
    for precision, top1 in (("fp32", [0, 0, 1, 1, 2, 5]), ("int8-max", [0, 7, 9, 9, 2, 2])):
        npz = tmp_path / f"{precision}.npz"
        top5 = np.array([[t, 10, 11, 12, 13] for t in top1], dtype=np.int16)
        np.savez(npz, top5=top5, labels=labels, files=np.array([f"{i}.JPEG" for i in range(6)]))
        correct = int((top5[:, 0] == labels).sum())
        result = Result("fam", "m", "onnxruntime", precision, "d", "f", 6, correct, correct, 1.0,
                        str(npz), "/b.yaml")
        rows.append(Row(f"s.yaml::fam/m[onnxruntime-{precision}]", "passed", result))
    page = html_report(rows, {})
    section = page[page.index('<div id="class-losses">'):]
    assert "fam/m onnxruntime/int8-max: classes that lost most against onnxruntime/fp32" in section
    cells = re.findall(r"<tr><td class=\"l\">([^<]+)</td><td>(\d)</td><td>(\d)</td><td>(\d)</td>", section)
    assert cells == [("goldfish", "2", "2", "0"), ("tench", "2", "2", "1")]  # class 1 lost 2, class 0 one
    assert "great white shark" not in section  # class 2 gained
