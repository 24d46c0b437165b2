"""`--update-baselines` and `--allow-improvement` through pytest (pytester, fake backend):
what is written, what never is, provenance, xdist, stale baselines."""

from __future__ import annotations

import datetime as _dt
import os
import xml.etree.ElementTree as ET

import pytest
from vaccbench_fake import N_IMAGES, FakeProject, summary_table

from pytest_vaccbench.baselines import _plain, read_yaml, update_file
from pytest_vaccbench.dataset import BUILTIN_SKIMAGE, resolve
from pytest_vaccbench.run import machine

pytest.importorskip("skimage", reason="the built-in skimage-photos dataset needs scikit-image")


@pytest.fixture
def project(pytester: pytest.Pytester) -> FakeProject:
    return FakeProject(pytester.path, pytester)


def _entry(project: FakeProject, family: str, key: str, run: str = "fake/fp32") -> dict | None:
    data = read_yaml(project.baselines / f"{family}.yaml")
    model = next(data[s][key] for s in ("models", "extra_models") if key in (data.get(s) or {}))
    found = ((model.get("expected") or {}).get("skimage-photos") or {}).get(run)
    return None if found is None else _plain(found)


def _without(project: FakeProject, family: str, keys: set[str]) -> dict:
    data = _plain(read_yaml(project.baselines / f"{family}.yaml"))
    for section in ("models", "extra_models"):
        for key in keys:
            (data.get(section) or {}).pop(key, None)
    return data


def test_update_writes_only_tests_that_produced_a_result(project: FakeProject):
    before = {f: _without(project, f, set()) for f in ("efficientnet_lite", "mobilenet_v2")}
    project.plan({"timm-efficientnet_lite0": {"correct": 3},
                  "local-mobilenetv2_100-tvq": {"raise": "the backend crashed"},
                  "keras-mobilenetv2": {"teardown_error": True}})
    result = project.run("--update-baselines", "-k", "not torchvision-mobilenet_v2")
    result.assert_outcomes(passed=3, failed=1, errors=1, deselected=1)

    lite = _entry(project, "efficientnet_lite", "timm-efficientnet_lite0")
    assert (lite["top1"], lite["top5"], lite["n"]) == (60.0, 100.0, N_IMAGES)
    assert _entry(project, "mobilenet_v2", "timm-mobilenetv2_100")["top1"] == 100.0
    # errored in the test, errored in teardown, deselected: nothing written for them
    for key in ("local-mobilenetv2_100-tvq", "keras-mobilenetv2", "torchvision-mobilenet_v2"):
        assert _entry(project, "mobilenet_v2", key) is None
    # and nothing else in either file changed (a partial run deletes nothing)
    lite_before = before["efficientnet_lite"]["models"]["timm-efficientnet_lite0"]
    lite_after = _plain(read_yaml(project.baselines / "efficientnet_lite.yaml"))["models"]["timm-efficientnet_lite0"]
    lite_after["expected"]["skimage-photos"].pop("fake/fp32")
    assert lite_after == lite_before
    assert _without(project, "mobilenet_v2", {"timm-mobilenetv2_100"}) == \
        {**before["mobilenet_v2"], "models": {k: v for k, v in before["mobilenet_v2"]["models"].items()
                                              if k != "timm-mobilenetv2_100"}}

    out = result.stdout.str()
    assert "updated efficientnet_lite.yaml: timm-efficientnet_lite0 skimage-photos fake/fp32" in out
    assert "updated mobilenet_v2.yaml: timm-mobilenetv2_100 skimage-photos fake/fp32" in out
    summary = {name: cells[-1] for name, cells in summary_table(out.splitlines()).items()}
    assert summary == {"efficientnet_lite/timm-efficientnet_lite0 fake/fp32": "updated",
                       "mobilenet_v2/timm-mobilenetv2_100 fake/fp32": "updated",
                       "mobilenet_v2/local-mobilenetv2_100-tvq fake/fp32": "error",
                       "mobilenet_v2/keras-mobilenetv2 fake/fp32": "error"}


def test_written_entries_carry_provenance(project: FakeProject):
    project.run("--update-baselines", "--batch-size=2", "--threads=1", "-k", "efficientnet_lite0")
    entry = _entry(project, "efficientnet_lite", "timm-efficientnet_lite0")
    import numpy

    assert entry == {
        "top1": 100.0, "top5": 100.0, "n": N_IMAGES,
        "fingerprint": resolve(BUILTIN_SKIMAGE).fingerprint(),
        "date": _dt.date.today().isoformat(),
        "versions": f"pytest-vaccbench 0.1.0, numpy {numpy.__version__}",
        "machine": machine(),
        "options": {"batch_size": 2, "threads": 1},
    }


def test_interrupted_session_changes_no_file(project: FakeProject):
    before = {p.name: p.read_bytes() for p in project.baselines.glob("*.yaml")}
    project.plan({"timm-mobilenetv2_100": {"interrupt": True}})
    result = project.run_subprocess("--update-baselines")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*interrupted: no baseline file was changed*"])
    assert {p.name: p.read_bytes() for p in project.baselines.glob("*.yaml")} == before
    assert project.update_calls() == []


