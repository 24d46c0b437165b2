"""Three real sessions (the fake backend of vaccbench_fake, five photos) whose HTML reports
the browser tests measure and docs/reports.md shows:

- green: two models in fp32 and int8-max, all within tolerance, after three sessions that
  recorded their numbers in a history (trend sparklines); int8 flips one photo (a thumbnail);
- red: a pass, a stale baseline, a regression, an error and a skip;
- strict: the vamp backend in strict mode without the accelerator's runner: every test
  fails for the same reason.
"""

from __future__ import annotations

from pathlib import Path

from vaccbench_fake import N_IMAGES, FakeProject

from pytest_vaccbench.baselines import update_file

GREEN_SELECTION = ("-k", "efficientnet_lite0 or timm-mobilenetv2_100", "--precision=fp32,int8-max")
# (lite0 fp32, lite0 int8-max, mobilenetv2_100 fp32, mobilenetv2_100 int8-max): photos right
GREEN_SESSIONS = ((4, 4, 5, 5), (3, 3, 5, 4), (3, 2, 4, 4))

# A pass, a stale baseline, a regression, an error (no result) and a skip (no baseline for
# the fake backend); the baselines' top1 on the five photos
RED_PLAN = {"timm-efficientnet_lite0": {"correct": 3}, "timm-mobilenetv2_100": {"correct": 5},
            "local-mobilenetv2_100-tvq": {"correct": 1}, "keras-mobilenetv2": {"raise": "no device"},
            "torchvision-mobilenet_v2": {"correct": 4}}
RED_BASELINES = {("efficientnet_lite", "timm-efficientnet_lite0"): 60.0,
                 ("mobilenet_v2", "timm-mobilenetv2_100"): 40.0,
                 ("mobilenet_v2", "local-mobilenetv2_100-tvq"): 60.0,
                 ("mobilenet_v2", "keras-mobilenetv2"): 60.0}

REPORTS = ("--vaccbench-json=out/report.json", "--vaccbench-html=out/report.html")


def _plan(project: FakeProject, counts: tuple[int, int, int, int]) -> None:
    lite_fp32, lite_int8, mnv2_fp32, mnv2_int8 = counts
    project.plan({"timm-efficientnet_lite0": {"correct": lite_fp32, "int8-max": {"correct": lite_int8}},
                  "timm-mobilenetv2_100": {"correct": mnv2_fp32, "int8-max": {"correct": mnv2_int8}}})


def green(folder: Path) -> FakeProject:
    project = FakeProject(folder)
    history = "--vaccbench-history=out/history.db"
    for counts in GREEN_SESSIONS:
        _plan(project, counts)
        done = project.run_subprocess(*GREEN_SELECTION, "--update-baselines", history)
        assert done.ret == 0, done.outlines[-30:]
    done = project.run_subprocess(*GREEN_SELECTION, history, *REPORTS)
    assert done.ret == 0, done.outlines[-30:]
    return project


def seeded(project: FakeProject) -> FakeProject:
    """The red session's baselines and plan."""
    for (family, key), top1 in RED_BASELINES.items():
        update_file(project.baselines / f"{family}.yaml",
                    [(key, "skimage-photos", "fake/fp32", {"top1": top1, "top5": 100.0, "n": N_IMAGES})])
    project.plan(RED_PLAN)
    return project


def red(folder: Path) -> FakeProject:
    project = seeded(FakeProject(folder))
    done = project.run_subprocess(*REPORTS)
    assert done.ret == 1, done.outlines[-30:]
    return project


def strict(folder: Path) -> FakeProject:
    project = FakeProject(folder)
    done = project.run_subprocess("--backend=vamp", "--vaccbench-strict", "--vamp-bin=vamp", *REPORTS)
    assert done.ret == 1, done.outlines[-30:]
    return project


SESSIONS = {"green": green, "red": red, "strict": strict}
