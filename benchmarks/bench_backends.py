"""Throughput of the reference (PyTorch) and onnxruntime backends on the same images and threads.

    PYTHONPATH=. python benchmarks/bench_backends.py --dataset ../shared/data/ilsvrc2012-val-subset \
        --weights-dir ../shared/data/weights --threads 2

The images are decoded and preprocessed once, before timing; each backend then runs the same
float32 batches (`--repeat` passes after one warm-up batch). Prints images/s per backend and
precision, and the ratio to the reference. A benchmark, not a test: these machines are shared,
so read the ratio, which both runs share, more than the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pytest_vaccbench.backends import RunOptions, iter_batches
from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend, open_session, run_session
from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.dataset import limit, resolve
from pytest_vaccbench.models import build_model
from pytest_vaccbench.weights import find_weights

ROOT = Path(__file__).resolve().parents[1]
MODELS = (("mobilenet_v2", "local-mobilenetv2_100-tvq"), ("efficientnet_lite", "timm-efficientnet_lite0"))


def images_per_second(run, batches, repeat: int) -> float:
    run(batches[:1])  # warm-up: first-call allocations, lazy initialisation
    start = time.perf_counter()
    for _ in range(repeat):
        run(batches)
    return repeat * sum(len(b) for b in batches) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,fp16,int8-percentile")
    parser.add_argument("--cache", default=os.environ.get("VACCBENCH_CACHE", "~/.cache/vaccbench"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    data = limit(resolve(args.dataset), args.images)
    options = RunOptions(Path(args.weights_dir).resolve(), Path(args.cache).expanduser().resolve(),
                         batch_size=args.batch_size, threads=args.threads, workers=args.threads,
                         extra={"calib_images": min(1000, len(data.samples) // 2)})
    backend = OnnxRuntimeBackend()
    print(f"{len(data.samples)} images of {data.name}, batch {args.batch_size}, {args.threads} threads, "
          f"torch {torch.__version__}, {args.repeat} timed passes")
    print(f"{'model':<28} {'backend/precision':<28} {'images/s':>9} {'x reference':>12}")
    for family, key in MODELS:
        entry = load_family(ROOT / "baselines" / f"{family}.yaml").models[key]
        batches = list(iter_batches(data.samples, entry.preprocess, args.batch_size, args.threads))
        model = build_model(entry, find_weights(entry, options.weights_dir).path)

        def reference(chunk):
            with torch.inference_mode():
                for x in chunk:
                    model(torch.from_numpy(x))

        base = images_per_second(reference, batches, args.repeat)
        print(f"{key:<28} {'reference/fp32':<28} {base:9.1f} {1.0:12.2f}", flush=True)
        for precision in args.precisions.split(","):
            path = backend.graph(entry, precision, data, options)
            session = open_session(path, entry, ["CPUExecutionProvider"], args.threads)
            speed = images_per_second(lambda chunk: run_session(session, chunk), batches, args.repeat)
            print(f"{key:<28} {'onnxruntime/' + precision:<28} {speed:9.1f} {speed / base:12.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
