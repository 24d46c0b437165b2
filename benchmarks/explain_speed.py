"""The loss ladder's cost against the single tests it stands for, per model.

    PYTHONPATH=. python benchmarks/explain_speed.py --dataset ../shared/data/ilsvrc2012-val-subset \
        --weights-dir ../shared/data/weights --limit 200 --calib-images 40 --threads 2

For each model, each run in a fresh cache of its own:
- tests: the pytest sessions a user runs for the same numbers: reference/fp32, then
  reference/fp32, onnxruntime fp32, fp16 and int8-percentile with --preprocess=vdsp:<the
  model's vdsp_params JSON> (measured and not recorded: --update-baselines --dry-run);
- ladder: `vaccbench explain` of the same model and build (steps 2-6);
- ladder again: the same command in the ladder's cache, now warm (image crops, exported
  graph, fp16/int8 graphs and calibration ranges reused; every step's inference runs again).
The runs are interleaved and repeated (--repeat); printed: the median wall and CPU seconds
of each (CPU: user + system of the processes, which a shared machine's load distorts less),
and ladder / tests.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

from _common import ROOT, Timed, timed

from pytest_vaccbench.vdsp import variant_name

MODELS = {  # key: family, the device's vdsp_params JSON
    "local-mobilenetv2_100-tvq": ("mobilenet_v2", ROOT / "pytest_vaccbench/data/vdsp/timm-mobilenetv2_100-vdsp_params.json"),
    "timm-efficientnet_lite0": ("efficientnet_lite", ROOT / "tests/data/vdsp/timm-efficientnet_lite0-vdsp_params.json")}


def tests(key: str, common: list[str], cache: Path) -> Timed:
    """The two pytest sessions of the ladder's five tests (selected by test id), timed together."""
    family, vdsp = MODELS[key]
    test = f"suites/default.yaml::{family}/{key}"
    variant = variant_name(vdsp)
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            f"--vaccbench-cache={cache}", "--update-baselines", "--dry-run",
            "--dataset-name=explain-speed", *common]
    runs = [([f"{test}[reference-fp32]", "--backend=reference", "--precision=fp32"], 1),
            ([*(f"{test}[{run}+{variant}]" for run in ("reference-fp32", "onnxruntime-fp32",
                                                       "onnxruntime-fp16", "onnxruntime-int8-percentile")),
              "--backend=reference,onnxruntime", "--precision=fp32,fp16,int8-percentile",
              f"--preprocess=vdsp:{vdsp}"], 4)]
    total = Timed(0.0, 0.0, "")
    for args, expected in runs:
        t = timed([*base, *args], check=False)
        passed = sum(int(n) for n in re.findall(r"(\d+) passed", t.output))
        if passed != expected or re.search(r"\d+ (failed|error)", t.output):
            sys.exit(f"expected {expected} measured tests: {' '.join(args)}\n{t.output[-3000:]}")
        total = Timed(total.wall + t.wall, total.cpu + t.cpu, total.output + t.output)
    return total


def ladder(key: str, args: argparse.Namespace, cache: Path) -> Timed:
    vdsp = MODELS[key][1]
    cmd = [sys.executable, "-m", "pytest_vaccbench.cli", "explain", key, args.dataset,
           f"--weights-dir={args.weights_dir}", f"--calib-images={args.calib_images}",
           f"--threads={args.threads}", f"--cache={cache}", f"--vdsp={vdsp}",
           "--precision=int8-percentile", *(["--limit", str(args.limit)] if args.limit else [])]
    t = timed(cmd)
    if "not run: " in "\n".join(line for line in t.output.splitlines() if re.match(r"  [2-6] ", line)):
        sys.exit(f"a CPU step did not run:\n{t.output[-3000:]}")
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--limit", type=int, default=None, help="stratified subset of N images")
    parser.add_argument("--calib-images", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--model", action="append", choices=sorted(MODELS), default=None,
                        help="the models to time (default: all)")
    args = parser.parse_args()
    common = [f"--dataset={args.dataset}", f"--weights-dir={args.weights_dir}",
              f"--calib-images={args.calib_images}", f"--threads={args.threads}",
              *([f"--limit={args.limit}"] if args.limit else [])]
    print(f"{args.dataset}: --limit {args.limit}, {args.calib_images} calibration images, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'model':<28} {'run':<13} {'wall s':>7} {'cpu s':>7} {'wall x tests':>12} {'cpu x tests':>11}")
    for key in args.model or MODELS:
        times: dict[str, list[Timed]] = {"tests": [], "ladder": [], "ladder again": []}
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                times["tests"].append(tests(key, common, Path(a)))
                times["ladder"].append(ladder(key, args, Path(b)))
                times["ladder again"].append(ladder(key, args, Path(b)))
        wall = {k: statistics.median(t.wall for t in v) for k, v in times.items()}
        cpu = {k: statistics.median(t.cpu for t in v) for k, v in times.items()}
        for run in times:
            print(f"{key:<28} {run:<13} {wall[run]:>7.1f} {cpu[run]:>7.1f} "
                  f"{wall[run] / wall['tests']:>12.2f} {cpu[run] / cpu['tests']:>11.2f}")
        print(f"  load average now {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
