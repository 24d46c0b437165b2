"""Benchmark 4: the suite's inference time against bare runtime loops over the same tensors.

The image cache is filled first, then the normalised batches are held in memory. Interleaved
and repeated:
- bare onnxruntime: an InferenceSession (the model exported here: torch.onnx.export,
  dynamo=False, opset 13) run over the in-memory batches;
- suite data path + onnxruntime: the same session fed by `iter_batches` from the warm cache
  (read, verify, normalise: what every backend's loop gets);
- bare torch: the same model (models.build_model) over the in-memory batches;
- suite `--backend` (default reference): `run.evaluate` for the case, i.e. what a test runs:
  model build, iter_batches from the cache, inference, top-k, predictions file.
Session creation and model build are counted on both sides.

With `--backend onnxruntime` (once that backend is registered) the last line times
`run.evaluate` with it and compares it with the bare onnxruntime loop.

    python benchmarks/inference_overhead.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from _common import header, model_arguments, model_entry, require, spread

from pytest_vaccbench.backends import RunOptions, available, get_backend, iter_batches
from pytest_vaccbench.baselines import ModelEntry
from pytest_vaccbench.dataset import Dataset, limit, resolve
from pytest_vaccbench.run import Case, evaluate


def export_onnx(entry: ModelEntry, weights_dir: Path, out: Path) -> Path:
    import torch

    from pytest_vaccbench.models import build_model
    from pytest_vaccbench.weights import find_weights

    model = build_model(entry, find_weights(entry, weights_dir).path)
    size = entry.preprocess.output_size
    torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(out), dynamo=False, opset_version=13,
                      input_names=["input"], output_names=["scores"],
                      dynamic_axes={"input": {0: "batch"}, "scores": {0: "batch"}})
    return out


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def bare_ort(onnx: Path, batches: list[np.ndarray], threads: int) -> np.ndarray:
    session = ort_session(onnx, threads)
    return np.concatenate([session.run(None, {"input": x})[0] for x in batches])


def suite_data_path_ort(onnx: Path, entry: ModelEntry, data: Dataset, options: RunOptions,
                        batch_size: int) -> np.ndarray:
    session = ort_session(onnx, options.threads)
    return np.concatenate([session.run(None, {"input": x})[0] for x in iter_batches(
        data.samples, entry.preprocess, batch_size, options.workers, cache_dir=options.image_cache_dir)])


def bare_torch(entry: ModelEntry, weights_dir: Path, batches: list[np.ndarray], threads: int) -> np.ndarray:
    import torch

    from pytest_vaccbench.models import build_model
    from pytest_vaccbench.weights import find_weights

    torch.set_num_threads(threads)
    model = build_model(entry, find_weights(entry, weights_dir).path)
    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(x)).numpy() for x in batches])


def suite_evaluate(backend: str, entry: ModelEntry, data: Dataset, options: RunOptions) -> None:
    evaluate(Case(entry, backend, "fp32"), data, options)


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    parser.add_argument("--backend", default="reference", help="suite backend for the last line")
    args = parser.parse_args()
    if args.backend not in available():
        raise SystemExit(f"backend {args.backend!r} is not registered here ({', '.join(available())})")
    entry = model_entry(args.family, args.model)
    data = limit(resolve(str(require(args.dataset))), args.limit)
    weights_dir = args.weights_dir.resolve()
    n = len(data.samples)
    header(f"inference overhead: {args.model} on {n} images of {args.dataset.name}")
    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(weights_dir=weights_dir, cache_dir=Path(tmp))
        batch_size = get_backend(args.backend).batch_size(entry, options)  # all loops use it
        batches = list(iter_batches(data.samples, entry.preprocess, batch_size, options.workers,
                                    cache_dir=options.image_cache_dir))  # fills the cache
        onnx = export_onnx(entry, weights_dir, Path(tmp) / "model.onnx")
        reference = bare_torch(entry, weights_dir, batches, options.threads)
        ort_scores = bare_ort(onnx, batches, options.threads)
        print(f"threads {options.threads}, batch {batch_size}; onnxruntime vs torch max |diff| "
              f"{np.abs(ort_scores - reference).max():.2e}; suite data path == in-memory batches: "
              f"{np.array_equal(suite_data_path_ort(onnx, entry, data, options, batch_size), ort_scores)}")
        runs: dict[str, Callable[[], object]] = {
            "bare onnxruntime": lambda: bare_ort(onnx, batches, options.threads),
            "suite data path + onnxruntime": lambda: suite_data_path_ort(onnx, entry, data, options, batch_size),
            "bare torch": lambda: bare_torch(entry, weights_dir, batches, options.threads),
            f"suite evaluate ({args.backend})": lambda: suite_evaluate(args.backend, entry, data, options),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for rep in range(args.repeat):
            for name, fn in runs.items():
                times[name].append(seconds(fn))
            print(f"run {rep + 1}: " + " | ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  flush=True)
    bare = "bare onnxruntime" if args.backend == "onnxruntime" else "bare torch"
    for suite, base in (("suite data path + onnxruntime", "bare onnxruntime"),
                        (f"suite evaluate ({args.backend})", bare)):
        overhead = [100 * (s / b - 1) for s, b in zip(times[suite], times[base])]
        print(f"{suite}: {spread([n / t for t in times[suite]])} img/s vs {base} "
              f"{spread([n / t for t in times[base]])} img/s: overhead {spread(overhead)} % "
              f"(median of medians {100 * (statistics.median(times[suite]) / statistics.median(times[base]) - 1):.1f} %; "
              f"goal <= 10 %)")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
