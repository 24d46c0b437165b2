"""int8 calibration speed and memory: the streaming calibration (thresholds.py) against
onnxruntime's own calibrators, both against one fp32 pass over the same images.

Every measurement runs in a child process of its own, which reports its wall time and its
peak RSS (resource.getrusage ru_maxrss: what the process held at its worst, model and
imports included). The images are the dataset's crops from the image cache (built once,
before any timing), in batches of 16 (quantize_static's calibration batch here). With
more calibration images than the dataset has, the images are repeated (said in the output).
Each image count also times the pass with the activations the calibration collects as
outputs, without binning them: the floor of the streaming calibration.

    python benchmarks/calibration_speed.py --images 250,1000 --ort-images 250
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import DATA, ROOT, header, model_entry, require

BATCH = 16


def batches_for(n: int, cache: Path, weights: Path, dataset: Path = DATA / "ilsvrc2012-val-subset"):
    """(entry, fp32 graph, a callable giving the normalised batches of n images, the number of
    images in the dataset)."""
    import numpy as np

    from pytest_vaccbench.backends import RunOptions, cached_crops
    from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend
    from pytest_vaccbench.calibration import calibration_set
    from pytest_vaccbench.dataset import resolve
    from pytest_vaccbench.preprocess import normalize

    entry = model_entry("mobilenet_v2", "local-mobilenetv2_100-tvq")
    data = resolve(str(require(dataset)))
    options = RunOptions(weights_dir=weights, cache_dir=cache, threads=2, workers=2)
    source = OnnxRuntimeBackend().fp32_graph(entry, options)
    order = {s: i for i, s in enumerate(data.samples)}
    picked = [order[s] for s in calibration_set(data, min(n, len(data.samples))).samples]
    rows = np.resize(np.array(picked), n)  # repeated when n exceeds the dataset
    crops = cached_crops(data.samples, entry.preprocess, 2, cache / "images", picked)

    def batches():
        for start in range(0, n, BATCH):
            yield normalize(crops.take(rows[start:start + BATCH]), entry.preprocess)
    return entry, source, batches, len(data.samples)


def child(kind: str, mode: str, n: int, args: argparse.Namespace) -> None:
    """One measurement; prints a JSON line {seconds, rss_mb}."""
    import contextlib
    import io

    from pytest_vaccbench import thresholds

    threads = args.threads
    _, source, batches, _ = batches_for(n, args.cache, args.weights_dir, args.dataset)
    model = thresholds.calibration_model(source)
    start = time.perf_counter()
    if kind == "fp32":
        session = thresholds._session(model.SerializeToString(), threads)
        for x in batches():
            session.run(None, {"input": x})
    elif kind == "outputs":  # the floor: the activations the calibration reads, not binned
        tensors = thresholds.calibrated_tensors(model)
        names = thresholds.collected_tensors(tensors, thresholds.inherited_ranges(model, tensors))
        session = thresholds._session(thresholds.activation_model(model, names), threads, spinning=False)
        for x in batches():
            session.run(names, {"input": x})
    elif kind == "fast":
        thresholds.compute_ranges(model, mode, batches, threads)
    else:  # onnxruntime's calibrator, fed one batch per collect_data as quantize_static does
        import tempfile

        import onnx
        from onnxruntime.quantization import CalibrationMethod, create_calibrator

        method = {"max": "MinMax", "percentile": "Percentile", "kl_divergence": "Entropy"}[mode]
        with tempfile.TemporaryDirectory() as tmp:
            onnx.save(model, f"{tmp}/model.onnx")
            calibrator = create_calibrator(Path(f"{tmp}/model.onnx"), thresholds.quantized_op_types(),
                                           augmented_model_path=f"{tmp}/augmented.onnx",
                                           calibrate_method=getattr(CalibrationMethod, method),
                                           extra_options={"symmetric": True} if mode == "percentile" else {})
            calibrator.set_execution_providers(["CPUExecutionProvider"])
            with contextlib.redirect_stdout(io.StringIO()):
                for x in batches():
                    calibrator.collect_data(_One(x))
                calibrator.compute_data()
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb}))


class _One:
    """A calibration data reader holding one batch."""

    def __init__(self, x) -> None:
        self.items = [{"input": x}]

    def get_next(self):
        return self.items.pop() if self.items else None


def measure(kind: str, mode: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", kind, mode, str(n), "--cache", str(args.cache),
           "--weights-dir", str(args.weights_dir), "--threads", str(args.threads), "--dataset", str(args.dataset)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"{kind} {mode} {n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="250,1000", help="calibration image counts (default 250,1000)")
    parser.add_argument("--ort-images", default="250",
                        help="counts at which onnxruntime's calibrators also run (they take ~17x an "
                             "fp32 pass; default 250)")
    parser.add_argument("--modes", default="max,percentile,kl_divergence,mse")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "vaccbench")
    parser.add_argument("--weights-dir", type=Path, default=DATA / "weights")
    parser.add_argument("--dataset", type=Path, default=DATA / "ilsvrc2012-val-subset",
                        help="the images the calibration set is drawn from (default: the shared val subset)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, mode, n = args.child
        child(kind, mode, int(n), args)
        return
    header("int8 calibration of mobilenetv2 (torchvision's weights): streaming vs onnxruntime's calibrators")
    available = batches_for(1, args.cache, args.weights_dir, args.dataset)[3]  # export + image cache, untimed
    modes = args.modes.split(",")
    ort_counts = {int(v) for v in args.ort_images.split(",") if v}
    print(f"batches of {BATCH}, {args.threads} threads; the dataset has {available} images"
          f"{' (repeated to reach larger counts)' if max(map(int, args.images.split(','))) > available else ''}")
    print(f"{'images':>6} {'mode':<14} {'fp32 s':>7} {'fast s':>7} {'x fp32':>6} {'fast MB':>8} "
          f"{'ort s':>7} {'x fp32':>6} {'ort MB':>7} {'ort/fast':>8}", flush=True)
    for n in map(int, args.images.split(",")):
        fp32 = measure("fp32", "none", n, args)
        for mode in modes:
            fast = measure("fast", mode, n, args)
            row = (f"{n:>6} {mode:<14} {fp32['seconds']:>7.1f} {fast['seconds']:>7.1f} "
                   f"{fast['seconds'] / fp32['seconds']:>6.1f} {fast['rss_mb']:>8.0f}")
            if n in ort_counts and mode != "mse":
                ort = measure("ort", mode, n, args)
                row += (f" {ort['seconds']:>7.1f} {ort['seconds'] / fp32['seconds']:>6.1f} "
                        f"{ort['rss_mb']:>7.0f} {ort['seconds'] / fast['seconds']:>8.1f}")
            else:
                row += f" {'-':>7} {'-':>6} {'-':>7} {'-':>8}" + ("  (onnxruntime has no mse)" if mode == "mse" else "")
            print(row, flush=True)
        outputs = measure("outputs", "none", n, args)
        print(f"{n:>6} fp32 pass peak RSS {fp32['rss_mb']:.0f} MB; the pass with the collected activations as "
              f"outputs, not binned: {outputs['seconds']:.1f} s ({outputs['seconds'] / fp32['seconds']:.1f} x fp32), "
              f"{outputs['rss_mb']:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
