"""Sharded runs: the zoo of stand-in compiled models (tests/colour_zoo.py) run as one session
and as 3 pytest-split shards in separate processes with separate caches (one of them under
xdist), then `vaccbench merge`. pytest's own JUnit XML of each run is the independent record
of which tests ran and how they ended."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_vaccbench.merge import describe_selection, outcome_of

sys.path.insert(0, str(Path(__file__).parent))
import colour_zoo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("pytest_split")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def pytest_run(root: Path, *args: str, cache: str = "cache") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", *colour_zoo.pytest_args(root, cache),
                             "-q", *args], cwd=root, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def vaccbench(root: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys; from pytest_vaccbench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=root, env=env(),
                          capture_output=True, text=True)


def junit_cases(path: Path) -> dict[str, str]:
    """nodeid-like `classname::name` -> passed | failure | error | skipped, from a JUnit file."""
    cases = {}
    for case in ET.parse(path).iter("testcase"):
        tags = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        key = f"{case.get('classname')}::{case.get('name')}"
        assert key not in cases, f"{key} twice in {path}"
        cases[key] = tags[0] if tags else "passed"
    return cases


def junit_counts(path: Path) -> dict[str, str]:
    suite = next(ET.parse(path).iter("testsuite"))
    return {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")}


@dataclass
class Runs:
    root: Path
    single_code: int
    shard_codes: list[int]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = colour_zoo.build(tmp_path_factory.mktemp("zoo"))
    single = pytest_run(root, "--vaccbench-json=single.json", "--junitxml=single.xml", cache="cache0")
    shards = [pytest_run(root, "--splits=3", f"--group={i}", f"--vaccbench-json=shard{i}.json",
                         f"--junitxml=shard{i}.xml", *(["-n", "2"] if i == 2 else []),
                         cache=f"cache{i}") for i in (1, 2, 3)]
    codes = []
    for proc in (single, *shards):
        out, _ = proc.communicate(timeout=300)
        assert (root / "single.json").parent.is_dir()
        codes.append(proc.returncode)
        assert proc.returncode in (0, 1), out
    return Runs(root, codes[0], codes[1:])


@pytest.mark.slow
def test_three_shards_merge_to_the_single_run(runs: Runs) -> None:
    root = runs.root
    single = junit_cases(root / "single.xml")
    assert len(single) == 7 and sorted(single.values()).count("failure") == 1
    shard_cases = [junit_cases(root / f"shard{i}.xml") for i in (1, 2, 3)]
    assert all(shard_cases), "a shard ran nothing: the split is not a split"
    union = [key for cases in shard_cases for key in cases]
    assert len(union) == len(set(union)), "a test ran in two shards"
    assert {key: v for cases in shard_cases for key, v in cases.items()} == single

    merged = vaccbench(root, "merge", "shard1.json", "shard2.json", "shard3.json", "-o",
                       "nightly.json", "--junitxml", "nightly.xml", "--html", "nightly.html",
                       "--history", "history.db")
    assert merged.returncode == runs.single_code == 1, merged.stdout + merged.stderr
    assert "merged 3 shard report(s): 7 tests run of 7 selected" in merged.stdout
    assert "outcomes: 1 failed, 5 passed, 1 skipped" in merged.stdout
    assert "RED: 1 test(s) failed: suites/zoo.yaml::zoob/zoo-broken[vamp-fp16]" in merged.stdout

    def per_test(path: Path) -> dict[str, tuple]:
        return {t["nodeid"]: (t["outcome"], t.get("n"), t.get("correct1"), t.get("correct5"), t["status"])
                for t in json.loads(path.read_text())["tests"]}

    def everything_but_timing(path: Path) -> dict[str, dict]:
        varies = {"seconds", "predictions", "date", "options"}  # threads: fewer under xdist
        text = re.sub(r"/cache\d+", "/cache", path.read_text())  # notes and commands name each run's own cache
        text = re.sub(r"(loss ladder of [^\n]*); \d+s", r"\1", text)  # the ladder's own duration
        tests = json.loads(text)["tests"]
        for t in tests:
            t.get("explain", {}).pop("seconds", None)
        return {t["nodeid"]: {k: v for k, v in t.items() if k not in varies} for t in tests}

    want = per_test(root / "single.json")
    assert len(want) == 7 and want["suites/zoo.yaml::zoob/zoo-broken[vamp-fp16]"] == ("failed", 8, 1, 6, "FAILED")
    assert want["suites/zoo.yaml::zooa/zoo-m00[vamp-int8-percentile]"] == ("passed", 8, 6, 7, "passed")
    assert per_test(root / "nightly.json") == want
    assert everything_but_timing(root / "nightly.json") == everything_but_timing(root / "single.json")
    assert junit_counts(root / "nightly.xml") == junit_counts(root / "single.xml") == \
        {"tests": "7", "failures": "1", "errors": "0", "skipped": "1"}
    assert junit_cases(root / "nightly.xml") == single
    nightly = json.loads((root / "nightly.json").read_text())
    assert [t["nodeid"] for t in nightly["tests"]] == nightly["session"]["session_tests"]
    for test in (t for t in nightly["tests"] if "n" in t):  # the predictions travel with the report
        assert test["predictions"].startswith("nightly.predictions/")
        assert (root / test["predictions"]).is_file()
    with sqlite3.connect(root / "history.db") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)
        assert db.execute("SELECT COUNT(*), SUM(status = 'FAILED') FROM results").fetchone() == (7, 1)
    assert "zoo-broken" in (root / "nightly.html").read_text()
    # the merged report is a report like any other: it merges again, alone
    again = vaccbench(root, "merge", "nightly.json", "-o", "again.json")
    assert again.returncode == 1 and per_test(root / "again.json") == want, again.stderr
    assert "RED: 1 test(s) failed" in again.stdout and "no report of group" not in again.stdout


def _copy(root: Path, name: str, new: str, **session: object) -> str:
    document = json.loads((root / name).read_text())
    document["session"].update(session)
    (root / new).write_text(json.dumps(document))
    return new


@pytest.mark.parametrize("key, value", [("fingerprint", "0123456789abcdef"),
                                        ("baselines_digest", "feedfacefeedface"),
                                        ("suites", {"suites/other.yaml": "0" * 64}),
                                        ("splits", 4)])
def test_merge_refuses_shards_of_different_runs(runs: Runs, key: str, value: object) -> None:
    other = _copy(runs.root, "shard3.json", f"other-{key}.json", **{key: value})
    done = vaccbench(runs.root, "merge", "shard1.json", "shard2.json", other, "-o", f"x-{key}.json")
    assert done.returncode == 2
    assert f"the shards disagree on `{key}`" in done.stderr and f"other-{key}.json" in done.stderr
    assert "refusing to merge" in done.stderr and "Traceback" not in done.stderr
    assert not (runs.root / f"x-{key}.json").exists()


def test_merge_refuses_a_test_two_shards_ran(runs: Runs) -> None:
    twice = _copy(runs.root, "shard2.json", "shard2-again.json")
    done = vaccbench(runs.root, "merge", "shard1.json", "shard2.json", "shard3.json", twice,
                     "-o", "x.json")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "was run by two shards: shard2.json (group 2 of 3) and shard2-again.json" in done.stderr


def test_merge_without_a_shard_is_red_and_lists_what_no_shard_ran(runs: Runs) -> None:
    root = runs.root
    done = vaccbench(root, "merge", "shard1.json", "shard3.json", "-o", "partial.json",
                     "--junitxml", "partial.xml")
    assert done.returncode == 1
    assert "RED: no report of group(s) 2 of 3" in done.stdout
    ran = set(json.loads((root / "shard2.json").read_text())["session"]["ran"])
    partial = json.loads((root / "partial.json").read_text())["session"]
    assert set(partial["missing"]) == ran and ran
    assert f"RED: {len(ran)} test(s) no shard ran: " in done.stdout
    errors = {k for k, v in junit_cases(root / "partial.xml").items() if v == "error"}
    assert len(errors) == len(ran)


def test_a_test_whose_worker_crashed_makes_the_merge_red(runs: Runs) -> None:
    """xdist's report of a crashed worker has no result: only the shard's `ran` knows."""
    root = runs.root
    name = next(f"shard{i}.json" for i in (1, 2, 3) if '"status": "passed"' in (root / f"shard{i}.json").read_text())
    document = json.loads((root / name).read_text())
    nodeid = next(t["nodeid"] for t in document["tests"] if t["status"] == "passed")
    document["tests"] = [t for t in document["tests"] if t["nodeid"] != nodeid]
    document["session"]["ran"][nodeid] = {"outcome": "error", "seconds": 1.0,
                                          "message": "worker 'gw0' crashed while running it"}
    document["session"]["exitstatus"] = 1
    (root / "crashed.json").write_text(json.dumps(document))
    shards = [n if n != name else "crashed.json" for n in ("shard1.json", "shard2.json", "shard3.json")]
    done = vaccbench(root, "merge", *shards, "-o", "crashed-merged.json", "--junitxml", "crashed.xml")
    assert done.returncode == 1 and "RED: 2 test(s) failed: " in done.stdout and nodeid in done.stdout
    test = nodeid.split("::")[1]
    assert junit_cases(root / "crashed.xml")[f"suites.zoo.yaml::{test}"] == "error"


def test_merge_says_which_predictions_did_not_come_with_a_report(runs: Runs, tmp_path: Path) -> None:
    for i in (1, 2, 3):  # shard 1 without its .predictions/ folder
        shutil.copy(runs.root / f"shard{i}.json", tmp_path)
        if i != 1:
            shutil.copytree(runs.root / f"shard{i}.predictions", tmp_path / f"shard{i}.predictions")
    lost = [t["nodeid"] for t in json.loads((runs.root / "shard1.json").read_text())["tests"]
            if t.get("predictions")]
    done = vaccbench(tmp_path, "merge", "shard1.json", "shard2.json", "shard3.json", "-o", "n.json")
    assert done.returncode == 1 and f"note: {len(lost)} test(s) without their per-image predictions" in done.stdout
    tests = {t["nodeid"]: t for t in json.loads((tmp_path / "n.json").read_text())["tests"]}
    assert {t for t in lost if tests[t]["predictions"] is None} == set(lost)


def test_merge_explains_bad_inputs(runs: Runs, tmp_path: Path) -> None:
    (tmp_path / "junk.json").write_text("{not json")
    old = json.loads((runs.root / "shard1.json").read_text())
    del old["session"]["baselines_digest"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    for name, message in (("junk.json", "junk.json: not a --vaccbench-json report: not JSON"),
                          ("old.json", "old.json: this report lacks baselines_digest"),
                          ("absent.json", "absent.json: cannot read this report")):
        done = vaccbench(runs.root, "merge", str(tmp_path / name), "-o", str(tmp_path / "x.json"))
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_durations_feed_pytest_split(runs: Runs) -> None:
    root = runs.root
    done = vaccbench(root, "durations", "single.json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    report = json.loads((root / "single.json").read_text())
    assert set(found) == set(report["session"]["session_tests"])
    for test in report["tests"]:  # measured inference seconds, not pytest's wall time
        if "seconds" in test:  # a test that measured (skips: pytest's time)
            assert found[test["nodeid"]] == test["seconds"]
    (root / ".test_durations").write_text(done.stdout)
    for group in (1, 2):  # pytest-split finds every test id: its estimate is the sum of ours
        collected = subprocess.run([sys.executable, "-m", "pytest", *colour_zoo.pytest_args(root),
                                    "--collect-only", "-q", "--splits=2", f"--group={group}",
                                    "--splitting-algorithm=least_duration"],
                                   cwd=root, env=env(), capture_output=True, text=True)
        ids = [line for line in collected.stdout.splitlines() if line.startswith("suites/")]
        estimate = float(re.search(r"estimated duration: ([\d.]+)s", collected.stdout)[1])
        assert ids and estimate == pytest.approx(sum(found[i] for i in ids), abs=0.01)


def test_durations_from_history_take_each_tests_latest_run(tmp_path: Path) -> None:
    from pytest_vaccbench.history import append_run
    from pytest_vaccbench.merge import durations
    from pytest_vaccbench.report import Row
    from pytest_vaccbench.run import Result

    def rows(seconds: float) -> list[Row]:
        result = Result("f", "m", "vamp", "fp16", "d", "fp", 8, 6, 7, seconds, "", "b.yaml")
        return [Row("suites/s.yaml::f/m[vamp-fp16]", "passed", result), Row("suites/s.yaml::x", "failed")]

    db = tmp_path / "h.db"
    for seconds in (5.0, 2.5):
        append_run(db, rows(seconds), {"started": "2026-01-01T00:00:00", "finished": "x"})
    assert durations(db) == {"suites/s.yaml::f/m[vamp-fp16]": 2.5}
    done = vaccbench(tmp_path, "durations", str(tmp_path / "absent.db"))
    assert done.returncode == 2 and "history database does not exist" in done.stderr


def test_selection_digest_follows_the_baseline_files(tmp_path: Path) -> None:
    suite, a, b = tmp_path / "suites" / "s.yaml", tmp_path / "baselines" / "a.yaml", tmp_path / "b.yaml"
    for path in (suite, a, b):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(path.name)
    tests = [("suites/s.yaml::a/m[x]", suite, a), ("suites/s.yaml::b/m[x]", suite, b)]
    first = describe_selection(tests, tmp_path)
    assert first["baselines"] == ["b.yaml", "baselines/a.yaml"]
    assert list(first["suites"]) == ["suites/s.yaml"]
    assert first["session_tests"] == ["suites/s.yaml::a/m[x]", "suites/s.yaml::b/m[x]"]
    moved = tmp_path / "elsewhere"  # the same files checked out in another place: same digest
    shutil.copytree(tmp_path, moved, ignore=shutil.ignore_patterns("elsewhere"))
    assert describe_selection([(n, moved / s.relative_to(tmp_path), moved / f.relative_to(tmp_path))
                               for n, s, f in tests], moved) == first
    a.write_text("changed")
    assert describe_selection(tests, tmp_path)["baselines_digest"] != first["baselines_digest"]


def test_outcome_folds_phases() -> None:
    record = outcome_of(None, "setup", "passed", 0.5, "")
    record = outcome_of(record, "call", "failed", 1.0, "gate failed")
    assert record == {"outcome": "failed", "seconds": 1.5, "message": "gate failed"}
    assert outcome_of(record, "teardown", "failed", 0.25, "boom")["outcome"] == "error"
    assert outcome_of(None, "setup", "skipped", 0.0, "why")["outcome"] == "skipped"
    started = outcome_of(None, "setup", "passed", 0.5, "")  # and then its worker died
    assert started["outcome"] == "error" and "no result came back" in started["message"]
    assert outcome_of(started, "???", "failed", 0.0, "worker 'gw1' crashed")["outcome"] == "error"
