"""`vaccbench export`: a model with local weights to ONNX (see export.py)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from ..baselines import find_entry
from ..errors import VaccbenchError
from ..export import (DEFAULT_OPSET, INPUT_NAME, ExportOptions, adhoc_entry, export_entry, onnx_file_name,
                      writable_dir)
from . import command, count, output_folder


def _export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None,
                        help="a baseline model, `family/key` or `key` (its weights are found by "
                             "the naming rule); or use --model-library/--model-name")
    parser.add_argument("--baselines", default="baselines", help="folder of baseline YAMLs")
    parser.add_argument("--weights-dir", default=os.environ.get("VACCBENCH_WEIGHTS", "weights"),
                        help="folder of weight files (default $VACCBENCH_WEIGHTS or ./weights)")
    parser.add_argument("--model-library", choices=("timm", "torchvision"), default=None)
    parser.add_argument("--model-name", default=None, help="architecture name in that library")
    parser.add_argument("--pretrained-weights", default=None, metavar="FILE",
                        help="weight file (state dict, checkpoint, safetensors)")
    parser.add_argument("--num-classes", type=count, default=1000)
    parser.add_argument("--key-map", choices=("names", "by-order"), default="names",
                        help="load the weights by tensor name (default) or by order")
    parser.add_argument("--train-form", action="store_true",
                        help="do not re-parameterise (RepVGG branches stay unfused)")
    parser.add_argument("--size", type=count, default=None,
                        help="input size (default: the baseline's input_size, else 224)")
    parser.add_argument("--opset", type=count, default=DEFAULT_OPSET, help=f"default {DEFAULT_OPSET}")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="batch dimension named `batch` instead of fixed 1")
    parser.add_argument("--simplify", action="store_true", help="run onnxsim (must be installed)")
    parser.add_argument("--save-dir", type=output_folder, default=".", help="output folder (default: here)")


@command("export", "export a timm/torchvision model with local weights to ONNX", _export_args)
def _export(args: argparse.Namespace) -> int:
    from ..weights import find_weights

    if args.model:
        entry = find_entry(args.model, Path(args.baselines))
        lookup = find_weights(entry, Path(args.weights_dir).expanduser())
        weights = Path(args.pretrained_weights) if args.pretrained_weights else lookup.path
        if weights is None:
            raise VaccbenchError(lookup.skip_reason(entry))
        name = entry.key
    elif args.model_library and args.model_name:
        entry = adhoc_entry(args.model_library, args.model_name, args.size or 224, args.num_classes,
                            args.key_map)
        weights = Path(args.pretrained_weights) if args.pretrained_weights else None
        name = args.model_name
    else:
        raise VaccbenchError("name a baseline model, or give --model-library and --model-name")
    if weights is not None and not weights.is_file():
        raise VaccbenchError("weight file not found", weights)
    if args.train_form:
        entry = replace(entry, deploy=None)
    size = args.size or entry.input_size
    options = ExportOptions(size, args.opset, args.dynamic_batch, args.simplify)
    out = writable_dir(args.save_dir) / onnx_file_name(name, size)
    export_entry(entry, weights, out, options)
    batch = "dynamic" if args.dynamic_batch else "1"
    print(f"{out}: {entry.library} {entry.arch}, input {INPUT_NAME} ({batch}, 3, {size}, {size}), "
          f"opset {args.opset}, weights {weights or 'random init'}"
          f"{', deploy form (re-parameterised)' if entry.deploy else ''}, ONNX checker passed")
    return 0
