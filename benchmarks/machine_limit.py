"""How close the suite runs to the machine's limit, in one run: `pytest suites/` for
mobilenetv2_100 on onnxruntime fp32 over a set of N images, with a cold cache (decode, cache
write, ONNX export) and warm, against a bare onnxruntime session and against the limit that
the measured decode and inference times allow; then each int8 calibration mode against one
fp32 pass over the same calibration images, with its peak memory.

The set is N hard links to the shared data's real images (the 650 of the val subset and the
500 of imagenet-sample, repeated), so it costs no disk space; the cold run writes N crops of
224x224x3 (150 KB each: 7.5 GB at 50,000) into the image cache under --workdir.

- bare onnxruntime: a plain InferenceSession on the same graph, batch 32, the same threads,
  run over normalised batches held in memory (--bare-images of the set); measured before the
  cold run, between the runs and after the warm run, and the median taken;
- the limit: cores / (decode + inference) per image, where decode is the CPU time of
  decode + resize + crop of one image on one thread (--probe-images of the set) and
  inference is threads / (the bare session's images/s): the time of one core per image;
- warm and cold: whole processes, start to exit, with their CPU time and peak RSS (a warm
  run's peak RSS should not grow with N);
- calibration: benchmarks/calibration_speed.py's children, each in a process of its own,
  on --calib-images of the set read from the warm image cache, each mode timed right after
  an fp32 pass over the same images (its reference).

    python benchmarks/machine_limit.py --images 50000 --workdir /var/tmp/vaccbench-limit
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import DATA, header, linked_dataset, model_entry, pytest_cmd, recording_args, timed

import calibration_speed

FAMILY, MODEL = "mobilenet_v2", "local-mobilenetv2_100-tvq"
BATCH = 32


def decode_ms(samples: list[Any], spec: Any) -> float:
    """CPU milliseconds per image of decode + resize + crop on this thread."""
    from pytest_vaccbench.preprocess import load_crop

    start = time.thread_time()
    for s in samples:
        load_crop(s.path, spec)
    return (time.thread_time() - start) * 1000 / len(samples)


def bare_session(graph: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])


def bare_rate(session: Any, batches: list[np.ndarray]) -> float:
    """Images per second of a plain session.run over the batches held in memory."""
    name = session.get_inputs()[0].name
    session.run(None, {name: batches[0]})  # the first run allocates
    start = time.perf_counter()
    for x in batches:
        session.run(None, {name: x})
    return sum(map(len, batches)) / (time.perf_counter() - start)


def child(args: argparse.Namespace) -> None:
    """The bare session's images/s and decode's CPU time per image, printed as JSON: in a
    process of its own, so that the suite runs' peak RSS is theirs alone (a child started
    by a large process inherits its high-water mark)."""
    from pytest_vaccbench.backends import RunOptions
    from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend
    from pytest_vaccbench.dataset import resolve
    from pytest_vaccbench.preprocess import load_crop, normalize

    entry = model_entry(FAMILY, MODEL)
    spec = entry.preprocess
    graph = OnnxRuntimeBackend().fp32_graph(entry, RunOptions(weights_dir=args.weights_dir, cache_dir=args.graphs))
    distinct = resolve(str(args.child)).samples[:1150]  # the first 1150 links: 1150 different images
    probe = decode_ms(list(distinct[:args.probe_images]), spec)
    held = [normalize(np.stack([load_crop(s.path, spec) for s in distinct[i:i + BATCH]]), spec)
            for i in range(0, min(args.bare_images, len(distinct)), BATCH)]
    rate = bare_rate(bare_session(graph, args.threads), held)
    print(json.dumps({"rate": rate, "decode_ms": probe}))


def bare(args: argparse.Namespace, data: Path, graphs: Path) -> dict[str, float]:
    """The bare session's images/s (and decode's CPU ms per image), from a child process; the
    graph is the suite's own export, made once into `graphs` (apart from the suite's cache)."""
    t = timed([sys.executable, __file__, "--child", str(data), "--graphs", str(graphs), "--threads",
               str(args.threads), "--weights-dir", str(args.weights_dir), "--bare-images", str(args.bare_images), "--probe-images", str(args.probe_images)])
    return json.loads(t.output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000, help="images in the set (default 50000)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the set, the image cache and the exports go (kept; default: a "
                             "temporary folder, removed at the end)")
    parser.add_argument("--weights-dir", type=Path, default=DATA / "weights")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--bare-images", type=int, default=1024, help="images per bare measurement")
    parser.add_argument("--probe-images", type=int, default=300, help="images timed for decode")
    parser.add_argument("--calib-images", type=int, default=1000)
    parser.add_argument("--modes", default="max,percentile,kl_divergence,mse", help="'' skips calibration")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--graphs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        measure(args, (args.workdir or Path(tmp)).resolve())


def measure(args: argparse.Namespace, work: Path) -> None:
    from pytest_vaccbench.dataset import resolve

    n, threads, cores = args.images, args.threads, os.cpu_count() or 1
    header(f"machine limit: {MODEL} on {n} images (hard links of real ImageNet images), onnxruntime fp32, "
           f"{threads} threads, batch {BATCH}")
    data = resolve(str(linked_dataset(n, work / f"set{n}")))
    weights = args.weights_dir = args.weights_dir.resolve()
    first = bare(args, data.root, work / "graphs")
    rates, probe = [first["rate"]], first["decode_ms"]
    print(f"bare onnxruntime: {rates[-1]:.1f} img/s; decode + resize + crop {probe:.2f} ms of CPU per image",
          flush=True)
    cache = work / "cache"
    suite = pytest_cmd("-k", MODEL, "--dataset", str(data.root), "--backend", "onnxruntime",
                       "--weights-dir", str(weights), "--vaccbench-cache", str(cache),
                       *recording_args(work, data.root, None))
    runs = {}
    for run in ("cold", "warm"):
        if run == "cold":
            for kind in ("images", "onnx", "predictions"):
                shutil.rmtree(cache / kind, ignore_errors=True)
        t = timed(suite)
        if "1 passed" not in t.output and "1 failed" not in t.output:
            raise SystemExit(f"{run} run did not evaluate the model:\n{t.output[-3000:]}")
        runs[run] = t
        rates.append(bare(args, data.root, work / "graphs")["rate"])
        print(f"{run:>4}: {t.wall:7.1f} s, {n / t.wall:6.1f} img/s; CPU {t.cpu:7.1f} s; peak RSS "
              f"{t.peak_rss_mb:6.0f} MB | bare onnxruntime after it: {rates[-1]:.1f} img/s", flush=True)
    bare_median = statistics.median(rates)
    inference = threads * 1000 / bare_median
    limit = cores * 1000 / (probe + inference)
    warm, cold = (n / runs[k].wall for k in ("warm", "cold"))
    print(f"bare onnxruntime: {bare_median:.1f} img/s (median of {', '.join(f'{b:.1f}' for b in rates)})")
    print(f"limit: {cores} cores / (decode {probe:.2f} ms + inference {inference:.2f} ms per image) = "
          f"{limit:.1f} img/s")
    print(f"warm: {warm:.1f} img/s / bare {bare_median:.1f} img/s = {warm / bare_median:.3f} (goal >= 0.95); "
          f"peak RSS {runs['warm'].peak_rss_mb:.0f} MB")
    print(f"cold: {cold:.1f} img/s / limit {limit:.1f} img/s = {cold / limit:.3f} (goal >= 0.90); "
          f"peak RSS {runs['cold'].peak_rss_mb:.0f} MB")
    modes = [m for m in args.modes.split(",") if m]
    if not modes:
        return
    calib = argparse.Namespace(cache=cache, weights_dir=weights, threads=threads, dataset=data.root)
    count = min(args.calib_images, n)
    print(f"calibration on {count} images, each mode right after an fp32 pass over the same images:")
    for mode in modes:
        fp32 = calibration_speed.measure("fp32", "none", count, calib)
        fast = calibration_speed.measure("fast", mode, count, calib)
        print(f"  {mode:<14} {fast['seconds']:6.1f} s / fp32 pass {fp32['seconds']:6.1f} s = "
              f"{fast['seconds'] / fp32['seconds']:.2f} (goal <= 1.5); peak RSS {fast['rss_mb']:.0f} MB "
              f"(fp32 pass {fp32['rss_mb']:.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
