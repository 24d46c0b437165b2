"""Where the time of a suite run goes: `pytest suites/` for one model under py-spy, cold
image cache then warm, each sample sorted into a stage of the data flow.

py-spy (pip install py-spy) samples every Python thread, idle ones included, so the main
thread's samples add up to the run's wall time and the decode threads' busy samples to
their working time. Native threads (onnxruntime's and PyTorch's intra-op pools) are not
Python threads: their work shows as the main thread's time in "inference".

    python benchmarks/profile_run.py --backend onnxruntime
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _common import header, model_arguments, pytest_cmd, recording_args, require, timed

# (stage, substrings of a py-spy frame "function (file:line)"): a sample belongs to the first
# stage with a frame anywhere in its stack, so imports made while building a model count as
# set-up, and the inference inside `evaluate` as inference
RULES = (
    ("decode + resize", ("load_crop (pytest_vaccbench/preprocess.py",)),
    ("normalise", ("normalize (pytest_vaccbench/preprocess.py",)),
    ("image cache read/write", ("pytest_vaccbench/image_cache.py",)),
    ("inference", ("Session.run (onnxruntime", "Module._call_impl")),
    ("ONNX export, model / session set-up", ("build_model (", "open_session (", "cached_export (")),
    ("waiting for decoded batches", ("Future.result",)),
    ("decode thread idle", ("_worker (concurrent/futures/thread.py",)),
    ("imports", ("_find_and_load",)),
    ("collection: baselines, dataset listing", ("pytest_collection (",)),
    ("evaluate: top-k, accuracy, predictions file", ("evaluate (pytest_vaccbench/run.py",)),
    ("gate, report, history", ("pytest_runtest_makereport", "pytest_sessionfinish",
                               "pytest_terminal_summary", "pytest_vaccbench/gate.py")),
)
OTHER = "pytest, interpreter start-up and exit, other"


def stage(frames: list[str]) -> str:
    for name, needles in RULES:
        if any(n in frame for frame in frames for n in needles):
            return name
    return OTHER


def read_samples(path: Path) -> tuple[Counter[str], Counter[str]]:
    """Samples per stage for the main thread and for all other threads, from py-spy's raw
    (collapsed-stack) output: `thread (tid)[: name];frame;...;frame count` per line."""
    lines = path.read_text().splitlines()
    main_tid = next((line.split(")", 1)[0] for line in lines if line.split(";", 1)[0].endswith(": MainThread")), "")
    main: Counter[str] = Counter()
    others: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        (main if thread.split(")", 1)[0] == main_tid else others)[stage(frames)] += int(count)
    return main, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    args = parser.parse_args()
    pyspy = shutil.which("py-spy") or sys.exit("py-spy not found: pip install py-spy")
    require(args.dataset)
    header(f"profile: {args.model} on {args.dataset.name}, backend {args.backend}")
    with tempfile.TemporaryDirectory() as tmp:
        suite = pytest_cmd("-k", args.model, "--dataset", str(args.dataset), "--weights-dir",
                           str(args.weights_dir), "--backend", args.backend, "--vaccbench-cache",
                           str(Path(tmp) / "cache"), *recording_args(Path(tmp), args.dataset, args.limit))
        for run in ("cold", "warm"):
            raw = Path(tmp) / f"{run}.txt"
            t = timed([pyspy, "record", "--threads", "--idle", "--nonblocking", "--format", "raw",
                       "--rate", str(args.rate), "--output", str(raw), "--", *suite])
            main_samples, other_samples = read_samples(raw)
            per_sample = t.wall / sum(main_samples.values())  # the main thread lives the whole run
            print(f"\n{run} image cache: {t.wall:.1f} s wall (under py-spy)")
            print(f"  {'stage':45s} {'main thread':>12s} {'decode threads':>15s}")
            for name in [n for n, _ in RULES] + [OTHER]:
                m, o = main_samples[name] * per_sample, other_samples[name] * per_sample
                if m >= 0.05 or o >= 0.05:
                    print(f"  {name:45s} {m:7.1f} s {100 * m / t.wall:3.0f}% {o:12.1f} s")


if __name__ == "__main__":
    main()
