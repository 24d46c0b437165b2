"""Shard balance: K pytest-split shards of a suite with uneven per-test durations, split by
count (the first night: no .test_durations yet) and by the durations the first night stored.

The suite is the vamp test double's zoo (tests/colour_zoo.py) with the stand-in told to sleep
a different time per model (VAMP_STUB_SLEEP), heaviest first in collection order, as a zoo's
large models often are. Night 1 runs the K shards by count, merges them (`vaccbench merge`)
and writes `vaccbench durations nightly.json > .test_durations`; night 2 runs the K shards by
those durations (--splitting-algorithm least_duration). Shards run one after another so each
one's wall time is its own. Prints, per night, each shard's wall time (the pytest process)
and test time (its tests' seconds), the slowest and fastest shard and the imbalance
slowest/fastest - 1 (also of the test times, and of pytest-split's estimates: its plan,
free of this run's noise), and the ratio of the slowest shards of the two nights.

    python benchmarks/sharding.py [--splits 4] [--models 32] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, header

sys.path.insert(0, str(ROOT / "tests"))
import colour_zoo  # noqa: E402



def sleeps(count: int) -> list[float]:
    """Uneven per-model seconds, heaviest first: 6.2, 5.3, 4.5, ... down towards 0.2."""
    return [round(0.2 + 6 * 0.85 ** i, 2) for i in range(count)]


def run(root: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """python ARGS in the zoo's folder, with this checkout first on the path."""
    return subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(
                              [str(ROOT), os.environ.get("PYTHONPATH", "")])})


def night(root: Path, splits: int, name: str, sleep: dict[str, float], *split_args: str) -> list[tuple[int, float, float, float]]:
    """Run the K shards one after another; per shard (tests, wall s, test s, pytest-split's
    estimate s)."""
    shards = []
    for group in range(1, splits + 1):
        report = root / f"{name}-{group}.json"
        start = time.perf_counter()
        done = run(root, ["-m", "pytest", *colour_zoo.pytest_args(root, f"cache-{name}"), "-q",
                          f"--splits={splits}", f"--group={group}", f"--vaccbench-json={report}",
                          f"--durations-path={root / '.test_durations'}", *split_args],
                   {"VAMP_STUB_SLEEP": json.dumps(sleep)})
        wall = time.perf_counter() - start
        ran = json.loads(report.read_text())["session"]["ran"] if report.is_file() else {}
        if len(ran) != sum(r["outcome"] == "passed" for r in ran.values()) or not ran:
            sys.exit(f"shard {group}: not every test passed:\n{done.stdout[-3000:]}")
        estimate = re.search(r"estimated duration: ([\d.]+)s", done.stdout)
        shards.append((len(ran), wall, sum(r["seconds"] for r in ran.values()),
                       float(estimate[1]) if estimate else float("nan")))
    return shards


def show(title: str, shards: list[tuple[int, float, float, float]]) -> float:
    print(title)
    for group, (tests, wall, busy, estimate) in enumerate(shards, 1):
        print(f"  group {group}: {tests:2d} tests  wall {wall:5.1f} s  tests {busy:5.1f} s  "
              f"(pytest-split's estimate {estimate:5.1f} s)")
    walls = [shard[1] for shard in shards]
    busy = [shard[2] for shard in shards]
    plan = [shard[3] for shard in shards]
    print(f"  slowest {max(walls):.1f} s, fastest {min(walls):.1f} s: imbalance "
          f"{100 * (max(walls) / min(walls) - 1):.0f}% (test time alone: "
          f"{100 * (max(busy) / max(min(busy), 1e-9) - 1):.0f}%; pytest-split's plan: "
          f"{100 * (max(plan) / min(plan) - 1):.0f}%)")
    return max(walls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=4, help="K shards (default 4)")
    parser.add_argument("--models", type=int, default=32, help="tests in the suite (default 32)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the per-model sleeps (default 1.0: 6.2 s down to 0.2 s)")
    parser.add_argument("--keep", type=Path, default=None, help="build the zoo here and keep it")
    args = parser.parse_args()
    models = [colour_zoo.ZooModel(f"zoo-m{i:02d}", "zoo", ("fp16",)) for i in range(args.models)]
    sleep = {m.key: s * args.scale for m, s in zip(models, sleeps(args.models))}
    header(f"sharding: {len(models)} tests, the stand-in sleeps {min(sleep.values()):g} to "
           f"{max(sleep.values()):g} s per model (sum {sum(sleep.values()):.1f} s), K={args.splits}")
    with tempfile.TemporaryDirectory() as tmp:
        root = colour_zoo.build(args.keep or Path(tmp), models)
        by_count = show("night 1, by count (no .test_durations):",
                        night(root, args.splits, "count", sleep))
        reports = [str(root / f"count-{g}.json") for g in range(1, args.splits + 1)]
        merged = run(root, ["-m", "pytest_vaccbench.cli", "merge", *reports, "-o", "nightly.json"])
        durations = run(root, ["-m", "pytest_vaccbench.cli", "durations", "nightly.json"])
        if merged.returncode or durations.returncode:
            sys.exit(f"merge or durations failed:\n{merged.stdout}{merged.stderr}{durations.stderr}")
        (root / ".test_durations").write_text(durations.stdout)
        by_time = show("night 2, by the stored durations (vaccbench durations nightly.json > "
                       ".test_durations; --splitting-algorithm least_duration):",
                       night(root, args.splits, "durations", sleep,
                             "--splitting-algorithm=least_duration"))
    print(f"slowest shard, by durations / by count: {by_time / by_count:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
