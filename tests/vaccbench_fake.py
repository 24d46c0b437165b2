"""A fake backend and session setup for the plugin tests of updates and reports (pytester).

The fake backend reads the images through the shared batch loop (so progress and decode
errors behave as with a real backend) and returns scores that are right for a planned
number of images per model, so every number a report shows is known in advance:
plan.json maps a model key to {"correct": k} (top-1 right for the first k images, top-5
right for all; with "int8-max": {"correct": j}, j in that precision), {"raise": "message"},
{"interrupt": true}, {"teardown_error": true},
{"remove_from_baseline": true} (renames the model in its baseline file, as an edit during
the session would), {"sleep": seconds per image}, {"nan": true} (NaN scores for the last two
images) or {"pidfile": name} (writes its process id there, then waits to be killed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 5  # the built-in skimage-photos dataset
# its images in dataset order (file names sorted) with their classes, from its label file
# pytest_vaccbench/data/skimage_photos.txt: camera, chelsea, coffee, motorcycle_left, rocket
LABELS = [872, 281, 967, 665, 657]

BACKEND = '''
import json, os, time
from pathlib import Path
import numpy as np
from pytest_vaccbench.backends import Backend, class_scores, iter_batches

PLAN = Path(__file__).with_name("plan.json")


class FakeBackend(Backend):
    name = "fake"
    precisions = ("fp32", "int8-max")
    packages = ("numpy",)

    def scores(self, entry, precision, dataset, options):
        plan = json.loads(PLAN.read_text()).get(entry.key, {})
        plan = {**plan, **plan.get(precision, {})}  # what differs for this precision
        if "raise" in plan:
            raise RuntimeError(plan["raise"])
        if plan.get("interrupt"):
            raise KeyboardInterrupt
        if "pidfile" in plan:
            Path(plan["pidfile"]).write_text(str(os.getpid()))
            time.sleep(120)
        if plan.get("remove_from_baseline"):  # someone edits the file during the session
            text = entry.baseline_path.read_text()
            entry.baseline_path.write_text(text.replace(f"  {entry.key}:", "  renamed-model:"))
        done = 0
        for batch in iter_batches(dataset.samples, entry.preprocess, self.batch_size(entry, options), 1):
            done += len(batch)
            time.sleep(plan.get("sleep", 0) * len(batch))
        assert done == len(dataset.samples)
        correct = plan.get("correct", len(dataset.samples))
        scores = np.zeros((len(dataset.samples), 1000), dtype=np.float32)
        for i, label in enumerate(dataset.labels):
            scores[i, label] = 1.0 if i < correct else 0.5
            if i >= correct:
                scores[i, (label + 1) % 1000] = 1.0
        if plan.get("nan"):
            scores[-2:] = np.nan
        return class_scores(scores, entry)
'''

CONFTEST = '''
import json, os
from pathlib import Path
import pytest
from pytest_vaccbench import backends, updates

LOG = Path(__file__).with_name("update_calls.log")


def pytest_configure(config):
    """Register the fake backend, and log every baseline write with the writing process."""
    real = updates.update_file

    def logged(path, entries, *args, **kwargs):
        with LOG.open("a") as log:
            log.write(json.dumps({"pid": os.getpid(), "worker": os.environ.get("PYTEST_XDIST_WORKER"),
                                  "file": Path(path).name, "entries": len(entries)}) + "\\n")
        return real(path, entries, *args, **kwargs)

    backends.BUILTIN["fake"] = "fakebackend:FakeBackend"
    updates.update_file = logged

    def restore():
        updates.update_file = real
        backends.BUILTIN.pop("fake", None)

    config.add_cleanup(restore)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item):
    yield  # pytest's own teardown first, then fail
    plan = json.loads(Path(__file__).with_name("plan.json").read_text())
    if hasattr(item, "case") and plan.get(item.case.entry.key, {}).get("teardown_error"):
        raise RuntimeError("teardown failed")
'''

MODELS = ["timm-efficientnet_lite0", "timm-mobilenetv2_100", "local-mobilenetv2_100-tvq",
          "keras-mobilenetv2", "torchvision-mobilenet_v2"]


class FakeProject:
    """A folder with copies of two real baseline files and a suite of five models.

    Sessions run in-process through pytester when one is given, else in a subprocess (for
    module-scoped fixtures, and for what pytester cannot run in-process: a KeyboardInterrupt).
    """

    def __init__(self, path: Path, pytester: pytest.Pytester | None = None) -> None:
        self.path, self.pytester = path, pytester
        self.baselines = self.path / "baselines"
        self.baselines.mkdir()
        for name in ("efficientnet_lite.yaml", "mobilenet_v2.yaml"):
            shutil.copy(ROOT / "baselines" / name, self.baselines / name)
        (self.path / "suites").mkdir()
        (self.path / "suites" / "fake.yaml").write_text(
            "baselines: ../baselines\nfamilies: [efficientnet_lite, mobilenet_v2]\n"
            f"models: {json.dumps(MODELS)}\nbackends: [fake]\nprecisions: [fp32]\n")
        (self.path / "fakebackend.py").write_text(BACKEND)
        (self.path / "conftest.py").write_text(CONFTEST)
        self.plan({})

    def plan(self, plan: dict) -> None:
        (self.path / "plan.json").write_text(json.dumps(plan))

    def args(self, *extra: str) -> list[str]:
        return ["suites/", "-p", "no:cacheprovider", f"--vaccbench-cache={self.path / 'cache'}", *extra]

    def run(self, *extra: str) -> pytest.RunResult:
        if self.pytester is not None:
            return self.pytester.runpytest(*self.args(*extra))
        return self.run_subprocess(*extra)

    def run_subprocess(self, *extra: str) -> pytest.RunResult:
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", *self.args(*extra)], cwd=self.path,
                              capture_output=True, text=True, timeout=600)
        return pytest.RunResult(done.returncode, done.stdout.splitlines(), done.stderr.splitlines(),
                                time.monotonic() - start)

    def update_calls(self) -> list[dict]:
        log = self.path / "update_calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def summary_table(lines: list[str]) -> dict[str, list[str]]:
    """The terminal table of report.summary_lines, in either layout: "family/key run" -> the
    numbers and the status of that test (the columns of the header line)."""
    start = next(i for i, line in enumerate(lines) if "vaccbench accuracy" in line)
    header = next(line for line in lines[start:] if line.startswith("model "))
    numbers = len(header.split()) - 2 - ("run" in header.split())  # model, [run,] ..., status
    start = next(i for i in range(start, len(lines)) if lines[i].startswith("---")) + 1
    rows: list[list[str]] = []
    family = run = ""
    for line in lines[start:]:
        words = line.split()
        if line and not line.startswith(" ") and (len(words) == 1 or len(words) == 2 and "/" in words[1]):
            family, run = words[0], words[1] if len(words) == 2 else ""  # compact: run in the heading
        elif line.startswith("  ") and not line.startswith("   "):  # a key, maybe with the rest
            rows.append([f"{family}/{words[0]}", *([run] if run else []), *words[1:]])
        elif line.startswith("   ") and rows:
            rows[-1].extend(words)
        else:
            break
    return {f"{w[0]} {w[1]}": [*w[2:2 + numbers], " ".join(w[2 + numbers:])] for w in rows}
