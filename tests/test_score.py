"""`vaccbench score` and `pytest --results`: result files gated as a test of the model and run,
with a test's verdict, statuses, reports, history and exit codes (generated predictions)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import result_files as rf
from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.cli import main

N = 40


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """baselines/stub.yaml holding stub-a's vamp/fp16 figures on `val40`, the 40 images'
    result.txt (class folders) in results/, and their label file."""
    rng = np.random.default_rng(5)
    names, labels = rf.image_names(N), rng.integers(0, 1000, N)
    labels[labels == 480] = 481
    top5 = rf.predictions(labels, seed=2)
    hits = top5 == labels.reshape(-1, 1)
    top1, top5_rate = 100 * hits[:, 0].mean(), 100 * hits.any(axis=1).mean()
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "stub.yaml").write_text(rf.stub_baseline("val40", round(top1, 3),
                                                                       round(top5_rate, 3)))
    (tmp_path / "results").mkdir()
    rf.result_txt(tmp_path / "results" / "result.txt", names, labels, top5)
    rf.label_file(tmp_path / "val_label.txt", names, labels)
    (tmp_path / "truth.json").write_text(json.dumps([top1, top5_rate]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VACCBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "120")
    return tmp_path


SCORE = ["score", "results/result.txt", "--model", "stub/stub-a", "--run", "vamp/fp16",
         "--dataset-name", "val40"]


def score(capsys: pytest.CaptureFixture[str], *extra: str, args: list[str] | None = None) -> tuple[int, str]:
    code = main([*(args or SCORE), *extra])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out + out.err


def test_a_passing_run_writes_every_report(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top1, top5 = json.loads((project / "truth.json").read_text())
    code, out = score(capsys, "--vaccbench-json", "out/r.json", "--vaccbench-html", "out/r.html",
                      "--junitxml", "out/j.xml", "--vaccbench-history", "out/h.db")
    assert code == 0, out
    assert f"measured: top1 {top1:.3f} top5 {top5:.3f} (n={N}, by class index" in out
    assert "zoo scorer (eval_topk.py): " in out and "vamp/fp16 build within the allowed difference" in out
    assert "  stub-a vamp/fp16" in out and out.rstrip().splitlines()[-5].endswith("passed")
    (record,) = json.loads((project / "out" / "r.json").read_text())["tests"]
    assert (record["status"], record["n"], record["nodeid"]) == ("passed", N, "score::stub/stub-a[vamp-fp16]")
    assert record["top1"] == pytest.approx(top1) and record["gate"]["verdict"] == "passed"
    source = record["scored_from"]
    digest = hashlib.sha256((project / "results" / "result.txt").read_bytes()).hexdigest()
    assert source["claim"] == {"model": "stub/stub-a", "run": "vamp/fp16", "dataset": "val40"}
    assert source["files"][0]["sha256"] == digest and source["files"][0]["records"] == 5 * N
    assert record["options"]["results_sha256"] and record["per_class"]
    case = ET.parse(project / "out" / "j.xml").find(".//testcase")
    assert case is not None and case.find("failure") is None
    assert {p.get("name"): p.get("value") for p in case.iter("property")}["top1"] == f"{round(top1, 3)}"
    with sqlite3.connect(project / "out" / "h.db") as db:
        assert db.execute("SELECT status, n FROM results").fetchall() == [("passed", N)]
    page = (project / "out" / "r.html").read_text()
    assert '<section id="verdict" class="verdict green">' in page and "exit 0:" in page


def test_a_regression_fails_as_the_test_does(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top1, _ = json.loads((project / "truth.json").read_text())
    baseline = project / "baselines" / "stub.yaml"
    baseline.write_text(baseline.read_text().replace(f"{{top1: {round(top1, 3)}", f"{{top1: {top1 + 5}"))
    code, out = score(capsys, "--junitxml", "out/j.xml")
    assert code == 1
    assert "top1 is " in out and "points below the baseline" in out and "FAILED" in out
    assert "If the change is intended, record the new numbers:" in out
    assert "vaccbench score results/result.txt --model stub/stub-a --run vamp/fp16 --dataset-name " \
           "val40 --update-baselines" in out
    assert "loss ladder not run: vaccbench score reads result files and runs no model; every step " \
           "before the device's runs the model on the images. Where the images and the weights are: " \
           "vaccbench explain stub/stub-a IMAGES --precision=fp16 --device=vamp:results/result.txt " \
           "(IMAGES: the folder of the images the result files name)" in out
    failure = ET.parse(project / "out" / "j.xml").find(".//failure")
    assert failure is not None and "below the baseline" in failure.get("message", "")


def test_no_baseline_prints_the_numbers_and_exits_5(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top1, top5 = json.loads((project / "truth.json").read_text())
    args = [*SCORE[:-1], "val-other"]
    code, out = score(capsys, args=args)
    assert code == 5
    assert f"measured: top1 {top1:.3f} top5 {top5:.3f}" in out
    assert (f"skipped (1): no baseline for stub-a on dataset 'val-other' with vamp/fp16 in stub.yaml; "
            f"measured top1 {top1:.3f} top5 {top5:.3f} (n={N}); record one with: vaccbench score "
            "results/result.txt --model stub/stub-a --run vamp/fp16 --dataset-name val-other "
            "--update-baselines") in out
    assert "ERROR: 0 of 1 selected accuracy tests measured: 1 skipped" in out
    code, out = score(capsys, "--update-baselines", args=args)
    assert code == 0 and "updated stub.yaml: stub-a val-other vamp/fp16" in out
    entry = load_family(project / "baselines" / "stub.yaml").models["stub-a"].expected["val-other"]
    assert entry["vamp/fp16"]["top1"] == round(top1, 3) and entry["vamp/fp16"]["n"] == N
    assert entry["vamp/fp16"]["options"]["results"] == "result.txt (Relay top-k lines)"
    assert score(capsys, args=args)[0] == 0


def test_recording_over_an_entry_of_more_images_is_refused(project: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The 40 result lines cannot replace an entry measured on 50,000 images by accident."""
    baseline = project / "baselines" / "stub.yaml"
    text = baseline.read_text()
    line = next(line for line in text.splitlines() if "vamp/fp16: {" in line)
    baseline.write_text(text.replace(line, line[:-1] + ", n: 50000, fingerprint: 0123456789abcdef}"))
    before = baseline.read_bytes()
    code, out = score(capsys, "--update-baselines")
    assert code == 1 and baseline.read_bytes() == before
    assert ("REFUSED stub-a val40 vamp/fp16: it would replace an entry measured on more images "
            "(n=50000, fingerprint 0123456789abcdef) with one measured on fewer (n=40, fingerprint ") in out
    code, out = score(capsys, "--update-baselines", "--accept-other-images")
    assert code == 0 and "updated stub.yaml: stub-a val40 vamp/fp16" in out
    assert load_family(baseline).models["stub-a"].expected["val40"]["vamp/fp16"]["n"] == N


