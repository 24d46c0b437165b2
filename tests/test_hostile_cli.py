"""Hostile and broken inputs to the `vaccbench` subcommands, one probe each, through `main`:
one message naming the file and what is wrong (exit 2), never a Python traceback, nothing
written outside the place asked for. The reports are built by hostile_project.write_report
in the format --vaccbench-json writes (test_shards.py merges real ones)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

import result_files as rf
from hostile_project import TRACEBACK, NODEID, report_record, write_report
from pytest_vaccbench.cli import main


class Ran:
    """What one command printed and returned."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def vaccbench(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """Run `vaccbench ARGS` in this process; argparse's usage errors count as exit codes.
    No traceback may be printed, whatever happens."""
    def run(*args: object) -> Ran:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: a usage error, before any work
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        assert TRACEBACK not in out + err, out + err
        return Ran(code, out, err)
    return run


# -- the error boundary ------------------------------------------------------------------------

def test_a_bug_is_one_line_and_its_traceback_is_behind_an_option(vaccbench, monkeypatch, capsys) -> None:
    from pytest_vaccbench import cli

    def broken(args: object) -> int:
        raise KeyError("a bug")

    configure, _, help_text = cli.registered()["dataset"]
    monkeypatch.setitem(cli._COMMANDS, "dataset", (configure, broken, help_text))
    done = vaccbench("dataset", "skimage-photos")
    assert done.code == 3
    assert done.err.startswith("vaccbench dataset: internal error: KeyError: 'a bug'\nThis is a bug")
    assert "rerun with --traceback" in done.err
    for args in (["--traceback", "dataset", "skimage-photos"], ["dataset", "skimage-photos", "--traceback"]):
        assert main(args) == 3
        err = capsys.readouterr().err
        assert TRACEBACK in err and 'raise KeyError("a bug")' in err and "report it with the traceback" in err



def test_an_os_error_while_writing_names_the_file(vaccbench, tmp_path: Path) -> None:
    """The predictions folder merge makes beside its output is a file: one line, not errno's traceback."""
    shard = write_report(tmp_path / "shard")
    (tmp_path / "m.predictions").write_text("a file where merge puts a folder")
    done = vaccbench("merge", shard, "-o", tmp_path / "m.json")
    assert done.code == 2 and f"vaccbench merge: error: {tmp_path / 'm.predictions'}: File exists" in done.err


# -- merge ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["-o", "--html", "--junitxml", "--history"])
def test_merge_refuses_a_folder_as_an_output_before_reading_anything(vaccbench, tmp_path: Path,
                                                                       option: str) -> None:
    missing = tmp_path / "no-such-shard.json"  # never read: the outputs are checked first
    args = ["-o", tmp_path / "out.json"] if option != "-o" else []
    done = vaccbench("merge", missing, *args, option, tmp_path)
    assert done.code == 2
    assert f"{tmp_path}: is a folder: give a file name" in done.err and "no-such-shard" not in done.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_merge_refuses_an_output_in_a_missing_folder(vaccbench, tmp_path: Path) -> None:
    shard = write_report(tmp_path)
    done = vaccbench("merge", shard, "-o", tmp_path / "absent" / "m.json")
    assert done.code == 2 and f"the folder {tmp_path / 'absent'} does not exist; create it first" in done.err


