"""The predictions store and --vaccbench-sequential in pytest sessions (a fake backend with
planned answers on 1000 images: tests/sequential_project.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from sequential_project import IMAGES, SequentialProject, store_file


@pytest.fixture
def project(pytester: pytest.Pytester) -> SequentialProject:
    return SequentialProject(pytester)


def test_recording_keeps_the_predictions_and_names_them_in_the_entry(project: SequentialProject) -> None:
    project.record()
    entry = project.entry()
    assert (entry["top1"], entry["top5"], entry["n"]) == (80.0, 94.0, IMAGES)
    path = store_file(project)
    assert path.is_file() and path.stat().st_size < 600  # 1000 images in a few hundred bytes
    project.plan({})
    again = project.run("--update-baselines", "--vaccbench-store=store", "--dry-run")
    assert "dry run: no baseline file was changed" in again.stdout.str()
    assert f"predictions: {entry['predictions']}" not in again.stdout.str()  # the same digest: no diff


def test_an_unchanged_build_passes_early_in_chunks(project: SequentialProject) -> None:
    project.record()
    done = project.run("--vaccbench-sequential", "--vaccbench-store=store", "--vaccbench-json=out.json",
                       "--vaccbench-html=out.html", "-rP", "--vaccbench-strict")
    done.assert_outcomes(passed=1)
    test = project.report()
    info = test["gate"]["sequential"]
    assert info["early"] and info["kind"] == "passed" and info["images"] < IMAGES
    # its power is the whole set's against its own stored run: the tolerance, not a weak gate
    assert (test["gate"]["detectable_top1"], test["gate"]["detectable_top5"]) == (0.5, 0.5)
    assert test["gate"]["weak"] is None and test["status"] == "passed"
    assert test["n"] == info["images"] == sum(project.calls())
    assert set(project.calls()) == {20} and len(project.calls()) == info["looks"]  # a round a call
    for metric in ("top1", "top5"):
        lo, hi = info["bounds"][metric]
        assert -0.5 <= lo <= 0 <= hi <= 0.5
    assert test["delta_top1"] == 0.0  # the estimate over the whole set, not the first images'
    assert test["gate"]["stored"]["lost"] == test["gate"]["stored"]["gained"] == 0
    out = done.stdout.str()
    assert f"stopped after {info['images']} of {IMAGES} images" in out
    assert f"fake-m fake/fp32: stopped after {info['images']} of {IMAGES} images" in out  # summary
    page = (project.path / "out.html").read_text()
    overview = page[page.index('<section id="sequential">'):page.index('<section id="tests">')]
    assert "1 test used" in overview and f'<td class="num">{info["images"]}</td><td class="num">{IMAGES}</td>' in overview
    panel = page[page.index('<section class="s-sequential">'):]
    assert f"stopped after {info['images']} of {IMAGES} images" in panel and "anytime bound" in panel


def test_a_regression_fails_early_with_the_full_runs_verdict(project: SequentialProject) -> None:
    project.record()
    project.plan({"lose": project.right_images(50)})  # 50 more images wrong: top1 -5 points
    done = project.run("--vaccbench-sequential", "--vaccbench-store=store", "--vaccbench-json=out.json")
    done.assert_outcomes(failed=1)
    info = project.report()["gate"]["sequential"]
    assert info["kind"] == "regression" and info["images"] < IMAGES
    assert info["bounds"]["top1"][1] < -0.5
    out = done.stdout.str()
    assert "top1 is at least" in out and "points below the baseline" in out and "sequential" in out
    assert "record the new numbers" in out
    project.plan({"lose": project.right_images(50)})
    full = project.run("--vaccbench-store=store", "--vaccbench-json=full.json")
    full.assert_outcomes(failed=1)
    assert project.report("full.json")["gate"]["verdict"] == "regression"
    assert project.report("full.json")["gate"]["stored"]["lost"] == 50


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_without_usable_stored_predictions_the_run_is_full_and_says_why(
        project: SequentialProject, damage: str) -> None:
    project.record()
    path = store_file(project)
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes() + b"x")
    done = project.run("--vaccbench-sequential", "--vaccbench-store=store", "--vaccbench-json=out.json", "-rP")
    done.assert_outcomes(passed=1)
    test = project.report()
    assert test["n"] == IMAGES and not test["gate"]["sequential"]["early"]
    why = "no store entry" if damage == "missing" else "damaged store entry"
    assert why in test["gate"]["sequential"]["why"]
    assert f"ran all {IMAGES} images: stored predictions of fakefam.yaml" in done.stdout.str()


def test_a_broken_class_is_named_with_its_images(project: SequentialProject) -> None:
    project.record()
    project.plan({"broken_class": 350})
    done = project.run("--vaccbench-store=store", "--vaccbench-json=out.json", "--vaccbench-html=out.html")
    done.assert_outcomes(failed=1)  # 40 of 1000 images lost: -4 points
    stored = project.report()["gate"]["stored"]
    (found,) = stored["classes"]
    assert (found["label"], found["lost"], found["gained"], found["name"]) == (350, 40, 0, "ibex")
    assert "1 class(es) changed significantly (Benjamini-Hochberg, FDR 5%): ibex (40/50 -> 0/50)" in done.stdout.str()
    assert len(found["flipped"]) == 8 and all(i["lost"] for i in found["flipped"])
    page = (project.path / "out.html").read_text()
    panel = page[page.index('<section class="s-stored">'):]
    panel = panel[:panel.index("</section>")]
    assert "<td>ibex</td>" in panel and panel.count('<figure class="lost"><img src="data:image/jpeg;base64,') == 8


def test_result_files_are_paired_with_the_stored_run(project: SequentialProject) -> None:
    """--results with --vaccbench-store: files a device host wrote are compared with the
    stored run image by image, as a run of a backend is."""
    project.record()
    project.plan({"broken_class": 350})
    project.run().assert_outcomes(failed=1)  # its predictions file: what the host hands over
    (npz,) = (project.path / "cache" / "predictions").rglob("*.npz")
    folder = project.path / "results" / "fakefam" / "fake-m" / "fake-fp32"
    folder.mkdir(parents=True)
    shutil.copy(npz, folder / "predictions.npz")
    done = project.pytester.runpytest("suites/", "-p", "no:cacheprovider", "--results=results",
                                      "--dataset-name=data", "--labels=data/val_label.txt",
                                      f"--vaccbench-cache={project.path / 'cache'}",
                                      "--vaccbench-store=store", "--vaccbench-json=out.json")
    done.assert_outcomes(failed=1)
    stored = project.report()["gate"]["stored"]
    assert (stored["n"], stored["lost"], stored["gained"]) == (IMAGES, 40, 0)
    assert [c["name"] for c in stored["classes"]] == ["ibex"]


def test_a_partial_result_is_never_recorded(project: SequentialProject,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    project.record()
    project.run("--vaccbench-sequential", "--vaccbench-store=store", "--vaccbench-json=out.json")
    from pytest_vaccbench.cli import main

    before = (project.path / "baselines" / "fakefam.yaml").read_text()
    capsys.readouterr()
    for accept in ([], ["--accept-other-images"]):  # fewer images, but that is not why
        assert main(["update-baselines", "--from", str(project.path / "out.json"),
                     "--baselines", str(project.path / "baselines"), *accept]) == 1
        assert "a sequential run measured" in capsys.readouterr().out
    assert (project.path / "baselines" / "fakefam.yaml").read_text() == before


@pytest.mark.parametrize("extra, message", [
    ((), "--vaccbench-sequential needs --vaccbench-store DIR"),
    (("--vaccbench-store=s", "--update-baselines"), "--update-baselines records full runs"),
    (("--vaccbench-store=s", "--results=data", "--dataset-name=data"),
     "--vaccbench-sequential does not apply to --results"),
])
def test_usage_errors(project: SequentialProject, extra: tuple[str, ...], message: str) -> None:
    done = project.run("--vaccbench-sequential", *extra)
    assert done.ret == pytest.ExitCode.USAGE_ERROR
    assert message in done.stderr.str()


@pytest.mark.slow
def test_sequential_runs_under_xdist(project: SequentialProject) -> None:
    project.record()
    done = subprocess.run([sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider",
                           "--dataset=data/images", "--vaccbench-cache=cache", "-n", "2",
                           "--vaccbench-sequential", "--vaccbench-store=store", "--vaccbench-json=out.json"],
                          cwd=project.path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    (test,) = json.loads((project.path / "out.json").read_text())["tests"]
    assert test["gate"]["sequential"]["early"] and "stopped after" in done.stdout


def test_update_from_a_report_keeps_the_predictions_beside_it(project: SequentialProject,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    project.run("--update-baselines", "--vaccbench-json=reports/out.json").assert_outcomes(passed=1)
    assert "predictions" not in project.entry()  # recorded without a store
    from pytest_vaccbench.cli import main

    assert main(["update-baselines", "--from", str(project.path / "reports" / "out.json"),
                 "--baselines", str(project.path / "baselines"), "--store", str(project.path / "kept")]) == 0
    digest = project.entry()["predictions"]
    assert (project.path / "kept" / digest[:2] / digest).is_file()
    done = project.run("--vaccbench-sequential", "--vaccbench-store=kept")
    done.assert_outcomes(passed=1)
    assert "stopped after" in done.stdout.str()


def test_int8_calibration_images_are_left_out_on_both_sides(project: SequentialProject) -> None:
    project.run("--precision=int8-max", "--update-baselines", "--vaccbench-store=store").assert_outcomes(passed=1)
    entry = project.entry("fake/int8-max")
    assert (entry["n"], entry["calibration_excluded"]) == (900, 100) and entry["predictions"]
    done = project.run("--precision=int8-max", "--vaccbench-sequential", "--vaccbench-store=store",
                       "--vaccbench-json=out.json")
    done.assert_outcomes(passed=1)
    test = project.report()
    assert test["excluded"] == 100 and test["gate"]["sequential"]["total"] == 900
    assert test["gate"]["sequential"]["early"] and test["n"] < 900


def test_a_plain_run_says_why_it_is_not_paired_with_the_named_predictions(project: SequentialProject) -> None:
    project.record()
    store_file(project).write_bytes(b"VACCBENCH-PREDICTIONS 1\n")
    done = project.run("--vaccbench-store=store", "--vaccbench-json=out.json", "-rP")
    done.assert_outcomes(passed=1)
    assert "not paired with the stored run: stored predictions of fakefam.yaml" in done.stdout.str()
    assert "damaged store entry" in project.report()["gate"]["stored"]["missing"]
