"""`vaccbench compare`: two result sets side by side, the images that flipped and the classes
that lost most; checked on hand-built reports and on two real runs (fp32 vs int8-percentile)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.cli import main
from pytest_vaccbench.compare import compare_files, load_report
from pytest_vaccbench.errors import VaccbenchError
from pytest_vaccbench.report import class_counts

ROOT = Path(__file__).resolve().parents[1]
FILES = [f"img{i}.JPEG" for i in range(8)]
LABELS = [0, 0, 1, 1, 2, 2, 3, 3]


def _top5(top1: list[int]) -> np.ndarray:
    """Top-5 rows whose first entry is `top1`; the label sits second when top1 misses it,
    except for image 7, whose label is outside the top 5."""
    rows = []
    for i, (first, label) in enumerate(zip(top1, LABELS)):
        rest = [c for c in (label, 10, 11, 12, 13, 14) if c != first and not (i == 7 and c == label)]
        rows.append([first, *rest[:4]])
    return np.array(rows, dtype=np.int16)


def write_report(folder: Path, runs: dict[str, list[int]], files: list[str] = FILES) -> Path:
    """A --vaccbench-json report of the model m on dataset d, one test per precision."""
    tests = []
    (folder / "r.predictions").mkdir(parents=True, exist_ok=True)
    for precision, top1 in runs.items():
        idx = [FILES.index(f) for f in files]
        labels = np.array([LABELS[i] for i in idx], dtype=np.int16)
        top5 = _top5(top1)[idx]
        npz = folder / "r.predictions" / f"{precision}.npz"
        np.savez(npz, top5=top5, labels=labels, files=np.array(files))
        c1 = int((top5[:, 0] == labels).sum())
        c5 = int((top5 == labels[:, None]).any(axis=1).sum())
        tests.append({"nodeid": f"s.yaml::fam/m[onnxruntime-{precision}]", "outcome": "passed",
                      "status": "passed", "family": "fam", "model": "m", "backend": "onnxruntime",
                      "precision": precision, "dataset": "d", "fingerprint": f"f{len(files)}",
                      "n": len(files), "correct1": c1, "correct5": c5, "seconds": 1.0,
                      "baseline": "fam.yaml",
                      "top1": 100.0 * c1 / len(files), "top5": 100.0 * c5 / len(files),
                      "predictions": f"r.predictions/{precision}.npz",
                      "per_class": class_counts(npz)})
    path = folder / "r.json"
    path.write_text(json.dumps({"tool": "pytest-vaccbench", "session": {}, "tests": tests}))
    return path


# fp32 gets 6 of 8 right (misses images 1 and 5); int8 loses 2, 3 and 7 and gains 5.
FP32 = [0, 5, 1, 1, 2, 6, 3, 3]
INT8 = [0, 5, 1, 9, 2, 2, 3, 8]


def test_flips_agreement_and_classes_of_one_report(tmp_path, capsys):
    report = write_report(tmp_path, {"fp32": FP32, "int8-max": INT8})
    [pair] = compare_files(report, None, "fp32", "int8-max")
    g = pair.agreement
    assert (g.n, g.agree, g.reference_only, g.run_only) == (8, 5, 2, 1)
    assert pair.top1_delta == pytest.approx(-12.5) and pair.paired_delta == pytest.approx(-12.5)
    # lost first; the one whose label left int8's top 5 (image 7) before the one it kept second
    assert [(f.file, f.lost, f.rank) for f in pair.flips] == [
        ("img7.JPEG", True, 5), ("img3.JPEG", True, 1), ("img5.JPEG", False, 1)]
    assert [(c.label, c.change) for c in pair.classes] == [(1, -1), (3, -1), (2, 1)]

    assert main(["compare", str(report), "--a", "fp32", "--b", "int8-max", "--flips", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "fam/m on d"
    # the paired view of the same images first, then each side's totals
    assert out[1] == "  same 8 images, paired: B - A top1 -12.500  top5 -12.500"
    assert out[2] == "    B lost 2, gained 1: exact McNemar p=1; top-1 agreement 62.500% (5/8)"
    assert out[3].split() == ["A", "onnxruntime/fp32", "top1", "75.000", "top5", "100.000", "n=8"]
    assert out[4].split() == ["B", "onnxruntime/int8-max", "top1", "62.500", "top5", "87.500", "n=8"]
    assert out[5].split() == ["B", "-", "A", "top1", "-12.500", "top5", "-12.500"]
    assert out[7].split()[:2] == ["lost", "img7.JPEG"] and "label 'goldfish'" not in out[7]
    assert "... 1 more" in out[9]
    assert max(map(len, out)) <= 80


def test_two_reports_pair_by_file_name_and_report_partial_overlap(tmp_path, capsys):
    a = write_report(tmp_path / "a", {"fp32": FP32})
    b = write_report(tmp_path / "b", {"fp32": INT8}, files=FILES[2:])  # 6 of the 8 images
    [pair] = compare_files(a, b)
    assert pair.agreement.n == 6 and pair.note == "of 8 and 6"
    assert {f.file for f in pair.flips} == {"img3.JPEG", "img5.JPEG", "img7.JPEG"}
    html = tmp_path / "out" / "c.html"
    with pytest.raises(SystemExit):  # an output in a folder that does not exist: checked first
        main(["compare", str(a), str(b), "--html", str(html)])
    assert "the folder" in capsys.readouterr().err and not html.parent.exists()
    html.parent.mkdir()
    assert main(["compare", str(a), str(b), "--html", str(html)]) == 0
    out = capsys.readouterr().out.splitlines()
    # on the 6 shared images int8 lost images 3 and 7 and gained 5: -1/6 top1; the totals
    # (6 of 8 right vs 4 of 6) differ by half as much over other images: labelled, second
    assert out[1] == "  same 6 images (of 8 and 6), paired: B - A top1 -16.667  top5 -16.667"
    assert out[5].split() == ["B", "-", "A,", "other", "images", "top1", "-8.333", "top5",
                              "-16.667", "(not", "like", "for", "like)"]
    page = html.read_text()
    # the summary leads with the paired difference, a loss on the same images
    assert '<td rowspan="2" class="num wrap">same 6</td><td rowspan="2" class="num neg">-16.667</td>' in page
    assert page.count("<tr>") == 3 + 4 + 4  # summary (A and B rows), flips, classes, with headers
    for outside in ("http:", "https:", "<script", "src=", "url("):
        assert outside not in page
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--b", "int8-max"]) == 1  # B has no int8-max run
    assert "no model was measured on the same dataset by both sides" in capsys.readouterr().out


def test_a_difference_over_other_images_is_labelled_and_never_coloured_as_a_loss() -> None:
    from pytest_vaccbench.compare import Pair, Record, compare_html, compare_lines

    a = Record("fam", "m", "reference", "fp32", "d", "aaaa", 650, 82.769, 95.692, "passed", None)
    b = Record("fam", "m", "reference", "fp32", "d", "bbbb", 50, 92.0, 100.0, "passed", None)
    pair = Pair(a, b, note="no predictions file for reference/fp32: totals only")
    lines = compare_lines([pair])
    assert lines[3].split() == ["B", "-", "A,", "other", "images", "top1", "+9.231", "top5", "+4.308",
                                "(not", "like", "for", "like)"]
    page = compare_html([pair], "t")
    assert ('<td rowspan="2" class="num wrap">other images (650 and 50)</td>'
            '<td rowspan="2" class="num ">+9.231</td>') in page  # no pos/neg colour
    same = Pair(a, Record("fam", "m", "reference", "int8", "d", "aaaa", 650, 80.0, 95.0, "passed", None))
    assert '<td rowspan="2" class="num neg">-2.769</td>' in compare_html([same], "t")
    assert compare_lines([same])[3].split()[:4] == ["B", "-", "A", "top1"]


def test_bad_reports_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["compare", str(bad), str(bad)]) == 2
    assert f"{bad}: not a --vaccbench-json report" in capsys.readouterr().err
    report = write_report(tmp_path, {"fp32": FP32})
    document = json.loads(report.read_text())
    document["tests"][0]["predictions"] = "../../etc/passwd"
    report.write_text(json.dumps(document))
    with pytest.raises(VaccbenchError, match="predictions outside the report's folder"):
        load_report(report)
    assert main(["compare", str(write_report(tmp_path / "x", {"fp32": FP32}))]) == 2
    assert "say which runs with --a and --b" in capsys.readouterr().err


@pytest.mark.slow
def test_fp32_vs_int8_percentile_of_mobilenetv2_on_real_images(pytester, shared_data, capsys):
    """Two real runs in one session (160 val-subset images, 32 of them calibrating int8); the
    flipped images equal a count made here from the two prediction files."""
    pytest.importorskip("onnxruntime.quantization")
    shutil.copytree(ROOT / "baselines", pytester.path / "baselines")
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "tvq.yaml").write_text(
        "baselines: ../baselines\nfamilies: [mobilenet_v2]\nmodels: [local-mobilenetv2_100-tvq]\n")
    result = pytester.runpytest_subprocess(
        "suites/tvq.yaml", "-p", "no:cacheprovider", "--backend=onnxruntime",
        "--precision=fp32,int8-percentile", f"--dataset={shared_data / 'ilsvrc2012-val-subset'}",
        "--limit=160", "--calib-images=32", "--dataset-name=val-160",
        f"--weights-dir={shared_data / 'weights'}", f"--vaccbench-cache={pytester.path / 'cache'}",
        "--update-baselines", "--vaccbench-json=out/r.json")
    result.assert_outcomes(passed=2)
    report = pytester.path / "out" / "r.json"
    tests = {t["precision"]: t for t in json.loads(report.read_text())["tests"]}
    saved = {k: dict(np.load(report.parent / t["predictions"])) for k, t in tests.items()}
    top1 = {k: dict(zip(v["files"].tolist(), (v["top5"][:, 0] == v["labels"]).tolist()))
            for k, v in saved.items()}
    shared = set(top1["fp32"]) & set(top1["int8-percentile"])
    expected = sorted(f for f in shared if top1["fp32"][f] != top1["int8-percentile"][f])
    assert len(saved["fp32"]["files"]) == 160 and len(shared) == 128

    [pair] = compare_files(report, None, "fp32", "int8-percentile")
    assert sorted(f.file for f in pair.flips) == expected
    assert pair.agreement.n == 128
    assert pair.agreement.reference_only == sum(top1["fp32"][f] for f in expected)
    for k, t in tests.items():  # the report's per-class counts add up to its totals
        assert sum(c[1] for c in t["per_class"].values()) == t["correct1"]
        assert sum(c[0] for c in t["per_class"].values()) == t["n"] == len(saved[k]["files"])

    capsys.readouterr()
    html = pytester.path / "out" / "compare.html"
    assert main(["compare", str(report), "--a", "fp32", "--b", "int8-percentile", "--flips", "100",
                 "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert (f"flipped images ({len(expected)}, lost first)" in out) == bool(expected)
    assert all(f in out and f in html.read_text() for f in expected)
