"""Helpers shared by the benchmark scripts: timed subprocesses, paths, summaries.

The benchmarks print numbers; they assert nothing (speed is measured here, never in tests:
the machines are shared and noisy). Each script interleaves the runs it compares, repeats
them, and prints the median with the range, so that noise shows.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's pytest_vaccbench, also for the subprocesses below
if TYPE_CHECKING:
    from pytest_vaccbench.baselines import ModelEntry
DATA = Path(os.environ.get("VACCBENCH_TEST_DATA", ROOT.parent / "shared" / "data"))


@dataclass
class Timed:
    wall: float  # seconds, process start to exit
    cpu: float  # user + system seconds of the process and its children
    output: str
    peak_rss_mb: float = 0.0  # the largest resident set of the process (or of a child it waited for)


def timed(cmd: list[str], check: bool = True, env: dict[str, str] | None = None) -> Timed:
    """Run a command from the project root with this checkout first on PYTHONPATH."""
    env = {**os.environ, **(env or {}),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time and peak RSS
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    if check and proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{output[-6000:]}")
    return Timed(wall, usage.ru_utime + usage.ru_stime, output, usage.ru_maxrss / 1024)


def pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "suites/", "-q", "-p", "no:cacheprovider", *args]


def timed_pytest(args: list[str], tests: int) -> Timed:
    """A suite run that must evaluate `tests` cases: passed, or failed at the gate (a --limit
    subset is gated against full-set baselines), but not skipped or errored."""
    t = timed(pytest_cmd(*args), check=False)
    counts = dict((word, int(num)) for num, word in re.findall(r"(\d+) (passed|failed|error)", t.output))
    if counts.get("passed", 0) + counts.get("failed", 0) != tests or counts.get("error"):
        sys.exit(f"expected {tests} evaluated tests: {' '.join(args)}\n{t.output[-3000:]}")
    return t


def limit_args(limit: int | None) -> list[str]:
    return ["--limit", str(limit)] if limit else []


def recording_args(tmp: Path, dataset: Path, limit: int | None) -> list[str]:
    """Suite options that record the run into a fresh copy of baselines/ under `tmp` (for
    cases with no baseline on this dataset yet), a --limit subset under its own name."""
    copy = tmp / "baselines"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(ROOT / "baselines", copy)
    subset = ["--dataset-name", f"{dataset.name}-first{limit}"] if limit else []
    return ["--baselines", str(copy), "--update-baselines", *limit_args(limit), *subset]


def timm_cmd(family: str, model: str, dataset: Path, weights_dir: Path, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "timm_style.py"), "--family", family,
            "--model", model, "--dataset", str(dataset), "--weights-dir", str(weights_dir), *args]


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """median [min-max] of a list of measurements."""
    return (f"{fmt.format(statistics.median(values))} "
            f"[{fmt.format(min(values))} to {fmt.format(max(values))}]")


def header(what: str) -> None:
    from pytest_vaccbench.run import machine

    print(f"{what}\nmachine: {machine()}, {os.cpu_count()} cores; load average at start "
          f"{os.getloadavg()[0]:.1f} (other users of the machine add noise)", flush=True)


def model_arguments(parser: argparse.ArgumentParser, family: str = "efficientnet_lite",
                    model: str = "timm-efficientnet_lite0") -> None:
    """--family/--model/--dataset/--weights-dir/--limit/--repeat, shared by the scripts."""
    parser.add_argument("--family", default=family, help="baseline file name without .yaml")
    parser.add_argument("--model", default=model, help="model key in that file")
    parser.add_argument("--dataset", type=Path, default=DATA / "imagenet-sample")
    parser.add_argument("--weights-dir", type=Path, default=DATA / "weights")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)


def model_entry(family: str, model: str) -> "ModelEntry":
    from pytest_vaccbench.baselines import load_family

    return load_family(ROOT / "baselines" / f"{family}.yaml").models[model]


def count_images(dataset: Path, limit: int | None) -> int:
    """How many images a suite run with --dataset and --limit evaluates."""
    from pytest_vaccbench.dataset import limit as first, resolve

    return len(first(resolve(str(require(dataset))), limit).samples)


def require(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"{path} not found: set VACCBENCH_TEST_DATA to the folder holding the shared data")
    return path


def linked_dataset(n: int, folder: Path) -> Path:
    """A flat dataset of `n` images in `folder`: hard links to the shared data's real images
    (the val subset and imagenet-sample, taken in turn and repeated), each under a name of
    its own, with its class in `val_label.txt`. Built once: a folder that already holds n
    such images is reused."""
    from pytest_vaccbench.dataset import resolve

    labels = folder / "val_label.txt"
    if labels.is_file() and len(labels.read_text().splitlines()) == n:
        return folder
    real = [resolve(str(require(DATA / name))).samples for name in ("ilsvrc2012-val-subset", "imagenet-sample")]
    pool = [s for pair in zip(*real) for s in pair] + [s for r in real for s in r[min(map(len, real)):]]
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        sample = pool[i % len(pool)]
        name = f"img{i:06d}{sample.path.suffix}"
        os.link(sample.path, folder / "images" / name)
        lines.append(f"{name} {sample.label}\n")
    labels.write_text("".join(lines))
    return folder
