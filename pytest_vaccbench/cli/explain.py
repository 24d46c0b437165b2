"""`vaccbench explain`: where a model's accuracy went, stage by stage, on the same images
(see ladder.py).

Runs the ladder's steps as the plugin's tests run them (same caches: image crops, exported
graphs, calibration ranges), prints one row per step and the sentence that names the step
carrying most of the significant loss; `--json` prints the ladder as data, `--html` writes
it as a page with its waterfall chart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import VaccbenchError
from . import command, model_args, model_run


def _explain_args(parser: argparse.ArgumentParser) -> None:
    model_args(parser)
    parser.add_argument("--precision", default=None, metavar="P",
                        help="the build explained: int8-<calibration> or fp16 (default: the build "
                             "config's, else int8-percentile)")
    parser.add_argument("--vamc-config", type=Path, default=None, metavar="FILE",
                        help="the vamc build config the int8/fp16 steps mirror (as the plugin's option)")
    parser.add_argument("--vdsp", type=Path, default=None, metavar="FILE",
                        help="the device's vdsp_params JSON, emulated in step 3 (default: the one "
                             "the --device's compiled model comes with)")
    parser.add_argument("--device", default=None, metavar="vamp|vsx|RESULTS",
                        help="step 7: the compiled model run on the accelerator (vamp, vsx), or "
                             "the result files it wrote (result.txt, a vamp output folder with "
                             "its datalist, predictions files); vamp:RESULTS or vsx:RESULTS: "
                             "result files of that host, step 3 its compiled model's vdsp JSON")
    parser.add_argument("--vamp-bin", default=None, metavar="CMD",
                        help="the vamp runner, a path or command line (default: vamp on PATH)")
    parser.add_argument("--vamp-root", default=None, metavar="DIR",
                        help="compiled models (as the plugin's option)")
    parser.add_argument("--vamp-timeout", type=float, default=None, metavar="S",
                        help="seconds the vamp run may take (default 3600)")
    parser.add_argument("--vsx-python", default=None, metavar="CMD",
                        help="the Python that imports vaststreamx (default: this one)")
    parser.add_argument("--vsx-root", default=None, metavar="DIR",
                        help="compiled models for --device vsx (default: --vamp-root)")
    parser.add_argument("--json", action="store_true", help='print the ladder as {"steps": [...]}')
    parser.add_argument("--html", type=Path, default=None, metavar="FILE",
                        help="also write the ladder and its waterfall chart as one HTML page")


@command("explain", "where the accuracy went: recipe, device preprocessing, export, fp16, int8, "
                    "device, on the same images", _explain_args)
def _explain(args: argparse.Namespace) -> int:
    from ..ladder import build_precision, explain, parse_device
    from ..waterfall import ladder_page

    device = parse_device(args.device)
    entry, data, options = model_run(args, vamc_config=args.vamc_config, vamp_bin=args.vamp_bin,
                                     vamp_root=args.vamp_root, vamp_timeout=args.vamp_timeout,
                                     vsx_python=args.vsx_python, vsx_root=args.vsx_root)
    precision = args.precision or build_precision(entry, options)
    found = explain(entry, data, options, precision, vdsp=args.vdsp, device=device)
    if args.json:
        print(json.dumps(found.to_dict(), indent=1))
    else:
        print("\n".join(found.lines()))
    if args.html:
        try:
            args.html.parent.mkdir(parents=True, exist_ok=True)
            args.html.write_text(ladder_page(found.to_dict()))
        except OSError as exc:
            raise VaccbenchError(f"cannot write the HTML page ({exc.strerror or exc})", args.html) from None
        if not args.json:
            print(f"HTML: {args.html}")
    return 0
