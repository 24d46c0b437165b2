"""Baselines a subset cannot weaken, and gates that say how small a drop they can see: through
pytest (pytester) on the rule-based backend of test_gates_plugin (100 images, 2 of each of 50
classes; fake-subset is right on 94 of them, on 17 of the 20 that --limit 20 takes).

Every recording path refuses an entry of fewer or other images with the file byte-identical
(`--update-baselines`, `vaccbench update-baselines --from`, and a merged report); a weak gate
is named in the status and fails under --vaccbench-strict; an update with the same numbers
changes nothing; the summary lists entries no selected test read."""

from __future__ import annotations

import json
import re

import pytest
from test_gates_plugin import project, run  # noqa: F401  (the fixture)

from pytest_vaccbench.cli import main

BASELINE = "baselines/fake.yaml"


def _bytes(project: pytest.Pytester) -> bytes:
    return (project.path / BASELINE).read_bytes()


def _fingerprints(project: pytest.Pytester) -> tuple[str, str]:
    """The fingerprints of all 100 images and of the 20 that --limit 20 takes."""
    from pytest_vaccbench.dataset import limit, resolve

    photos = resolve(str(project.path / "photos"))
    return photos.fingerprint(), limit(photos, 20).fingerprint()


@pytest.mark.slow
def test_a_subset_cannot_replace_the_whole_set_without_the_option(project: pytest.Pytester) -> None:
    full, sub = _fingerprints(project)
    before = _bytes(project)
    args = ("-k", "subset", "--limit=20", "--dataset-name=photos", "--update-baselines")
    result = run(project, *args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    refusal = (f"it would replace an entry measured on more images (n=100, fingerprint {full}) "
               f"with one measured on fewer (n=20, fingerprint {sub}): every later run would be "
               "held to a baseline that cannot see as small a drop. Measure at least 100 images, "
               "or pass --accept-other-images to record it deliberately")
    result.stdout.fnmatch_lines([f"--update-baselines refuses this result: {refusal}",
                                 f"REFUSED fake-subset photos fake/fp32: {refusal}"])
    assert _bytes(project) == before

    dry = run(project, *args, "--dry-run")
    assert dry.ret == pytest.ExitCode.TESTS_FAILED and _bytes(project) == before
    dry.stdout.fnmatch_lines(["REFUSED fake-subset photos fake/fp32: it would replace*",
                              "fake.yaml: no change", "dry run: no baseline file was changed"])

    result = run(project, *args, "--accept-other-images")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["updated fake.yaml: fake-subset photos fake/fp32"])
    assert f"fake/fp32: {{top1: 85.0, top5: 100.0, n: 20, fingerprint: {sub}" in \
        (project.path / BASELINE).read_text()


def _held_to_the_subset(project: pytest.Pytester) -> None:
    """fake-subset's entry as `--limit 20 --accept-other-images` records it: 85.0 on 20 images."""
    full, sub = _fingerprints(project)
    path = project.path / BASELINE
    path.write_text(path.read_text().replace(
        f"fake/fp32: {{top1: 94.0, top5: 100.0, n: 100, fingerprint: {full}}}",
        f"fake/fp32: {{top1: 85.0, top5: 100.0, n: 20, fingerprint: {sub}}}", 1))


# the baseline (85.0 on 20 of the 100 images) is the sample: both metrics are weak
WEAK = ("cannot see a top-1 drop under 19.1 points or a top-5 drop under 13.9 points; "
        "measure at least 100 images (this run measured 100, the baseline 20)")


def test_a_gate_held_to_a_subset_says_it_is_weak_and_fails_in_strict_mode(
        project: pytest.Pytester) -> None:
    _held_to_the_subset(project)
    result = run(project, "-k", "subset", "--vaccbench-json=r.json", "--vaccbench-html=r.html")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        f"*fake/fp32 build within the allowed difference (n=100, baseline n=20)*; but the gate is "
        f"weak: {WEAK}",
        "  fake-subset  94.000  +9.000   9.705    100  weak",  # 80 columns: compact
        f"weak: fake/fake-subset fake/fp32: {WEAK}"])
    (record,) = json.loads((project.path / "r.json").read_text())["tests"]
    assert record["status"] == "weak" and record["gate"]["weak"] == WEAK
    assert record["gate"]["detectable_top1"] == pytest.approx(19.1, abs=0.05)
    assert record["gate"]["allowed"]["top1"] == pytest.approx(9.705)  # of a rise: the other side
    page = (project.path / "r.html").read_text()
    assert '<tr class="test weak neutral"' in page and f"1 weak: {WEAK}" in page  # amber, named

    strict = run(project, "-k", "subset", "--vaccbench-strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines([f"strict mode (--vaccbench-strict): weak gate: {WEAK}"])


@pytest.mark.slow
def test_the_weak_limit_is_an_option_and_an_ini_key_and_more_images_need_no_option(
        project: pytest.Pytester) -> None:
    _held_to_the_subset(project)
    run(project, "-k", "subset", "--vaccbench-strict", "--max-allowed=20").assert_outcomes(passed=1)
    project.makeini("[pytest]\nvaccbench_max_allowed = 40x\n")
    run(project, "-k", "subset", "--vaccbench-strict").assert_outcomes(passed=1)
    # measuring the whole set again adds images to the entry's: recorded without the option
    result = run(project, "-k", "subset", "--update-baselines")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["updated fake.yaml: fake-subset photos fake/fp32"])
    assert "top1: 94.0, top5: 100.0, n: 100," in (project.path / BASELINE).read_text()


