"""A project for the plugin tests of the predictions store and sequential gating (pytester).

1000 tiny PNG images, 50 in each of 20 classes (`data/images`, flat layout: the dataset is
named `data`; image i is of class (i % 20) * 50), and one model of a fake backend whose
answers are planned, so that every number is known: with j = i // 20, image i is right at
top-1 unless j % 5 == 0 and in the top 5 unless j % 20 == 0 (80% / 94%). plan.json can add
{"lose": [i, ...]} (those images now wrong: a regression) or {"broken_class": c} (every
image of class c wrong). In int8-max the first 100 images are calibration images, left out
of the count. The backend
implements only `scores`, so a sequential run goes through the generic `Backend.scorer`, one
call per chunk, as vamp does; each call's image count is logged to calls.log.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

IMAGES, CLASSES = 1000, 20

BACKEND = '''
import json
from pathlib import Path
import numpy as np
from pytest_vaccbench.backends import Backend, class_scores

HERE = Path(__file__).parent


class FakeBackend(Backend):
    name = "fake"
    precisions = ("fp32", "int8-max")

    def excluded_samples(self, entry, precision, dataset, options):
        """int8: the first 100 images calibrated the model, and are not counted."""
        return tuple(dataset.samples[:100]) if precision == "int8-max" else ()

    def scores(self, entry, precision, dataset, options):
        plan = json.loads((HERE / "plan.json").read_text())
        with (HERE / "calls.log").open("a") as log:
            log.write(f"{len(dataset.samples)}\\n")
        scores = np.zeros((len(dataset.samples), 1000), dtype=np.float32)
        for row, sample in enumerate(dataset.samples):
            i = int(sample.path.stem.rsplit("_", 1)[1])
            j = i // 20
            right = j % 5 != 0 and i not in plan.get("lose", []) and sample.label != plan.get("broken_class")
            scores[row, (sample.label + 500) % 1000] = 2.0  # the top-1 when wrong
            scores[row, sample.label] = 3.0 if right else 1.0 if j % 20 else -1.0
            scores[row, [(sample.label + k) % 1000 for k in (600, 700, 800)]] = 1.5
        return class_scores(scores, entry)
'''

CONFTEST = '''
from pytest_vaccbench import backends


def pytest_configure(config):
    backends.BUILTIN["fake"] = "fakebackend:FakeBackend"
    config.add_cleanup(lambda: backends.BUILTIN.pop("fake", None))
'''

BASELINE = """family: fakefam
preprocess: {resize: 8, resize_mode: square, crop: 8, library: cv2}
tolerance: {top1: 0.5, top5: 0.5}
models:
  fake-m:
    name: m
    source: fake
    library: null
    arch: null
    input_size: 8
"""


class SequentialProject:
    def __init__(self, pytester: pytest.Pytester) -> None:
        import cv2

        self.pytester = pytester
        self.path = pytester.path
        images = self.path / "data" / "images"
        images.mkdir(parents=True)
        rows = []
        for i in range(IMAGES):
            name = f"ILSVRC2012_val_{i:08d}.png"
            label = (i % CLASSES) * 50
            pixels = np.full((8, 8, 3), (label % 256, i % 256, 90), dtype=np.uint8)
            cv2.imwrite(str(images / name), pixels)
            rows.append(f"{name} {label}")
        (self.path / "data" / "val_label.txt").write_text("\n".join(rows) + "\n")
        (self.path / "baselines").mkdir()
        (self.path / "baselines" / "fakefam.yaml").write_text(BASELINE)
        (self.path / "suites").mkdir()
        (self.path / "suites" / "fake.yaml").write_text(
            "baselines: ../baselines\nfamilies: [fakefam]\nmodels: ['*']\nbackends: [fake]\n"
            "precisions: [fp32]\n")
        (self.path / "fakebackend.py").write_text(BACKEND)
        (self.path / "conftest.py").write_text(CONFTEST)
        self.plan({})

    @staticmethod
    def right_images(count: int) -> list[int]:
        """The `count` lowest-numbered images the plan {} gets right at top-1."""
        return [i for i in range(IMAGES) if (i // 20) % 5][:count]

    def plan(self, plan: dict) -> None:
        (self.path / "plan.json").write_text(json.dumps(plan))
        (self.path / "calls.log").write_text("")

    def calls(self) -> list[int]:
        return [int(line) for line in (self.path / "calls.log").read_text().split()]

    def run(self, *extra: str) -> pytest.RunResult:
        return self.pytester.runpytest("suites/", "-p", "no:cacheprovider", "--dataset=data/images",
                                       f"--vaccbench-cache={self.path / 'cache'}", *extra)

    def record(self) -> pytest.RunResult:
        """The baseline entry and its stored predictions, from a full run of the plan {}."""
        self.plan({})
        done = self.run("--update-baselines", "--vaccbench-store=store")
        done.assert_outcomes(passed=1)
        self.plan({})
        return done

    def entry(self, run: str = "fake/fp32") -> dict:
        """The recorded entry, read as plain YAML (the fake backend is registered in the runs
        only, so the schema check of this process would not know its runs)."""
        from ruamel.yaml import YAML

        data = YAML(typ="safe").load((self.path / "baselines" / "fakefam.yaml").read_text())
        return dict(data["models"]["fake-m"]["expected"]["data"][run])

    def report(self, name: str = "out.json") -> dict:
        (test,) = json.loads((self.path / name).read_text())["tests"]
        return test


def store_file(project: SequentialProject) -> Path:
    digest = project.entry()["predictions"]
    return project.path / "store" / digest[:2] / digest