@pytest.mark.parametrize("change, message", [
    ({"tests": [report_record(n=0)]}, "tests[0].n: must be a count (an integer > 0), got 0"),
    ({"tests": [report_record(n="abc")]}, "tests[0].n: must be a count (an integer > 0), got 'abc'"),
    ({"tests": [{k: v for k, v in report_record().items() if k != "outcome"}]},
     "tests[0]: is missing field(s) outcome"),
    ({"ran": ["not", "a", "mapping"]}, "session.ran: must be a test id -> {outcome, seconds, message}"),
    ({"splits": "two"}, "session.splits: must be a count (an integer > 0), got 'two'"),
    ({"tests": [report_record(correct1=5)]}, "tests[0]: has impossible counts"),
    ({"tests": [report_record(top1=99.0)]}, "tests[0].top1: 99.0 does not match correct1/n = 75.0"),
    ({"tests": [report_record(gate={"verdict": "passed", "sequential": "early"})]},
     "tests[0].gate.sequential: must be a mapping of the sequential decision, got 'early'"),
    ({"tests": [report_record(gate={"verdict": "passed", "sequential": {
        "kind": "passed", "images": 10, "total": 20, "early": True, "bounds": {"top1": [-1, 1]}}})]},
     "tests[0].gate.sequential: has bounds of top1 without its estimate and allowed difference"),
])
def test_merge_names_the_malformed_field_by_its_path(vaccbench, tmp_path: Path, change: dict,
                                                     message: str) -> None:
    tests = change.pop("tests", None)
    shard = write_report(tmp_path, tests=tests, **change)
    done = vaccbench("merge", shard, "-o", tmp_path / "m.json")
    assert done.code == 2, done.out
    assert f"{shard}: not a --vaccbench-json report as this version writes them: {message}" in done.err
    assert not (tmp_path / "m.json").exists()


def test_merge_refuses_json_nested_a_hundred_thousand_levels(vaccbench, tmp_path: Path) -> None:
    shard = tmp_path / "deep.json"
    shard.write_text("[" * 100_000 + "]" * 100_000)
    done = vaccbench("merge", shard, "-o", tmp_path / "m.json")
    assert done.code == 2 and f"{shard}: not a --vaccbench-json report: its JSON is nested too deeply" in done.err


def test_merge_copies_no_predictions_from_outside_the_shards_folder(vaccbench, tmp_path: Path) -> None:
    secret = tmp_path / "secret.npz"
    secret.write_bytes(b"someone else's file")
    shard = write_report(tmp_path / "shard", tests=[report_record(predictions="../secret.npz")])
    out = tmp_path / "merged" / "m.json"
    out.parent.mkdir()
    done = vaccbench("merge", shard, "-o", out)
    assert done.code == 2 and "tests[0].predictions names predictions outside the report's folder" in done.err
    assert not any(p.name == "secret.npz" for p in out.parent.rglob("*"))


def test_merge_of_a_valid_shard_still_merges(vaccbench, tmp_path: Path) -> None:
    shard = write_report(tmp_path / "shard")
    done = vaccbench("merge", shard, "-o", tmp_path / "m.json", "--html", tmp_path / "m.html")
    assert done.code == 0, done.err
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["tests"][0]["predictions"] == "m.predictions/m.npz"
    assert (tmp_path / "m.predictions" / "m.npz").is_file() and (tmp_path / "m.html").is_file()


# -- durations, compare, trend, update-baselines --------------------------------------------------

def test_durations_with_seconds_as_text(vaccbench, tmp_path: Path) -> None:
    shard = write_report(tmp_path, ran={NODEID: {"outcome": "passed", "seconds": "12", "message": ""}})
    done = vaccbench("durations", shard)
    assert done.code == 2 and f"session.ran.{NODEID}.seconds: must be a number, got '12'" in done.err


