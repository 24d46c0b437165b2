"""The gates through the plugin: a suite run on generated images with a rule-based backend.

`FakeBackend` is registered in the backend registry for each test (monkeypatched BUILTIN)
and returns scores from the dataset's labels, so every accuracy below is known by
construction: 100 images, 2 for each of the first 50 ImageNet classes; a "good" model is
wrong on classes 0-2 (94% top1), the true class is always second (100% top5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_vaccbench import backends
from pytest_vaccbench.backends import Backend, RunOptions
from pytest_vaccbench.baselines import ModelEntry
from pytest_vaccbench.dataset import Dataset, imagenet_classes, resolve


class FakeBackend(Backend):
    """Predictions by rule from the labels (no model, no decoding); `arch` picks the rule.

    good: wrong (class + 1) on classes 0-2. drifty: wrong on classes 0-9, and its int8
    build answers class + 2 where fp32 answers class + 1 (same accuracy, 80% agreement).
    collapsed: its int8 build answers class 999 for every image.
    """

    name = "fake"
    precisions = ("fp32", "int8-demo")

    def scores(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> np.ndarray:
        labels = np.asarray(dataset.labels)
        int8 = precision != "fp32"
        wrong = labels < (10 if entry.arch == "drifty" else 3)
        pred = labels.copy()
        pred[wrong] += 2 if entry.arch == "drifty" and int8 else 1
        if entry.arch == "collapsed" and int8:
            pred[:] = 999
        rows = np.arange(len(labels))
        scores = np.zeros((len(labels), 1000), np.float32)
        scores[rows, labels] = 0.5
        scores[rows, pred] = 1.0
        return scores


SUITE = """\
baselines: ../baselines
families: all
models: ["*"]
backends: [fake]
precisions: [fp32]
"""

BASELINE = """\
family: fake
preprocess: {{resize: 2, crop: 2}}
tolerance: {{top1: 0.5, top5: 0.5}}
models:
  fake-subset:
    {{name: s, source: fake, library: null, arch: good, input_size: 2,
     expected: {{photos: {{fake/fp32: {{top1: 94.0, top5: 100.0, {full}}}}}}}}}
  fake-regressed:
    {{name: r, source: fake, library: null, arch: good, input_size: 2,
     expected: {{photos: {{fake/fp32: {{top1: 99.0, top5: 100.0, {full}}}}}}}}}
  fake-collapsed:
    {{name: c, source: fake, library: null, arch: collapsed, input_size: 2,
     expected: {{photos: {{fake/fp32: {{top1: 94.0, top5: 100.0, {full}}},
                          fake/int8-demo: {{top1: 93.0, top5: 100.0, {full}}}}}}}}}
  fake-knownbroken:
    {{name: k, source: fake, library: null, arch: collapsed, input_size: 2,
     expected: {{photos: {{fake/fp32: {{top1: 94.0, top5: 100.0, {full}}},
                          fake/int8-demo: {{top1: 0.0, top5: 100.0, broken: true}}}}}}}}
  fake-drifty:
    {{name: d, source: fake, library: null, arch: drifty, input_size: 2, min_agreement: 90,
     expected: {{photos: {{fake/fp32: {{top1: 80.0, top5: 100.0, {full}}},
                          fake/int8-demo: {{top1: 80.0, top5: 100.0, {full}}}}}}}}}
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setitem(backends.BUILTIN, "fake", f"{__name__}:FakeBackend")
    photos = pytester.mkdir("photos")
    for wnid, _ in imagenet_classes()[:50]:
        for i in range(2):
            Image.new("RGB", (2, 2), (i * 100, 0, 0)).save(photos / f"{wnid}_{i}.png")
    fingerprint = resolve(str(photos)).fingerprint()
    pytester.mkdir("suites").joinpath("fake.yaml").write_text(SUITE)
    pytester.mkdir("baselines").joinpath("fake.yaml").write_text(
        BASELINE.format(full=f"n: 100, fingerprint: {fingerprint}"))
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest("suites", f"--dataset={project.path / 'photos'}",
                             f"--vaccbench-cache={project.path / 'cache'}", "-rP", *args)


def gate_payloads(project: pytest.Pytester, *args: str) -> dict[str, dict]:
    """The `gate` part of each test's report payload, by test name."""
    rec = project.inline_run("suites", f"--dataset={project.path / 'photos'}",
                             f"--vaccbench-cache={project.path / 'cache'}", *args)
    return {r.nodeid.split("::")[1]: json.loads(dict(r.user_properties)["vaccbench"])["gate"]
            for r in rec.getreports("pytest_runtest_logreport")
            if r.when == "call" and r.user_properties}


