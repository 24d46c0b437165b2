"""The measurements behind the pipeline's choices, on this machine, interleaved and repeated.

1. decode: Pillow decode + resize + crop (preprocess.load_crop) on threads vs processes;
2. normalise: the lookup-table `preprocess.normalize` vs the arithmetic form (what
   torchvision's ToTensor + Normalize compute), for one batch;
3. inference: the reference backend's model at several batch sizes and thread counts, in
   PyTorch's default NCHW memory format and in channels_last;
4. pipeline: iter_batches (cold, no cache) feeding the model, with decoding running
   ahead of inference (PREFETCH batches) or in a phase of its own (decode all, then infer).

    python benchmarks/tuning.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from _common import header, model_arguments, model_entry, require, spread

from pytest_vaccbench import backends
from pytest_vaccbench.dataset import Sample
from pytest_vaccbench.preprocess import PreprocessSpec, load_crop, normalize

SPEC = PreprocessSpec(resize=256, crop=224)


def _decode(path: Path) -> np.ndarray:
    return load_crop(path, SPEC)


def decode_rate(paths: list[Path], pool_type: type, workers: int) -> float:
    start = time.perf_counter()
    with pool_type(max_workers=workers) as pool:  # start-up counted: a run pays it too
        for _ in pool.map(_decode, paths, chunksize=8 if pool_type is ProcessPoolExecutor else 1):
            pass
    return len(paths) / (time.perf_counter() - start)


def arithmetic_normalize(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    x = batch.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def per_second(fn, n: int, seconds: float = 2.0) -> float:
    fn()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        done += n
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    args = parser.parse_args()
    paths = sorted(require(args.dataset).glob("*.JPEG"))[: args.limit or 200]
    cores = os.cpu_count() or 1
    header(f"tuning: {len(paths)} images of {args.dataset.name}")
    for p in paths:  # page cache warm: measure decoding, not the disk
        p.read_bytes()

    print("1. decode + resize + crop, images/s")
    variants = {f"{kind.__name__[:-12].lower()} x{n}": (kind, n)
                for kind in (ThreadPoolExecutor, ProcessPoolExecutor) for n in (1, cores, 2 * cores)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, (kind, n) in variants.items():
            rates[name].append(decode_rate(paths, kind, n))
    for name, values in rates.items():
        print(f"   {name:10s} {spread(values)}")

    print("2. normalise one batch of 32, images/s")
    batch = np.stack([load_crop(p, SPEC) for p in paths[:32]])
    assert np.array_equal(normalize(batch, SPEC), arithmetic_normalize(batch, SPEC))
    for name, fn in (("lookup", normalize), ("arithmetic", arithmetic_normalize)):
        values = [per_second(lambda: fn(batch, SPEC), len(batch), 1.0) for _ in range(args.repeat)]
        print(f"   {name:10s} {spread(values)}")

    import torch

    from pytest_vaccbench.models import build_model
    from pytest_vaccbench.weights import find_weights

    entry = model_entry(args.family, args.model)
    model = build_model(entry, find_weights(entry, args.weights_dir.resolve()).path)
    print(f"3. {args.model} inference on random input, images/s, memory format NCHW / channels_last")
    channels_last = build_model(entry, find_weights(entry, args.weights_dir.resolve()).path)
    channels_last = channels_last.to(memory_format=torch.channels_last)
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        for bs in (8, 16, 32, 64):
            x = torch.randn(bs, 3, 224, 224)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            nchw, nhwc = [], []
            with torch.inference_mode():
                for _ in range(args.repeat):
                    nchw.append(per_second(lambda: model(x), bs))
                    nhwc.append(per_second(lambda: channels_last(x_cl), bs))
            print(f"   threads {threads} batch {bs:3d}: NCHW {spread(nchw)}  channels_last {spread(nhwc)}",
                  flush=True)

    print(f"4. cold pipeline: iter_batches (no cache, {cores} decode threads) + {args.model}, "
          f"{cores} torch threads, channels_last, images/s")
    torch.set_num_threads(cores)
    samples = [Sample(p, 0) for p in paths]

    def overlapped() -> None:  # decoding runs PREFETCH batches ahead of inference
        for batch in backends.iter_batches(samples, entry.preprocess, 32, cores):
            channels_last(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last))

    def phases() -> None:  # all decoding first, then all inference: never both at once
        for batch in list(backends.iter_batches(samples, entry.preprocess, 32, cores)):
            channels_last(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last))

    results: dict[str, list[float]] = {"overlapped": [], "phases": []}
    for _ in range(args.repeat):
        for name, fn in (("overlapped", overlapped), ("phases", phases)):
            start = time.perf_counter()
            with torch.inference_mode():
                fn()
            results[name].append(len(samples) / (time.perf_counter() - start))
    for name, values in results.items():
        print(f"   {name:10s} {spread(values)}")
    print(f"   median ratio overlapped / phases: "
          f"{statistics.median(results['overlapped']) / statistics.median(results['phases']):.2f}x")

if __name__ == "__main__":
    main()