def test_durations_from_a_history_with_seconds_as_text(vaccbench, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE results (run_id INTEGER, nodeid TEXT, seconds REAL)")
        con.execute("INSERT INTO results VALUES (1, 'a::b', 'twelve')")
    done = vaccbench("durations", db)
    assert done.code == 2 and "the results row of 'a::b' has seconds 'twelve'" in done.err


def test_compare_with_predictions_of_the_wrong_shape(vaccbench, tmp_path: Path) -> None:
    a = write_report(tmp_path / "a")
    b = write_report(tmp_path / "b")
    np.savez(tmp_path / "b" / "r.predictions" / "m.npz", top5=np.arange(4, dtype=np.int16),
             labels=np.ones(4, np.int16), files=np.array([f"img{i}.png" for i in range(4)]))
    done = vaccbench("compare", a, b)
    assert done.code == 2
    assert "m.npz: not a predictions file as runs write them: top5 is int16 (4,), not integer (N, 5)" in done.err


def test_compare_with_a_count_that_is_no_number(vaccbench, tmp_path: Path) -> None:
    a = write_report(tmp_path / "a", tests=[report_record(n="many")])
    done = vaccbench("compare", a, a, "--a", "fp32")
    assert done.code == 2 and "tests[0].n: must be a count (an integer > 0), got 'many'" in done.err


def test_compare_html_into_a_folder(vaccbench, tmp_path: Path) -> None:
    a = write_report(tmp_path / "a")
    done = vaccbench("compare", a, a, "--html", tmp_path)
    assert done.code == 2 and "argument --html" in done.err and "is a folder" in done.err


def test_trend_png_into_a_folder_is_refused_before_the_database_is_read(vaccbench, tmp_path: Path) -> None:
    done = vaccbench("trend", tmp_path / "no.db", "--png", tmp_path)
    assert done.code == 2 and "argument --png" in done.err and f"{tmp_path}: is a folder" in done.err


def test_trend_of_a_history_with_a_top1_that_is_text(vaccbench, tmp_path: Path) -> None:
    from pytest_vaccbench.history import _connect

    db = tmp_path / "h.db"
    con = _connect(db)
    with con:
        con.execute("INSERT INTO runs VALUES (1, '2026-01-01T00:00:00', '2026-01-01T00:01:00', 'h', "
                    "'t', 'c', 0)")
        con.execute("INSERT INTO results VALUES (1, 'n', 'fam', 'm', 'ort', 'fp32', 'd', 'f', 4, "
                    "'high', 90, NULL, NULL, 'passed', 1.0, 'cpu', 'v')")
    con.close()
    done = vaccbench("trend", db)
    assert done.code == 2 and "results row 1 (fam/m): top1 must be a number, got 'high'" in done.err


def test_update_baselines_from_a_report_whose_tests_are_no_list(vaccbench, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"session": {}, "tests": {}}))
    (tmp_path / "baselines").mkdir()
    done = vaccbench("update-baselines", "--from", report, "--baselines", tmp_path / "baselines")
    assert done.code == 2 and "tests: must be a list, got dict" in done.err


def test_update_baselines_from_a_malformed_report_changes_no_baseline(vaccbench, tmp_path: Path) -> None:
    """The report is read whole, through the reader, before anything is judged or written."""
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    (baselines / "fam.yaml").write_text("family: fam\n")
    report = write_report(tmp_path, tests=[report_record(baseline=str(baselines / "fam.yaml")),
                                           report_record(covers={"f00d": "four"})])
    done = vaccbench("update-baselines", "--from", report, "--baselines", baselines)
    assert done.code == 2, done.out
    assert "tests[1].covers.f00d: must be a count (an integer > 0), got 'four'" in done.err
    assert (baselines / "fam.yaml").read_text() == "family: fam\n"


def test_compare_reads_the_images_folder_through_the_report_reader(vaccbench, tmp_path: Path) -> None:
    a = write_report(tmp_path / "a", images=["not", "a", "folder"])
    done = vaccbench("compare", a, a, "--html", tmp_path / "c.html")
    assert done.code == 2 and "session.images: must be a string, got" in done.err


# -- score and models ------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--vaccbench-json", "--vaccbench-html", "--junitxml",
                                    "--vaccbench-history"])
def test_score_refuses_a_folder_as_a_report_before_reading_anything(vaccbench, tmp_path: Path,
                                                                      option: str) -> None:
    """A usage error (exit 4, as pytest's) from the output rule, before the results are read."""
    done = vaccbench("score", tmp_path / "no-such-result.txt", "--model", "fam/m", "--run",
                     "vamp/fp16", "--dataset-name", "data", option, tmp_path)
    assert done.code == 4
    assert f"argument {option}: {tmp_path}: is a folder: give a file name" in done.err
    assert "no-such-result" not in done.err and list(tmp_path.iterdir()) == []