def test_subset_passes_thanks_to_the_sampling_allowance(project: pytest.Pytester) -> None:
    # --limit 20 takes one image of each of classes 0-19: 17 right (85%) against 94% measured
    # on all 100 images; the 95% interval of 17/20 of 100 reaches 94.205
    result = run(project, "-k", "subset", "--limit=20")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*fake/fp32 build within the allowed difference (n=20, baseline n=100); top1 passed "
        "thanks to the sampling allowance*",
        "*top1: measured  85.000  expected  94.000  delta  -9.000  allowed ±9.705 "
        "(tolerance 0.500 + sampling 9.205)  ok",
        "*sampling: measured n=20 of the 100 images of photos*95% sampling error*"])


def test_the_same_subset_fails_when_the_allowance_is_narrower(project: pytest.Pytester) -> None:
    result = run(project, "-k", "subset", "--limit=20", "--confidence=0.5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*top1 is 9.000 points below the baseline (allowed ±4.707, "
                                 "n=20, baseline n=100)*"])


def test_a_regression_fails_with_the_update_command(project: pytest.Pytester) -> None:
    result = run(project, "-k", "regressed")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*top1 is 5.000 points below the baseline (allowed ±0.500, n=100)*",
        "*If the change is intended, record the new numbers:*",
        "*pytest ?suites/fake.yaml::fake/fake-regressed?fake-fp32?? --backend=fake "
        "--precision=fp32 *--update-baselines"])
    assert "BROKEN BUILD" not in result.stdout.str()


def test_a_collapsed_int8_build_fails_as_a_broken_build(project: pytest.Pytester) -> None:
    result = run(project, "-k", "collapsed or knownbroken", "--precision=int8-demo")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*BROKEN BUILD: top1 0.000% vs 93.000% expected — the fake/int8-demo build is broken, "
        "not a small regression*",
        # the entry marked broken: held to the same model's fp32 figure + the int8 allowance
        "*BROKEN BUILD: top1 0.000% vs 94.000% expected — the fake/int8-demo build is broken, "
        "not a small regression*reproduces the known-broken build recorded in the baseline*",
        "*target: fake/int8-demo is marked `broken: true`*fp32 figures with the int8 allowance*"])
    assert "--update-baselines" not in result.stdout.str()


def test_paired_agreement_below_min_agreement_fails(project: pytest.Pytester) -> None:
    # fp32 runs first and saves its predictions; int8 keeps 80% top1 but answers differently
    # on the 20 images both get wrong: agreement 80% < min_agreement 90
    result = run(project, "-k", "drifty", "--precision=fp32,int8-demo")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*top-1 agreement with fake/fp32 is 80.000%, below the "
        "baseline's min_agreement 90% (n=100)*",
        "*paired with fake/fp32 on the same 100 images: top-1 agreement 80.000% (80/100, exact: the "
        "whole dataset; min_agreement 90%)*"
        "fp32 right & run wrong 0, fp32 wrong & run right 0: exact McNemar p=1*"])


def test_paired_results_travel_in_the_report_payload(project: pytest.Pytester) -> None:
    gates = gate_payloads(project, "-k", "drifty or subset", "--precision=fp32,int8-demo")
    drifty = gates["fake/fake-drifty[fake-int8-demo]"]
    assert drifty["verdict"] == "regression"
    assert drifty["paired"]["agreement"] == 80.0 and drifty["paired"]["mcnemar_p"] == 1.0
    assert drifty["paired"]["reference"] == "fake/fp32"
    assert gates["fake/fake-drifty[fake-fp32]"]["paired"] is None  # fp32 needs no pairing
    assert gates["fake/fake-subset[fake-fp32]"]["top1_interval"] == [87.523, 97.221]


def test_without_fp32_predictions_only_the_paired_part_is_skipped(project: pytest.Pytester) -> None:
    result = run(project, "-k", "drifty", "--precision=int8-demo")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*paired: no fp32 predictions of fake/fake-drifty on photos "
                                 "(fingerprint *, n=100)*paired comparison skipped*"])


def test_confidence_must_be_a_probability(project: pytest.Pytester) -> None:
    result = run(project, "--confidence=95")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--confidence must be between 0 and 1, got 95.0*"])


def test_payload_keeps_its_existing_keys(project: pytest.Pytester) -> None:
    rec = project.inline_run("suites", f"--dataset={project.path / 'photos'}",
                             f"--vaccbench-cache={project.path / 'cache'}", "-k", "subset")
    (report,) = [r for r in rec.getreports("pytest_runtest_logreport") if r.when == "call"]
    payload = json.loads(dict(report.user_properties)["vaccbench"])
    assert set(payload) == {"result", "expected", "gate"}
    assert payload["expected"] == {"top1": 94.0, "top5": 100.0, "tol1": 0.5, "tol5": 0.5,
                                   "origin": "fake.yaml: fake-subset.expected.photos.fake/fp32",
                                   "run": "fake/fp32"}
    assert Path(payload["result"]["predictions"]).is_file()
