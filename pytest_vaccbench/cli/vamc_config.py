"""`vaccbench vamc-config`: what the onnxruntime emulation mirrors of a vamc build config."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..build_config import BuildConfigError, read_build_config
from . import command


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a vamc build config (2023 `vamc build` or newer `vamc compile` layout)")
    parser.add_argument("--onnx", default=None, metavar="GRAPH",
                        help="an ONNX graph: list the layers the config keeps in float by name")


@command("vamc-config", "what the onnxruntime emulation mirrors of a vamc build config", _config_args)
def _vamc_config(args: argparse.Namespace) -> int:
    build = read_build_config(Path(args.config))
    print(build.describe())
    if build.preprocess:
        print("calibration preprocessing: " + ", ".join(f"{k}={v}" for k, v in build.preprocess.items()))
    for setting in build.unmirrored:
        print(f"not mirrored: {setting}")
    if args.onnx:
        from ..backends.onnxruntime import load_onnx
        from ..layers import nodes_for, quantizable_layers

        layers = quantizable_layers(load_onnx(Path(args.onnx)))
        try:
            kept = set(nodes_for(layers, build.skip_conv_layers, build.skip_matmul_layers))
        except ValueError as exc:
            raise BuildConfigError(f"{args.onnx}: {exc}", build.path) from None
        print(f"{args.onnx}: {sum(l.kind == 'conv' for l in layers)} conv, "
              f"{sum(l.kind == 'matmul' for l in layers)} matmul layers; kept in float:")
        for layer in layers:
            if layer.node in kept:
                print(f"  {layer.kind} {layer.index}: {layer.node} ({layer.module})")
    return 0