def test_score_refuses_a_report_under_a_file(vaccbench, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where a folder would go")
    done = vaccbench("score", tmp_path / "result.txt", "--model", "fam/m", "--run", "vamp/fp16",
                     "--dataset-name", "data", "--vaccbench-json", tmp_path / "taken" / "r.json")
    assert done.code == 4 and f"{tmp_path / 'taken'} is a file, not a folder" in done.err


@pytest.fixture
def scoring(vaccbench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """`vaccbench score ARGS` of stub/stub-a vamp/fp16 on `val8`, in a project with its
    baseline and the images' result.txt (ARGS may name another dataset)."""
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "stub.yaml").write_text(rf.stub_baseline("val8", 75.0, 100.0))
    labels = np.arange(8) * 7
    rf.result_txt(tmp_path / "result.txt", rf.image_names(8), labels, rf.predictions(labels))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VACCBENCH_CACHE", str(tmp_path / "cache"))
    return lambda *args: vaccbench("score", "--model", "stub/stub-a", "--run", "vamp/fp16",
                                   "--dataset-name", "val8", *args)


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "result.txt")
    return folder / "result.txt"


def _damaged_vamp_output(folder: Path) -> Path:
    (folder / "out").mkdir()
    (folder / "out" / "output_000000.npz").write_bytes(b"PK\x03\x04 cut short")
    (folder / "datalist.txt").write_text("/data/npz/n01440764/ILSVRC2012_val_00000001.npz\n")
    return folder


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: (d / "result.txt").write_bytes(b"\xb4\x00" * 100) and d / "result.txt",
     "result.txt:1: not UTF-8 text (byte 0xb4 at column 1); save the file as UTF-8"),
    (_fifo, "result.txt: not a regular file (a pipe, socket or device?): give result files"),
    (_damaged_vamp_output, "output_000000.npz: cannot read this vamp output (File is not a zip "
                           "file): not an npz file as vamp writes them"),
])
def test_score_of_results_that_cannot_be_scored_is_a_failed_test(scoring, tmp_path: Path, make,
                                                                  message: str) -> None:
    """Exit 1, the test's status: the file (and line) named; a pipe is not read (it would wait)."""
    folder = tmp_path / "bad"
    folder.mkdir()
    done = scoring(make(folder))
    assert done.code == 1, done.err
    assert done.out.startswith(f"cannot score these results: {folder}") and message in done.out


def test_score_refuses_a_dataset_name_with_an_escape_sequence(scoring, tmp_path: Path) -> None:
    """It would become a baseline key and reach the terminal raw: a usage error, escaped."""
    before = (tmp_path / "baselines" / "stub.yaml").read_text()
    done = scoring("result.txt", "--update-baselines", "--dataset-name", "\x1b[31mred")
    assert done.code == 4 and "--dataset-name=\\x1b[31mred: holds control characters" in done.err
    assert "\x1b" not in done.err + done.out
    assert (tmp_path / "baselines" / "stub.yaml").read_text() == before


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--labels", ".", "--labels=.: is a folder, not a file"),
    ("--baselines", "result.txt", "--baselines=result.txt: is a file, not a folder"),
    ("--baselines", "baseline", "--baselines=baseline: no such folder; did you mean baselines?"),
])
def test_score_names_an_input_of_the_wrong_kind(scoring, option: str, value: str, message: str) -> None:
    done = scoring("result.txt", option, value)
    assert done.code == 4 and f"vaccbench score: error: {message}" in done.err


def test_score_of_a_broken_baseline_file_names_its_line(scoring, tmp_path: Path) -> None:
    (tmp_path / "baselines" / "stub.yaml").write_text(
        rf.stub_baseline("val8", 75.0, 100.0).replace("input_size: 32", "input_size: -32"))
    done = scoring("result.txt")
    assert done.code == 2
    assert done.err.startswith("vaccbench score: error: baselines/stub.yaml:9: models.stub-a.input_size")


