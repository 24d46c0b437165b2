"""Benchmark 4: the suite's onnxruntime inference against a bare onnxruntime session over
the same cached tensors.

First the graph `--backend onnxruntime` runs is made (the backend's own export, cached) and
the image cache is filled; the normalised batches are then held in memory. Interleaved and
repeated, with the same graph, threads and batch size:
- bare onnxruntime: a plain InferenceSession (created in the timed part) run over the
  in-memory batches;
- suite data path: the same plain session fed by `iter_batches` from the warm cache (read,
  verify, normalise: what every backend's loop gets);
- suite evaluate: `run.evaluate` for the case, i.e. what a test runs: graph lookup, session
  creation, iter_batches, inference, top-k, accuracy and the predictions file.

    python benchmarks/inference_overhead.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from _common import header, model_arguments, model_entry, require, spread

from pytest_vaccbench.backends import RunOptions, get_backend, iter_batches
from pytest_vaccbench.dataset import limit, resolve
from pytest_vaccbench.run import Case, evaluate


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_all(path: Path, batches: Any, threads: int) -> np.ndarray:
    s = session(path, threads)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x})[0] for x in batches])


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    args = parser.parse_args()
    entry = model_entry(args.family, args.model)
    data = limit(resolve(str(require(args.dataset))), args.limit)
    n = len(data.samples)
    header(f"inference overhead: {args.model} on {n} images of {args.dataset.name}, backend onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(weights_dir=args.weights_dir.resolve(), cache_dir=Path(tmp))
        backend = get_backend("onnxruntime")
        graph = backend.graph(entry, "fp32", data, options)  # exported once, as the suite does
        batch_size = backend.batch_size(entry, options)
        batches = list(iter_batches(data.samples, entry.preprocess, batch_size, options.workers,
                                    cache_dir=options.image_cache_dir))  # fills the cache

        def data_path() -> np.ndarray:
            return run_all(graph, iter_batches(data.samples, entry.preprocess, batch_size, options.workers,
                                               cache_dir=options.image_cache_dir), options.threads)

        same = np.array_equal(data_path(), run_all(graph, batches, options.threads))
        print(f"threads {options.threads}, batch {batch_size}, graph {graph.name}; the suite data path "
              f"gives the in-memory batches' scores bit for bit: {same}", flush=True)
        runs: dict[str, Callable[[], object]] = {
            "bare onnxruntime": lambda: run_all(graph, batches, options.threads),
            "suite data path": data_path,
            "suite evaluate": lambda: evaluate(Case(entry, "onnxruntime", "fp32"), data, options),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for rep in range(args.repeat):
            for name, fn in runs.items():
                times[name].append(seconds(fn))
            print(f"run {rep + 1}: " + " | ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  flush=True)
    bare = times["bare onnxruntime"]
    for name in ("suite data path", "suite evaluate"):
        overhead = [100 * (s / b - 1) for s, b in zip(times[name], bare)]
        print(f"{name}: {spread([n / t for t in times[name]])} img/s vs bare onnxruntime "
              f"{spread([n / t for t in bare])} img/s: overhead {spread(overhead)} % "
              f"(of the medians {100 * (statistics.median(times[name]) / statistics.median(bare) - 1):.1f} %; "
              f"goal <= 10 %)")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
