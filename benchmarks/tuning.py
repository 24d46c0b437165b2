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
from typing import TYPE_CHECKING

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the reference backend runs torch

from _common import header, model_arguments, model_entry, require, spread

from pytest_vaccbench import backends
from pytest_vaccbench.dataset import Sample
from pytest_vaccbench.preprocess import PreprocessSpec, load_crop, normalize

SPEC = PreprocessSpec(resize=256, crop=224)
if TYPE_CHECKING:
    import torch


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


def decoding(paths: list[Path], repeat: int, cores: int) -> None:
    print("1. decode + resize + crop, images/s")
    variants = {f"{kind.__name__[:-12].lower()} x{n}": (kind, n)
                for kind in (ThreadPoolExecutor, ProcessPoolExecutor) for n in (1, cores, 2 * cores)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, (kind, n) in variants.items():
            rates[name].append(decode_rate(paths, kind, n))
    for name, values in rates.items():
        print(f"   {name:10s} {spread(values)}", flush=True)


def normalising(paths: list[Path], repeat: int) -> None:
    print("2. normalise one batch of 32, images/s")
    batch = np.stack([load_crop(p, SPEC) for p in paths[:32]])
    assert np.array_equal(normalize(batch, SPEC), arithmetic_normalize(batch, SPEC))
    for name, fn in (("lookup", normalize), ("arithmetic", arithmetic_normalize)):
        values = [per_second(lambda: fn(batch, SPEC), len(batch), 1.0) for _ in range(repeat)]
        print(f"   {name:10s} {spread(values)}", flush=True)


def inference(models: dict[str, "torch.nn.Module"], repeat: int, cores: int) -> None:
    import torch

    print("3. inference on random input, images/s (all combinations interleaved per repetition)")
    combos = [(threads, bs, layout) for threads in sorted({1, cores}) for bs in (8, 16, 32, 64)
              for layout in models]
    rates: dict[tuple[int, int, str], list[float]] = {c: [] for c in combos}
    for _ in range(repeat):
        for threads, bs, layout in combos:
            torch.set_num_threads(threads)
            x = torch.randn(bs, 3, 224, 224).contiguous(
                memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
            with torch.inference_mode():
                rates[threads, bs, layout].append(per_second(lambda: models[layout](x), bs))
    for threads, bs, layout in combos:
        print(f"   threads {threads} batch {bs:3d} {layout:13s} {spread(rates[threads, bs, layout])}")


def pipeline(paths: list[Path], spec: PreprocessSpec, model: "torch.nn.Module", repeat: int,
             cores: int) -> None:
    import torch

    print(f"4. cold pipeline: iter_batches (no cache, {cores} decode threads) + the model, "
          f"{cores} torch threads, channels_last, images/s")
    torch.set_num_threads(cores)
    samples = [Sample(p, 0) for p in paths]

    def overlapped() -> None:  # decoding runs PREFETCH batches ahead of inference
        for batch in backends.iter_batches(samples, spec, 32, cores):
            model(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last))

    def phases() -> None:  # all decoding first, then all inference: never both at once
        for batch in list(backends.iter_batches(samples, spec, 32, cores)):
            model(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last))

    results: dict[str, list[float]] = {"overlapped": [], "phases": []}
    for _ in range(repeat):
        for name, fn in (("overlapped", overlapped), ("phases", phases)):
            start = time.perf_counter()
            with torch.inference_mode():
                fn()
            results[name].append(len(samples) / (time.perf_counter() - start))
    for name, values in results.items():
        print(f"   {name:10s} {spread(values)}")
    print(f"   median ratio overlapped / phases: "
          f"{statistics.median(results['overlapped']) / statistics.median(results['phases']):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    parser.add_argument("--sections", default="1234", help="which of the measurements to run")
    args = parser.parse_args()
    paths = sorted(require(args.dataset).glob("*.JPEG"))[: args.limit or 200]
    cores = os.cpu_count() or 1
    header(f"tuning: {len(paths)} images of {args.dataset.name}, model {args.model}")
    for p in paths:  # page cache warm: measure decoding, not the disk
        p.read_bytes()
    if "1" in args.sections:
        decoding(paths, args.repeat, cores)
    if "2" in args.sections:
        normalising(paths, args.repeat)
    if "3" in args.sections or "4" in args.sections:
        import torch

        from pytest_vaccbench.models import build_model
        from pytest_vaccbench.weights import find_weights

        entry = model_entry(args.family, args.model)
        weights = find_weights(entry, args.weights_dir.resolve()).path
        models = {"NCHW": build_model(entry, weights),
                  "channels_last": build_model(entry, weights).to(memory_format=torch.channels_last)}
        if "3" in args.sections:
            inference(models, args.repeat, cores)
        if "4" in args.sections:
            pipeline(paths, entry.preprocess, models["channels_last"], args.repeat, cores)


if __name__ == "__main__":
    main()