def test_score_reports_a_bug_as_one_line(scoring, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_vaccbench import resultfiles

    def broken(*args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(resultfiles, "score_case", broken)
    done = scoring("result.txt")
    assert done.code == 3 and done.err.startswith("vaccbench score: internal error: ZeroDivisionError")


def test_models_of_a_missing_folder_names_the_closest(vaccbench, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "baselines").mkdir()
    monkeypatch.chdir(tmp_path)
    done = vaccbench("models", "--baselines", "baseline")
    assert done.code == 2
    assert done.err == "vaccbench models: error: --baselines=baseline: no such folder; did you mean baselines?\n"
    done = vaccbench("models", "--baselines", tmp_path / "baselines" / ".." / "x" / "..")
    assert done.code == 2 and "no such folder" in done.err


def test_models_of_a_broken_baseline_file_is_one_line(vaccbench, tmp_path: Path) -> None:
    (tmp_path / "fam.yaml").write_text("family: fam\nmodels: [not, a, mapping]\n")
    done = vaccbench("models", "--baselines", tmp_path)
    assert done.code == 2 and done.err.startswith(f"vaccbench models: error: {tmp_path / 'fam.yaml'}")


def test_models_under_the_boundary_reports_a_bug_as_one(vaccbench, tmp_path: Path, monkeypatch) -> None:
    from pytest_vaccbench.cli import models

    def broken(*args: object) -> list[str]:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(models, "model_lines", broken)
    done = vaccbench("models", "--baselines", tmp_path)
    assert done.code == 3 and done.err.startswith("vaccbench models: internal error: ZeroDivisionError")


# -- data tools ----------------------------------------------------------------------------------

@pytest.fixture
def flat(tmp_path: Path) -> Path:
    """A flat folder of four images and its val_label.txt."""
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (20, 24), (i * 40, 10, 10)).save(images / f"img{i}.png")
    (tmp_path / "data" / "val_label.txt").write_text("".join(f"img{i}.png {i + 1}\n" for i in range(4)))
    return images


@pytest.mark.parametrize("count", ["0", "-5", "x"])
def test_calib_set_needs_a_count(vaccbench, flat: Path, count: str) -> None:
    done = vaccbench("calib-set", flat, "-n", count)
    assert done.code == 2 and "argument -n/--images" in done.err


def test_calib_set_output_into_a_folder_or_a_missing_one(vaccbench, flat: Path, tmp_path: Path) -> None:
    done = vaccbench("calib-set", flat, "-n", "2", "--output", tmp_path)
    assert done.code == 2 and f"{tmp_path}: is a folder" in done.err
    done = vaccbench("calib-set", flat, "-n", "2", "--output", tmp_path / "no" / "c.txt")
    assert done.code == 2 and f"the folder {tmp_path / 'no'} does not exist" in done.err


def test_calib_set_of_images_beside_a_label_file_outside_the_dataset_folder(vaccbench, flat: Path) -> None:
    """--dataset names a subfolder; the label file one level up names the images beside it."""
    data = flat.parent
    for image in flat.iterdir():
        image.rename(data / image.name)
    (data / "sub").mkdir()
    done = vaccbench("calib-set", data / "sub", "-n", "2")
    assert done.code == 0, done.err
    listed = [line.split()[0] for line in done.out.splitlines()[1:]]
    assert len(listed) == 2 and all(Path(p).is_absolute() and Path(p).is_file() for p in listed)


def test_label_file_naming_images_outside_the_images_folder(vaccbench, flat: Path) -> None:
    labels = flat.parent / "val_label.txt"
    labels.write_text("img0.png 1\n../../secret.png 2\n")
    done = vaccbench("dataset", flat)
    assert done.code == 2
    assert f"{labels}:2: image '../../secret.png' is outside the images' folder" in done.err


def test_label_file_with_a_digit_python_reads_but_is_not_ascii(vaccbench, flat: Path) -> None:
    labels = flat.parent / "val_label.txt"
    labels.write_text("img0.png 1\nimg1.png \u00b2\n")
    done = vaccbench("dataset", flat)
    assert done.code == 2 and f"{labels}:2: expected `<image file> <class index>` (digits 0-9)" in done.err


@pytest.mark.parametrize("line", ["img1.png " + "9" * 5000, "x" * 1_000_000])
def test_label_file_with_one_huge_line(vaccbench, flat: Path, line: str) -> None:
    """A 1 MB line stands for the 50 MB one: the message shows 80 characters of it."""
    labels = flat.parent / "val_label.txt"
    labels.write_text(f"img0.png 1\n{line}\n")
    done = vaccbench("dataset", flat)
    assert done.code == 2 and f"{labels}:2: " in done.err and len(done.err) < 400, done.err[:500]


def test_prep_targets_are_checked_before_any_image_is_read(vaccbench, flat: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    done = vaccbench("prep", "folders", tmp_path / "no-dataset", a_file)
    assert done.code == 2 and f"{a_file}: is a file, not a folder" in done.err
    done = vaccbench("prep", "npz", flat, tmp_path / "npz", "--datalist", tmp_path)
    assert done.code == 2 and "argument --datalist" in done.err and "is a folder" in done.err
    assert not (tmp_path / "npz").exists()


def test_vamc_config_onnx_missing_or_not_onnx(vaccbench, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    config = tmp_path / "build.yaml"
    config.write_text("engine:\n  common: {do_quantization: true}\n  calibration: {quant_mode: max}\n")
    done = vaccbench("vamc-config", config, "--onnx", tmp_path / "absent.onnx")
    assert done.code == 2 and f"{tmp_path / 'absent.onnx'}: ONNX file not found" in done.err
    text = tmp_path / "model.onnx"
    text.write_text("these are not the weights you are looking for\n")
    done = vaccbench("vamc-config", config, "--onnx", text)
    assert done.code == 2 and f"{text}: not a readable ONNX model" in done.err


def test_vamc_config_whose_resize_is_zero(vaccbench, tmp_path: Path) -> None:
    config = tmp_path / "build.yaml"
    config.write_text("engine:\n  calibration: {quant_mode: max}\ndataset:\n  transform_ops:\n"
                      "    - {type: Resize, size: [0, 0]}\n    - {type: CenterCrop, crop_size: [224, 224]}\n")
    done = vaccbench("vamc-config", config)
    assert done.code == 2
    assert f"{config}: dataset.transform_ops Resize size must be a size in pixels (1 to 8192), got 0" in done.err


# -- export and import-readme --------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--size", "--num-classes"])
def test_export_needs_positive_sizes(vaccbench, tmp_path: Path, option: str) -> None:
    done = vaccbench("export", "--model-library", "timm", "--model-name", "test_resnet", option, "0",
                     "--save-dir", tmp_path)
    assert done.code == 2 and f"argument {option}: 0 is not a count" in done.err
    assert list(tmp_path.iterdir()) == []


def test_export_save_dir_that_is_a_file(vaccbench, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    done = vaccbench("export", "--model-library", "timm", "--model-name", "x", "--save-dir", tmp_path / "f")
    assert done.code == 2 and "is a file, not a folder" in done.err


README = """# Fam
Fam: A paper title

```
torchvision.transforms.Resize(256),
torchvision.transforms.CenterCrop(224),
torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
```

| model | source | top1 | top5 | input size |
|---|---|---|---|---|
| MobileNetV2 | ppcls | %s | 89.1 | 224 |
"""


def test_import_readme_family_with_path_parts_writes_nothing_outside(vaccbench, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    readme = work / "README.md"
    readme.write_text(README % "69.7")
    monkeypatch.chdir(work)
    done = vaccbench("import-readme", readme, "--family", "../../evil")
    assert done.code == 2 and "--family '../../evil' is not a plain name" in done.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["README.md", "a", "b"]


def test_import_readme_leaves_a_top1_that_is_no_percentage_null(tmp_path: Path) -> None:
    from pytest_vaccbench.baselines import load_family
    from pytest_vaccbench.importer import import_readme

    readme = tmp_path / "README.md"
    readme.write_text(README % "200")
    out = tmp_path / "fam.yaml"
    result = import_readme(readme, out, check=lambda library, arch: None)  # no timm import
    assert "12: warning: ppcls MobileNetV2: top1 200 is not a percentage (0-100); left null" in \
        [p.format(readme).split(":", 1)[1] for p in result.problems]
    (model,) = load_family(out).models.values()
    assert dict(model.published) == {"top1": None, "top5": 89.1}
