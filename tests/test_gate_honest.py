"""A gate that cannot lie: recording refuses broken builds, --dry-run writes nothing, the
printed update command runs as printed, `vaccbench update-baselines --from REPORT.json`
applies a report through the same function, a session that measured nothing is not green,
strict mode fails every skip, NaN scores are errors, and an entry with nothing to gate is an
error. Through pytest (pytester) on the rule-based backend of test_gates_plugin, whose
accuracies are known by construction."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from test_gates_plugin import project, run  # noqa: F401  (the fixture)
from vaccbench_fake import FakeProject, summary_table

from pytest_vaccbench.cli import main

BASELINE = "baselines/fake.yaml"


def _bytes(project: pytest.Pytester) -> bytes:
    return (project.path / BASELINE).read_bytes()


def test_recording_a_collapsed_int8_build_is_refused_unless_accepted(project: pytest.Pytester) -> None:
    before = _bytes(project)
    result = run(project, "-k", "collapsed", "--precision=int8-demo", "--update-baselines")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*not recorded: BROKEN BUILD: top1 0.000% vs 93.000% expected*",
        "--update-baselines refuses this result: the gate classifies it as a BROKEN BUILD; "
        "recording it would make the gate pass this build from now on. Fix the build, or pass "
        "--accept-broken to record it deliberately",
        "REFUSED fake-collapsed photos fake/int8-demo: the gate classifies it as a BROKEN BUILD*"])
    assert _bytes(project) == before  # byte-identical

    result = run(project, "-k", "collapsed", "--precision=int8-demo", "--update-baselines",
                 "--accept-broken")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["updated fake.yaml: fake-collapsed photos fake/int8-demo "
                                 "(a BROKEN BUILD, recorded with --accept-broken)"])
    assert "fake/int8-demo: {top1: 0.0, top5: 100.0, n: 100" in (project.path / BASELINE).read_text()


def test_a_collapse_is_refused_without_an_entry_of_its_own(project: pytest.Pytester) -> None:
    """No int8 entry yet: the fp32 run of the same model on the same images is the target."""
    path = project.path / BASELINE
    path.write_text(re.sub(r",\n\s+fake/int8-demo: \{top1: 93\.0[^}]*\}", "", path.read_text()))
    assert "93.0" not in path.read_text()
    run(project, "-k", "collapsed", "--precision=fp32")  # saves the fp32 predictions
    before = _bytes(project)
    result = run(project, "-k", "fake-collapsed", "--precision=int8-demo", "--update-baselines")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*not recorded: BROKEN BUILD: top1 0.000% vs *expected*"])
    assert _bytes(project) == before


def test_dry_run_prints_the_diff_and_writes_nothing(project: pytest.Pytester) -> None:
    before = _bytes(project)
    result = run(project, "-k", "regressed", "--update-baselines", "--dry-run")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "would update fake.yaml:", "--- a/fake.yaml", "+++ b/fake.yaml",
        "-*expected: {photos: {fake/fp32: {top1: 99.0, top5: 100.0, n: 100, fingerprint: *",
        "+*fake/fp32: {top1: 94.0, top5: 100.0, n: 100, fingerprint: *",
        "dry run: no baseline file was changed"])
    assert _bytes(project) == before
    result = run(project, "--dry-run")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dry-run applies to --update-baselines only"])


def test_the_printed_update_command_works_as_printed(project: pytest.Pytester) -> None:
    result = run(project, "-k", "regressed", "--limit=20")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    command = lines[lines.index("If the change is intended, record the new numbers:") + 1].strip()
    args = shlex.split(command)
    assert args[0] == "pytest" and "--limit=20" in args and "--dataset-name=photos-limit20" in args
    again = project.runpytest(*args[1:])
    assert again.ret == pytest.ExitCode.OK, again.stdout.str()
    again.stdout.fnmatch_lines(["updated fake.yaml: fake-regressed photos-limit20 fake/fp32"])


def test_update_from_a_json_report_uses_the_same_refusals(project: pytest.Pytester,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    report = project.path / "nightly.json"
    result = run(project, "-k", "regressed or fake-collapsed", "--precision=int8-demo,fp32",
                 f"--vaccbench-json={report}")
    result.assert_outcomes(passed=1, failed=2, skipped=1)  # no int8 baseline for regressed
    tests = {t["nodeid"].split("::")[1]: t for t in json.loads(report.read_text())["tests"]}
    assert tests["fake/fake-collapsed[fake-int8-demo]"]["gate"]["verdict"] == "broken"
    before = _bytes(project)
    baselines = str(project.path / "baselines")

    assert main(["update-baselines", "--from", str(report), "--baselines", baselines, "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED fake-collapsed photos fake/int8-demo: the gate classifies it as a BROKEN BUILD" in out
    assert "would update fake.yaml:" in out and "+" in out and "top1: 94.0" in out
    assert out.rstrip().endswith("dry run: no baseline file was changed") and _bytes(project) == before

    assert main(["update-baselines", "--from", str(report), "--baselines", baselines]) == 1
    out = capsys.readouterr().out
    assert "updated fake.yaml: fake-regressed photos fake/fp32" in out
    assert "updated fake.yaml: fake-collapsed photos fake/int8-demo" not in out
    text = (project.path / BASELINE).read_text()
    assert "fake/int8-demo: {top1: 93.0" in text and "top1: 99.0" not in text

    assert main(["update-baselines", "--from", str(report), "--baselines", baselines,
                 "--accept-broken"]) == 0
    assert "fake/int8-demo: {top1: 0.0" in (project.path / BASELINE).read_text()


def test_a_report_that_is_not_one_is_a_clear_error(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "baselines").mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tests": [{"nodeid": "x", "outcome": "passed", "family": "f",
                                          "model": "m", "backend": "b", "precision": "p",
                                          "dataset": "d", "fingerprint": "f", "n": 5,
                                          "correct1": 9, "correct5": 9, "seconds": 1.0,
                                          "top1": 180.0, "top5": 180.0,
                                          "predictions": "", "baseline": "/etc/passwd"}]}))
    assert main(["update-baselines", "--from", str(bad), "--baselines", str(tmp_path / "baselines")]) == 2
    assert "tests[0].top1: must be a percentage between 0 and 100, got 180.0" in capsys.readouterr().err
    bad.write_text(bad.read_text().replace("180.0", "100.0"))
    assert main(["update-baselines", "--from", str(bad), "--baselines", str(tmp_path / "baselines")]) == 2
    assert "tests[0]: has impossible counts: correct1 9 <= correct5 9 <= n 5 does not hold" in \
        capsys.readouterr().err
    bad.write_text("[1, 2")
    assert main(["update-baselines", "--from", str(bad), "--baselines", str(tmp_path / "baselines")]) == 2
    assert "not a --vaccbench-json report" in capsys.readouterr().err


def test_a_session_that_measured_nothing_is_not_green(project: pytest.Pytester) -> None:
    result = run(project, "--dataset-name=other")
    result.assert_outcomes(skipped=5)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines([
        "skipped (5): no baseline for fake-subset on dataset 'other' with fake/fp32 in fake.yaml*",
        "  fake/fake-subset fake/fp32, fake/fake-regressed fake/fp32, *",
        "ERROR: 0 of 5 selected accuracy tests measured: 5 skipped (no baseline for <model> on "
        "dataset 'other' with <run> in fake.yaml)"])


def test_strict_mode_fails_every_skip_with_its_reason(project: pytest.Pytester) -> None:
    result = run(project, "--dataset-name=other", "-k", "subset or regressed", "--vaccbench-strict")
    result.assert_outcomes(failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["strict mode (--vaccbench-strict): no baseline for fake-subset on "
                                 "dataset 'other'*",
                                 "ERROR: 0 of 2 selected accuracy tests measured: 2 FAILED (no "
                                 "baseline for <model> on dataset 'other' with <run> in fake.yaml)"])
    # the suite file's `strict: true` does the same
    suite = project.path / "suites" / "fake.yaml"
    suite.write_text(suite.read_text() + "strict: true\n")
    run(project, "--dataset-name=other", "-k", "subset").assert_outcomes(failed=1)


def test_an_entry_with_misspelt_keys_is_an_error_never_a_pass(project: pytest.Pytester) -> None:
    path = project.path / BASELINE
    path.write_text(path.read_text().replace("fake/fp32: {top1: 94.0, top5: 100.0,",
                                             "fake/fp32: {tpo1: 94.0, tpo5: 100.0,", 1))
    result = run(project, "-k", "subset")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines(["*fake.yaml:7: models.fake-subset.expected.photos.fake/fp32.tpo1 is "
                                 "not a known key: did you mean `top1`?*"])
    assert "passed" not in result.stdout.lines[-1]


def test_nan_scores_are_an_error_naming_the_images_never_a_result(pytester: pytest.Pytester) -> None:
    pytest.importorskip("skimage", reason="the built-in skimage-photos dataset needs scikit-image")
    fake = FakeProject(pytester.path, pytester)
    fake.plan({"timm-efficientnet_lite0": {"nan": True}})
    before = (fake.baselines / "efficientnet_lite.yaml").read_bytes()
    result = fake.run("-k", "efficientnet_lite0", "--update-baselines")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*efficientnet_lite/timm-efficientnet_lite0[[]fake-fp32]: the backend returned NaN or "
        "infinite scores for 2 of 5 images (motorcycle_left.png, rocket.jpg); check the model's "
        "outputs*"])
    assert summary_table(result.outlines)["efficientnet_lite/timm-efficientnet_lite0 fake/fp32"][-1] == "error"
    assert (fake.baselines / "efficientnet_lite.yaml").read_bytes() == before


def test_other_images_than_the_baselines_are_named_and_no_update_is_suggested(
        project: pytest.Pytester) -> None:
    path = project.path / BASELINE
    text = path.read_text()
    fingerprint = re.search(r"fingerprint: (\w+)", text).group(1)
    path.write_text(text.replace(fingerprint, "0123456789abcdef"))
    result = run(project, "-k", "regressed")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"measured on other images than the baseline: photos has fingerprint {fingerprint}, the "
        "baseline was measured on 0123456789abcdef; the numbers are not comparable*"])
    assert "--update-baselines" not in result.stdout.str() and "stale" not in result.stdout.str()


def test_collect_only_is_not_a_session_that_measured_nothing(project: pytest.Pytester) -> None:
    result = run(project, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert "selected accuracy tests measured" not in result.stdout.str()


def test_reasons_read_under_xdist_lose_the_worker_line() -> None:
    """pytest-xdist puts "[gw0] linux -- Python ..." before a failure's text; the reason (and
    with it a strict-mode failure's status) must not depend on it."""
    from types import SimpleNamespace

    from pytest_vaccbench.plugin.running import report_reason

    report = SimpleNamespace(skipped=False, longrepr=None, longreprtext=(
        "[gw1] linux -- Python 3.11.7 /usr/bin/python\nstrict mode (--vaccbench-strict): no baseline"))
    assert report_reason(report) == "strict mode (--vaccbench-strict): no baseline"  # type: ignore[arg-type]
    skipped = SimpleNamespace(skipped=True, longrepr=["f.yaml", 3, "Skipped: no weights"])
    assert report_reason(skipped) == "no weights"  # type: ignore[arg-type]