@pytest.mark.slow
def test_other_images_of_the_same_size_are_refused_in_every_path(project: pytest.Pytester,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    full, _ = _fingerprints(project)
    path = project.path / BASELINE
    path.write_text(path.read_text().replace(full, "0123456789abcdef"))
    before = _bytes(project)
    result = run(project, "-k", "regressed", "--update-baselines")
    assert result.ret == pytest.ExitCode.TESTS_FAILED and _bytes(project) == before
    other = (f"it was measured on other images than the entry it would replace (entry: n=100, "
             f"fingerprint 0123456789abcdef; this result: n=100, fingerprint {full}): the two "
             "numbers are not comparable. Run on the entry's images, record these under their own "
             "--dataset-name, or pass --accept-other-images to replace it deliberately")
    result.stdout.fnmatch_lines([f"REFUSED fake-regressed photos fake/fp32: {other}"])

    # the same result kept in a JSON report, and merged: the same refusal
    report = project.path / "nightly.json"
    run(project, "-k", "regressed", f"--vaccbench-json={report}")
    merged = project.path / "merged.json"
    assert main(["merge", str(report), "-o", str(merged)]) == 1  # the regression is red
    capsys.readouterr()
    baselines = str(project.path / "baselines")
    for source in (report, merged):
        assert main(["update-baselines", "--from", str(source), "--baselines", baselines]) == 1
        assert f"REFUSED fake-regressed photos fake/fp32: {other}" in capsys.readouterr().out
        assert _bytes(project) == before
    assert main(["update-baselines", "--from", str(merged), "--baselines", baselines,
                 "--accept-other-images"]) == 0
    assert "updated fake.yaml: fake-regressed photos fake/fp32" in capsys.readouterr().out
    assert f"top1: 94.0, top5: 100.0, n: 100, fingerprint: {full}" in path.read_text()


def test_the_json_report_path_refuses_a_subset_too(project: pytest.Pytester,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    report = project.path / "subset.json"
    run(project, "-k", "subset", "--limit=20", f"--vaccbench-json={report}")
    before = _bytes(project)
    baselines = str(project.path / "baselines")
    assert main(["update-baselines", "--from", str(report), "--baselines", baselines]) == 1
    out = capsys.readouterr().out
    assert "REFUSED fake-subset photos fake/fp32: it would replace an entry measured on more " \
           "images (n=100," in out and "--accept-other-images" in out
    assert _bytes(project) == before


def test_an_update_with_the_same_numbers_leaves_the_entry_byte_identical(project: pytest.Pytester) -> None:
    path = project.path / BASELINE
    old = "fake/fp32: {top1: 94.0, top5: 100.0, n: 100, fingerprint: "
    path.write_text(path.read_text().replace(old, "fake/fp32: {date: '2020-01-01', versions: "
                                                  "'pytest-vaccbench 0.0.1', top1: 94.0, top5: 100.0, "
                                                  "n: 100, fingerprint: ", 1))
    before = _bytes(project)
    result = run(project, "-k", "subset", "--update-baselines", "--vaccbench-json=r.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["  fake-subset  94.000  +0.000   0.500    100  unchanged",
                                 "unchanged fake.yaml: fake-subset photos fake/fp32 (same top1, "
                                 "top5, n and fingerprint)"])
    assert _bytes(project) == before  # no date or version churn
    (record,) = json.loads((project.path / "r.json").read_text())["tests"]
    assert record["status"] == "unchanged"
    # a changed number is written, with today's provenance; the unchanged entry keeps its own
    run(project, "-k", "subset or regressed", "--update-baselines").assert_outcomes(passed=2)
    lines = path.read_text().splitlines()
    assert sum("'2020-01-01'" in line for line in lines) == 1
    regressed = next(line for line in lines if "fake-regressed:" in line)
    assert "top1: 94.0, top5: 100.0, n: 100" in regressed and "date: '20" in regressed


def test_the_summary_lists_entries_no_selected_test_read(project: pytest.Pytester) -> None:
    result = run(project, "-k", "collapsed or subset", "--precision=fp32")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["baseline entries no selected test read (1):",
                                 "  fake/fake-collapsed on photos: fake/int8-demo"])
    # the int8 run of the known-broken model reads its fp32 entry (its target) and its own
    result = run(project, "-k", "knownbroken", "--precision=int8-demo")
    assert "baseline entries no selected test read" not in result.stdout.str()