def test_a_file_that_cannot_be_updated_is_left_alone_and_fails_the_session(project: FakeProject):
    project.plan({"keras-mobilenetv2": {"remove_from_baseline": True}})
    result = project.run("--update-baselines", "-k", "keras or efficientnet_lite0")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*updated efficientnet_lite.yaml: timm-efficientnet_lite0 skimage-photos fake/fp32",
        "ERROR: */mobilenet_v2.yaml: model 'keras-mobilenetv2' is not in this file any more "
        "(this file was left as it was)"])
    assert "renamed-model:" in (project.baselines / "mobilenet_v2.yaml").read_text()
    assert "fake/fp32" not in (project.baselines / "mobilenet_v2.yaml").read_text()


def test_xdist_workers_send_results_and_the_controller_writes_each_file_once(
        project: FakeProject, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("xdist")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # when this suite itself runs under xdist
    project.plan({"timm-efficientnet_lite0": {"correct": 2}, "timm-mobilenetv2_100": {"correct": 4},
                  "keras-mobilenetv2": {"correct": 1}})
    originals = {p.name: p.read_text() for p in project.baselines.glob("*.yaml")}
    serial = project.run("--update-baselines")
    serial.assert_outcomes(passed=5)
    written_serial = {p.name: p.read_text() for p in project.baselines.glob("*.yaml")}
    for name, text in originals.items():
        (project.baselines / name).write_text(text)
    (project.path / "update_calls.log").unlink()

    parallel = project.run("--update-baselines", "-n", "2", "--junitxml=junit.xml")
    parallel.assert_outcomes(passed=5)
    junit = ET.parse(project.path / "junit.xml")  # properties added once, by the controller
    props = [(p.get("name"), p.get("value")) for case in junit.iter("testcase")
             if case.get("name") == "mobilenet_v2/timm-mobilenetv2_100[fake-fp32]"
             for p in case.iter("property")]
    assert [v for k, v in props if k == "top1"] == ["80.0"]
    calls = project.update_calls()
    assert sorted(c["file"] for c in calls) == ["efficientnet_lite.yaml", "mobilenet_v2.yaml"]
    assert {c["worker"] for c in calls} == {None} and {c["pid"] for c in calls} == {os.getpid()}
    assert sum(c["entries"] for c in calls) == 5

    def numbers(texts: dict[str, str]) -> dict:
        found = {}
        for name, text in texts.items():
            (pytester.path / "tmp.yaml").write_text(text)
            data = read_yaml(pytester.path / "tmp.yaml")
            for section in ("models", "extra_models"):
                for key, model in (data.get(section) or {}).items():
                    entry = ((model.get("expected") or {}).get("skimage-photos") or {}).get("fake/fp32")
                    if entry:
                        found[(name, key)] = {k: entry[k] for k in ("top1", "top5", "n", "fingerprint")}
        return found

    written_parallel = {p.name: p.read_text() for p in project.baselines.glob("*.yaml")}
    assert len(numbers(written_serial)) == 5
    assert numbers(written_parallel) == numbers(written_serial)
    assert numbers(written_serial)[("mobilenet_v2.yaml", "timm-mobilenetv2_100")]["top1"] == 80.0


def _seed(project: FakeProject, key: str, family: str, top1: float) -> None:
    update_file(project.baselines / f"{family}.yaml",
                [(key, "skimage-photos", "fake/fp32", {"top1": top1, "top5": 100.0, "n": N_IMAGES})])


def test_a_result_better_than_the_baseline_fails_as_stale_unless_allowed(project: FakeProject):
    _seed(project, "timm-efficientnet_lite0", "efficientnet_lite", 40.0)  # measured: 60
    _seed(project, "timm-mobilenetv2_100", "mobilenet_v2", 100.0)  # measured: 60
    project.plan({"timm-efficientnet_lite0": {"correct": 3}, "timm-mobilenetv2_100": {"correct": 3}})
    selection = "efficientnet_lite0 or timm-mobilenetv2_100"

    result = project.run("-k", selection)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*baseline is stale, update with: pytest 'suites/fake.yaml::efficientnet_lite/"
        "timm-efficientnet_lite0[[]fake-fp32]' --backend=fake --precision=fp32 *--update-baselines",
        "*top1: measured  60.000  expected  40.000  delta +20.000  tolerance ±0.500  FAIL",
        "*(or pass --allow-improvement to accept results above the baseline)",
    ])
    out = result.stdout.str()
    assert "top1 is 40.000 points below the baseline" in out
    # a regression is not called stale (counted as message lines: with CI=true pytest repeats
    # whole messages in the short summary)
    assert sum(line.startswith("baseline is stale") for line in out.splitlines()) == 1
    table = summary_table(out.splitlines())
    assert table["efficientnet_lite/timm-efficientnet_lite0 fake/fp32"][:2] == ["60.000", "+20.000"]
    assert {name: cells[-1] for name, cells in table.items()} == {
        "efficientnet_lite/timm-efficientnet_lite0 fake/fp32": "stale",
        "mobilenet_v2/timm-mobilenetv2_100 fake/fp32": "FAILED"}

    allowed = project.run("-k", selection, "--allow-improvement")
    allowed.assert_outcomes(passed=1, failed=1)
    assert "top1 is 40.000 points below the baseline" in allowed.stdout.str()
