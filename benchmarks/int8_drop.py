"""Measured int8 drop per calibration mode: onnxruntime fp32 vs int8 (QDQ) on the same images.

    PYTHONPATH=. python benchmarks/int8_drop.py --dataset ../shared/data/ilsvrc2012-val-subset \
        --weights-dir ../shared/data/weights --calib-images 150

For each model: the fp32 graph, then each int8 calibration mode calibrated on
`--calib-images` images of the dataset (calibration.calibration_set); those images are left
out of every figure, so fp32 and int8 are counted on the same remaining images. Agreement
is the share of those images whose top-1 class is the same in int8 and fp32.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from pytest_vaccbench.backends import RunOptions
from pytest_vaccbench.backends.onnxruntime import CALIBRATION_METHODS
from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.calibration import calibration_set, coverage
from pytest_vaccbench.dataset import limit, resolve
from pytest_vaccbench.run import Case, evaluate

ROOT = Path(__file__).resolve().parents[1]
MODELS = (("mobilenet_v2", "local-mobilenetv2_100-tvq"), ("efficientnet_lite", "timm-efficientnet_lite0"))


def top1_by_file(predictions: str) -> tuple[dict[str, int], dict[str, int]]:
    saved = np.load(predictions)
    files = saved["files"].tolist()
    return dict(zip(files, saved["top5"][:, 0].tolist())), dict(zip(files, saved["labels"].tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--calib-images", type=int, default=150)
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    parser.add_argument("--cache", default=os.environ.get("VACCBENCH_CACHE", "~/.cache/vaccbench"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    data = limit(resolve(args.dataset), args.limit)
    calib = calibration_set(data, args.calib_images)
    options = RunOptions(Path(args.weights_dir).resolve(), Path(args.cache).expanduser().resolve(),
                         batch_size=32, threads=args.threads, workers=args.threads,
                         extra={"calib_images": args.calib_images, "int8_per_tensor": args.per_tensor})
    print(f"dataset {data.name}: {len(data.samples)} images; {coverage(calib, data).describe()}, "
          f"left out of every figure; weights {'per tensor' if args.per_tensor else 'per channel'}")
    print(f"{'model':<28} {'precision':<20} {'n':>4} {'top1':>7} {'fp32':>7} {'drop':>7} "
          f"{'agree%':>7} {'seconds':>8}")
    for family, key in MODELS:
        entry = load_family(ROOT / "baselines" / f"{family}.yaml").models[key]
        fp32, labels = top1_by_file(evaluate(Case(entry, "onnxruntime", "fp32"), data, options).predictions)
        for precision in ("fp32", *CALIBRATION_METHODS):
            start = time.perf_counter()
            result = evaluate(Case(entry, "onnxruntime", precision), data, options)
            seconds = time.perf_counter() - start
            pred, _ = top1_by_file(result.predictions)
            counted = [f for f in pred if f not in {s.path.name for s in calib.samples}]
            base = 100.0 * np.mean([fp32[f] == labels[f] for f in counted])
            top1 = 100.0 * np.mean([pred[f] == labels[f] for f in counted])
            agree = 100.0 * np.mean([pred[f] == fp32[f] for f in counted])
            print(f"{key:<28} {precision:<20} {len(counted):>4} {top1:7.3f} {base:7.3f} "
                  f"{top1 - base:+7.3f} {agree:7.2f} {seconds:8.1f}", flush=True)


if __name__ == "__main__":
    main()
