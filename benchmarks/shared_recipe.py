"""Benchmark 3: four models that share a preprocessing recipe, in one suite run vs four runs.

The four mobilenet_v2 entries built as timm mobilenetv2_100 (local-mobilenetv2_100-tvq,
timm-mobilenetv2_100, mmcls-mobilenetv2, keras-mobilenetv2) share the family's recipe
(Resize 256 bilinear, CenterCrop 224, ImageNet mean/std). Only one real weight file exists
here, so a temporary weights folder links it under all four names; the runs record
baselines (--update-baselines) into a temporary copy of baselines/. With `--backend
onnxruntime`, the graph is exported once beforehand and given to every run as `<key>.onnx`
in --onnx-dir, as the zoo's exported graphs would be. Interleaved, repeated:
- one suite run of the four models, cold image cache (decoded once, read three times);
- four separate suite runs with --no-image-cache (every run decodes);
- four separate suite runs sharing one cold cache (the first decodes);
- four separate timm-validate-style runs (benchmarks/timm_style.py).

    python benchmarks/shared_recipe.py --repeat 2 [--backend onnxruntime]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from _common import (DATA, count_images, header, limit_args, model_entry, recording_args, require, spread,
                     timed, timed_pytest, timm_cmd)

MODELS = ["local-mobilenetv2_100-tvq", "timm-mobilenetv2_100", "mmcls-mobilenetv2", "keras-mobilenetv2"]
WEIGHTS = "mobilenetv2_100-from-torchvision-quantized.pth"


def ready_graphs(weights: Path, out: Path) -> Path:
    """`out` holding `<key>.onnx` for every model: one export, linked under each name."""
    from pytest_vaccbench.export import cached_export

    graph = cached_export(model_entry("mobilenet_v2", MODELS[0]), weights / WEIGHTS, out / "cache")
    for key in MODELS:
        (out / f"{key}.onnx").symlink_to(graph)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATA / "imagenet-sample")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--backend", default="reference", help="the suite's backend")
    args = parser.parse_args()
    real = require(DATA / "weights" / WEIGHTS)
    n = count_images(args.dataset, args.limit)
    header(f"shared recipe: {len(MODELS)} mobilenetv2_100 models on {n} images of {args.dataset.name}, "
           f"backend {args.backend}")
    totals: dict[str, list[float]] = {"one run": [], "4 runs, no cache": [], "4 runs, shared cache": [],
                                      "4 timm-style runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights"
        weights.mkdir()
        for name in [WEIGHTS, *(f"{m}.pth" for m in MODELS[1:])]:
            (weights / name).symlink_to(real)
        common = ["--dataset", str(args.dataset), "--weights-dir", str(weights), "--backend", args.backend]
        if args.backend == "onnxruntime":
            common += ["--onnx-dir", str(ready_graphs(weights, Path(tmp) / "onnx"))]
        for rep in range(args.repeat):
            recording = recording_args(Path(tmp), args.dataset, args.limit)
            cache = Path(tmp) / f"cache{rep}"
            totals["one run"].append(timed_pytest(
                ["-k", " or ".join(MODELS), *common, *recording, "--vaccbench-cache", str(cache / "one")], 4).wall)
            totals["4 runs, no cache"].append(sum(timed_pytest(
                ["-k", m, *common, *recording, "--no-image-cache", "--vaccbench-cache", str(cache / "none")], 1).wall
                for m in MODELS))
            totals["4 runs, shared cache"].append(sum(timed_pytest(
                ["-k", m, *common, *recording, "--vaccbench-cache", str(cache / "shared")], 1).wall for m in MODELS))
            totals["4 timm-style runs"].append(sum(timed(timm_cmd(
                "mobilenet_v2", m, args.dataset, weights,
                *limit_args(args.limit))).wall for m in MODELS))
            shutil.rmtree(cache)
            print(f"run {rep + 1}: " + " | ".join(f"{k} {v[-1]:.1f} s" for k, v in totals.items()),
                  flush=True)
    one = totals["one run"]
    for name, values in totals.items():
        ratio = [v / o for v, o in zip(values, one)]
        print(f"{name:22s} {spread(values)} s total, {spread([4 * n / v for v in values])} img/s "
              f"(model-images); / one run: {spread(ratio, '{:.2f}')}x")
    print(f"median one run vs 4 separate runs without cache: "
          f"{statistics.median(totals['4 runs, no cache']) / statistics.median(one):.2f}x faster")


if __name__ == "__main__":
    main()