@pytest.mark.parametrize("args, message", [
    (["--accept-other-images"], "--accept-other-images applies to --update-baselines only"),
    (["--run", "vamp"], "--run=vamp: expected BACKEND/PRECISION"),
    (["--run", "vmap/fp16"], "--run backend vmap: unknown backend; did you mean vamp?"),
    (["--run", "vamp/fp61"], "--run precision fp61: unknown precision of backend(s) vamp; did you mean fp16?"),
    (["--model", "stub/stub-b"], "--model=stub/stub-b: no model 'stub-b' in baselines/stub.yaml; did "
                                 "you mean stub/stub-a?"),
    (["--model", "stab/stub-a"], "--model=stab/stub-a: no family 'stab' in baselines; did you mean stub?"),
    (["--dry-run"], "--dry-run applies to --update-baselines only"),
    (["--subset"], "--subset needs --labels"),
    (["--labels", "nowhere.txt"], "--labels=nowhere.txt: no such file"),
])
def test_usage_errors_exit_4(project: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                             message: str) -> None:
    code, out = score(capsys, *args)
    assert code == 4 and f"vaccbench score: error: {message}" in out


def test_missing_arguments_and_files_are_usage_errors(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(SCORE[:4])
    assert raised.value.code == 4 and "required: --run" in capsys.readouterr().err
    code, out = score(capsys, args=["score", "results/nothing.txt", *SCORE[2:]])
    assert code == 4 and "no such file or folder: results/nothing.txt" in out


def test_results_that_cannot_be_scored_fail_with_file_and_line(project: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = project / "results" / "result.txt"
    path.write_bytes(path.read_bytes().replace(b"prob: ", b"prob: \xe9", 1))
    code, out = score(capsys, "--vaccbench-json", "out/r.json")
    assert code == 1
    assert "cannot score these results: results/result.txt:1: not UTF-8 text (byte 0xe9 at column" in out
    (record,) = json.loads((project / "out" / "r.json").read_text())["tests"]
    assert record["status"] == "error" and "not UTF-8" in record["reason"]


def test_a_broken_baseline_file_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "baselines" / "stub.yaml").write_text("family: stub\nmodels: [\n")
    code, out = score(capsys)
    assert code == 2 and "stub.yaml:" in out and "YAML syntax error" in out


def test_pytest_results_gives_the_record_of_vaccbench_score(project: Path, pytester: pytest.Pytester,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The same files gated inside `pytest suites/ --results DIR`: same numbers, verdict,
    expected figures, provenance."""
    monkeypatch.chdir(project)  # pytester moved to its own folder
    code, _ = score(capsys, "--labels", "val_label.txt", "--vaccbench-json", "out/cli.json")
    assert code == 0
    run = project / "nightly" / "stub" / "stub-a" / "vamp-fp16"
    run.mkdir(parents=True)
    (project / "results" / "result.txt").rename(run / "result.txt")
    (project / "suites").mkdir()
    (project / "suites" / "nightly.yaml").write_text("baselines: ../baselines\nbackends: [vamp]\n"
                                                     "precisions: [fp16]\n")
    done = pytester.runpytest_inprocess(
        str(project / "suites"), "-p", "no:cacheprovider", f"--results={project / 'nightly'}",
        "--dataset-name=val40", f"--labels={project / 'val_label.txt'}", "--vaccbench-strict",
        f"--vaccbench-json={project / 'out' / 'pytest.json'}", f"--rootdir={project}")
    assert done.ret == 0, done.stdout.str()
    (cli,) = json.loads((project / "out" / "cli.json").read_text())["tests"]
    (test,) = json.loads((project / "out" / "pytest.json").read_text())["tests"]
    same = ("status", "n", "correct1", "correct5", "fingerprint", "expected", "per_class", "options")
    assert {k: test[k] for k in same} == {k: cli[k] for k in same}
    assert test["gate"]["verdict"] == cli["gate"]["verdict"] == "passed"
    assert test["scored_from"]["files"][0]["sha256"] == cli["scored_from"]["files"][0]["sha256"]


def test_pytest_results_usage_errors_and_missing_files(project: Path, pytester: pytest.Pytester) -> None:
    (project / "suites").mkdir()
    (project / "suites" / "s.yaml").write_text("baselines: ../baselines\nbackends: [vamp]\n"
                                               "precisions: [fp16]\n")
    done = pytester.runpytest_inprocess(str(project / "suites"), "-p", "no:cacheprovider",
                                        f"--results={project / 'results'}", f"--rootdir={project}")
    assert done.ret == 4
    assert "--results needs --dataset-name NAME" in done.stderr.str()
    done = pytester.runpytest_inprocess(str(project / "suites"), "-p", "no:cacheprovider",
                                        f"--results={project / 'results'}", "--dataset-name=val40",
                                        "--vaccbench-strict", f"--rootdir={project}")
    assert done.ret == 1
    assert "strict mode (--vaccbench-strict): no result files for stub/stub-a vamp/fp16: " in done.stdout.str()


def test_a_report_that_cannot_be_written_is_refused_before_scoring(project: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The output rule of every command (safefiles.output_target): a usage error, nothing read."""
    with pytest.raises(SystemExit) as done:  # as argparse parses
        main([*SCORE, "--junitxml", "results/result.txt/j.xml"])
    out = capsys.readouterr().err
    assert done.value.code == 4 and "argument --junitxml: results/result.txt/j.xml: cannot write here: " in out
    assert "measured:" not in out


def test_a_report_that_fails_as_it_is_written_fails_the_command(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A disk that fills after the start: the command still scores, says which report failed."""
    import errno

    from pytest_vaccbench import merge
    from pytest_vaccbench.plugin import results

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(merge, "junit_xml", full)
    monkeypatch.setattr(results, "write_json", full)
    code, out = score(capsys, "--junitxml", "out/j.xml", "--vaccbench-json", "out/r.json")
    assert code == 1 and "measured:" in out
    assert "ERROR writing JUnit XML out/j.xml: [Errno 28] No space left on device" in out
    assert "ERROR writing JSON report out/r.json: [Errno 28] No space left on device" in out
