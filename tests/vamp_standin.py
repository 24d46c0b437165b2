"""Stand-in "compiled models" for the vamp test double (tests/vamp_stub.py).

A stand-in compiled model is a folder named as the model zoo names vamc's output,
`<name>-<fp16-none|int8-<calibration>>-3_<h>_<w>-vacc/`, holding `<name>.onnx` (which the
test double runs with ONNX Runtime), plus `<root>/vdsp_params/<name>-vdsp_params.json`.
The ONNX graph is either hand-built (a nearest-colour classifier whose answers are known by
construction) or exported from a real PyTorch model.

    python tests/vamp_standin.py --baselines baselines --model local-mobilenetv2_100-tvq \\
        --weights-dir ../shared/data/weights --root /tmp/vamp-models \\
        --vdsp pytest_vaccbench/data/vdsp/timm-mobilenetv2_100-vdsp_params.json \\
        --precision fp16 --precision int8-percentile
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STUB = Path(__file__).resolve().parent / "vamp_stub.py"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def stub_command() -> str:
    """--vamp-bin value that runs the test double with this interpreter."""
    import shlex

    return shlex.join([sys.executable, str(STUB)])


def colour_model(path: Path, centroids: dict[int, tuple[int, int, int]], classes: int = 1000,
                 size: int = 32) -> Path:
    """An ONNX nearest-colour classifier over 0..255 RGB inputs (vdsp NormaType EQUAL).

    logit_k = -|mean colour - centroid_k|^2 / 4000 for the centroid classes, -1e4 for every
    other class: the nearest centroid wins, and the other centroids follow by distance.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scale = 2000.0
    weight = np.zeros((3, classes), dtype=np.float32)
    bias = np.full((classes,), -1e4, dtype=np.float32)
    for index, colour in centroids.items():
        c = np.asarray(colour, dtype=np.float64)
        weight[:, index] = c / scale
        bias[index] = -(c @ c) / (2 * scale)  # + the constant -|m|^2/2s, the same for every class
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["mean", "weight"], ["scaled"]),
         helper.make_node("Add", ["scaled", "bias"], ["output"])],
        "colours",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def export_onnx(entry: object, weights: Path | None, path: Path) -> Path:
    """A baseline entry's PyTorch model (real weights, or random init) as a 1x3xNxN ONNX graph."""
    import warnings

    import torch

    from pytest_vaccbench.models import build_model

    model = build_model(entry, weights)  # type: ignore[arg-type]
    size = entry.input_size  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, on purpose
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False,
                          opset_version=13, input_names=["input"], output_names=["output"])
    return path


def compiled_dir_name(name: str, precision: str, size: int) -> str:
    dtype, calibration = ("fp16", "none") if precision == "fp16" else precision.split("-", 1)
    return f"{name}-{dtype}-{calibration}-3_{size}_{size}-vacc"


def install(root: Path, name: str, onnx_file: Path, vdsp: Path, precisions: Sequence[str],
            size: int) -> list[Path]:
    """Lay out stand-in compiled models under `root` the way --vamp-root expects them."""
    prefixes = []
    for precision in precisions:
        folder = root / compiled_dir_name(name, precision, size)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.onnx"
        if target.resolve() != onnx_file.resolve():
            shutil.copyfile(onnx_file, target)
        prefixes.append(folder / name)
    (root / "vdsp_params").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vdsp, root / "vdsp_params" / f"{name}-vdsp_params.json")
    return prefixes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", default=str(ROOT / "baselines"))
    parser.add_argument("--model", required=True, help="model key, e.g. local-mobilenetv2_100-tvq")
    parser.add_argument("--weights-dir", default=os.environ.get("VACCBENCH_WEIGHTS", "weights"))
    parser.add_argument("--root", required=True, help="the --vamp-root to fill")
    parser.add_argument("--vdsp", required=True, help="vdsp_params JSON to install with it")
    parser.add_argument("--precision", action="append", required=True)
    args = parser.parse_args(argv)
    from pytest_vaccbench.baselines import load_families
    from pytest_vaccbench.weights import find_weights

    entry = next((e for f in load_families(args.baselines) for k, e in f.models.items()
                  if k == args.model), None)
    if entry is None:
        parser.error(f"no model {args.model!r} in {args.baselines}")
    weights = find_weights(entry, Path(args.weights_dir).resolve()).path
    if weights is None:
        parser.error(f"no weights for {args.model} in {args.weights_dir}")
    root = Path(args.root)
    onnx_file = export_onnx(entry, weights, root / ".export" / f"{entry.key}.onnx")
    for prefix in install(root, entry.key, onnx_file, Path(args.vdsp), args.precision,
                          entry.input_size):
        print(f"stand-in compiled model: {prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
