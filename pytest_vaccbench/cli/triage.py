"""`vaccbench triage`: which layers of a model's int8 build lose accuracy (see triage.py).

Runs the model in fp32 and int8 with the onnxruntime backend on the dataset (exports and int8
graphs come from the cache the gate uses), then triages the int8 build: every quantized layer's single and
accumulated error, keep-in-fp32 agreement for the worst, and the smallest set of layers to
keep in fp32 (the vamc skip list and the gate option that confirm it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VaccbenchError
from . import command, model_args, model_run


def _triage_args(parser: argparse.ArgumentParser) -> None:
    model_args(parser)
    parser.add_argument("--precision", default="int8-max",
                        help="int8-max (default), int8-percentile, int8-kl_divergence or int8-mse")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="stop measuring keep-in-fp32 effects after this long (default: no limit)")
    parser.add_argument("--json", action="store_true", help="print the triage as JSON")


@command("triage", "rank the layers of an int8 build by the accuracy they lose (onnxruntime)",
         _triage_args)
def _triage(args: argparse.Namespace) -> int:
    from ..backends.onnxruntime import CALIBRATION_METHODS
    from ..run import Case, evaluate
    from ..triage import table, triage_case

    if args.precision not in CALIBRATION_METHODS:
        raise VaccbenchError(f"--precision {args.precision}: the onnxruntime emulation has "
                             f"{', '.join(CALIBRATION_METHODS)}")
    entry, data, options = model_run(args)
    fp32 = evaluate(Case(entry, "onnxruntime", "fp32"), data, options)
    int8 = evaluate(Case(entry, "onnxruntime", args.precision), data, options)
    result = triage_case(entry, args.precision, data, options, Path(int8.predictions),
                         Path(fp32.predictions), budget=args.budget, curve=True)
    if args.json:
        print(result.to_json())
        return 0
    print(f"{entry.key} onnxruntime/{args.precision} "
          f"({'per-tensor' if args.per_tensor else 'per-channel'}) on {data.name}: top1 fp32 "
          f"{fp32.top1:.2f}, int8 {int8.top1:.2f} (n={int8.n}, {int8.excluded} calibration images "
          f"not counted)")
    print(f"{result.images} triage images, {result.discordant} of them flipped by int8; int8 agrees "
          f"with fp32 on {result.int8_agreement:.1f}% of them, KL from fp32 {result.int8_kl:.4f}; "
          f"{result.seconds:.0f}s")
    print("\n".join(table(result.rows, result.int8_agreement, result.int8_kl)))
    for line in [*result.recovery_lines(), *(f"skipped: {s}" for s in result.skipped)]:
        print(line)
    return 0
