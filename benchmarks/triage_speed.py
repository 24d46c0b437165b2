"""Layer triage time against the plain int8 test it is attached to, per model.

    PYTHONPATH=. python benchmarks/triage_speed.py --dataset ../shared/data/ilsvrc2012-val-subset \
        --weights-dir ../shared/data/weights --calib-images 64 --threads 2

For each model: the fp32 run (needed once: triage pairs with it), the int8-max per-tensor test
(run.evaluate, as the gate runs it; its graph already calibrated, so the time is inference on
the counted images), then triage_case as a failing test runs it, with no time budget: the
layer errors, keep-in-fp32 agreement of the 10 worst layers, and the top-K recovery on the
held-out half. Printed: each time, and triage / int8 test. The load average is printed too:
on a shared machine the ratio is the number to read.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from pytest_vaccbench.backends import RunOptions
from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend
from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.dataset import limit, resolve
from pytest_vaccbench.run import Case, evaluate
from pytest_vaccbench.triage import triage_case

ROOT = Path(__file__).resolve().parents[1]
MODELS = (("mobilenet_v2", "local-mobilenetv2_100-tvq"), ("efficientnet_lite", "timm-efficientnet_lite0"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--limit", type=int, default=None, help="stratified subset of N images")
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one)")
    args = parser.parse_args()
    data = limit(resolve(args.dataset), args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(weights_dir=Path(args.weights_dir).resolve(),
                             cache_dir=Path(args.cache or tmp).resolve(), threads=args.threads,
                             workers=args.threads, extra={"calib_images": args.calib_images})
        print(f"{data.name}: {len(data.samples)} images, {args.calib_images} for calibration, "
              f"{args.threads} threads, load average {os.getloadavg()[0]:.1f} at start")
        print(f"{'model':<28} {'int8 test s':>11} {'triage s':>9} {'ratio':>6}  result")
        for family, key in MODELS:
            entry = load_family(ROOT / "baselines" / f"{family}.yaml").models[key]
            fp32 = evaluate(Case(entry, "onnxruntime", "fp32"), data, options)
            OnnxRuntimeBackend().graph(entry, "int8-max", data, options)  # calibrated before timing
            start = time.perf_counter()
            int8 = evaluate(Case(entry, "onnxruntime", "int8-max"), data, options)
            test_s = time.perf_counter() - start
            start = time.perf_counter()
            found = triage_case(entry, "int8-max", data, options, Path(int8.predictions),
                                Path(fp32.predictions), budget=None)
            triage_s = time.perf_counter() - start
            r = found.recovery
            summary = (f"top1 fp32 {fp32.top1:.2f} int8 {int8.top1:.2f}; worst single: "
                       f"{found.rows[0].layer.module}; K={r.k if r else None}")
            print(f"{key:<28} {test_s:>11.1f} {triage_s:>9.1f} {triage_s / test_s:>6.1f}  {summary}")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
