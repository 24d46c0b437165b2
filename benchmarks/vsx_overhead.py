"""Benchmark 5: the vsx backend's host-side overhead against the inference time of the SDK's
test double, on the 650 images of the shared validation subset.

The stand-in compiled model is the onnxruntime backend's own export of the model (cached),
laid out as `deploy_weights/<name>_run_stream_fp16/mod` with a vdsp JSON of its recipe; the
SDK is tests/vsx_double (put on PYTHONPATH here). Each repetition runs `VsxBackend.scores`,
all a test's inference does, in sync and in async mode, and the double reports the seconds
it spent on the emulated device (fused op + ONNX Runtime) and loading the model. What is
left of the wall time is the backend's: starting the VastStreamX process and its imports,
decoding on the host (OpenCV, odd sizes made even, RGB planar), create_image, the stream
calls, the checks of every output, and the scores coming back.

    python benchmarks/vsx_overhead.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import DATA, ROOT, header, model_arguments, model_entry, require, spread

from pytest_vaccbench.backends import RunOptions, get_backend
from pytest_vaccbench.dataset import limit, resolve
from pytest_vaccbench.export import cached_export
from pytest_vaccbench.weights import find_weights

DOUBLE = ROOT / "tests" / "vsx_double"
VDSP = {"efficientnet_lite": ROOT / "tests" / "data" / "vdsp" / "timm-efficientnet_lite0-vdsp_params.json",
        "mobilenet_v2": ROOT / "pytest_vaccbench" / "data" / "vdsp" / "timm-mobilenetv2_100-vdsp_params.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    parser.set_defaults(dataset=DATA / "ilsvrc2012-val-subset" / "images")
    parser.add_argument("--batch", type=int, default=1, help="--vsx-batch (default 1, the zoo's)")
    args = parser.parse_args()
    entry = model_entry(args.family, args.model)
    data = limit(resolve(str(require(args.dataset))), args.limit)
    n = len(data.samples)
    header(f"vsx overhead: {args.model} on {n} images of {args.dataset.parent.name}, SDK test double, "
           f"batch {args.batch}")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(DOUBLE), str(ROOT), os.environ.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as tmp:
        cache, zoo = Path(tmp) / "cache", Path(tmp) / "zoo"
        graph = cached_export(entry, find_weights(entry, args.weights_dir.resolve()).path, cache)
        folder = zoo / "deploy_weights" / f"{entry.key.replace('-', '_')}_run_stream_fp16"
        folder.mkdir(parents=True)
        shutil.copyfile(graph, folder / "mod.onnx")
        shutil.copyfile(VDSP[args.family], folder / "vdsp_params.json")
        stats = Path(tmp) / "stats.jsonl"
        os.environ["VSX_DOUBLE_STATS"] = str(stats)
        backend = get_backend("vsx")
        times: dict[str, dict[str, list[float]]] = {}
        for rep in range(args.repeat):
            parts = []
            for mode in ("sync", "async"):
                options = RunOptions(weights_dir=args.weights_dir.resolve(), cache_dir=cache,
                                     extra={"vsx_root": str(zoo), "vsx_mode": mode, "vsx_batch": args.batch})
                stats.unlink(missing_ok=True)
                start = time.perf_counter()
                backend.scores(entry, "fp16", data, options)
                wall = time.perf_counter() - start
                double = json.loads(stats.read_text())
                host = wall - double["device_seconds"] - double["load_seconds"]
                got = times.setdefault(mode, {"wall": [], "device": [], "load": [], "host": []})
                for key, value in (("wall", wall), ("device", double["device_seconds"]),
                                   ("load", double["load_seconds"]), ("host", host)):
                    got[key].append(value)
                parts.append(f"{mode}: wall {wall:.2f} s = double's inference {double['device_seconds']:.2f} s "
                             f"+ model load {double['load_seconds']:.2f} s + host {host:.2f} s")
            print(f"run {rep + 1}: " + " | ".join(parts), flush=True)
    for mode, got in times.items():
        ratio = [100 * h / d for h, d in zip(got["host"], got["device"])]
        print(f"{mode:5}: host-side overhead {spread(got['host'], '{:.2f}')} s "
              f"({1000 * statistics.median(got['host']) / n:.2f} ms/image) vs the double's inference "
              f"{spread(got['device'], '{:.2f}')} s ({1000 * statistics.median(got['device']) / n:.2f} ms/image): "
              f"overhead {spread(ratio)} % of inference")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
