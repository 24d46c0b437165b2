"""Benchmarks 1 and 2: end-to-end images/s of `pytest suites/` for one model, cold and warm
image cache, against a timm-validate-style loop (benchmarks/timm_style.py) on the same images.

Every measurement is a whole process, start to exit (imports, model build, dataset listing,
gating and report included), as a user would time it. The three runs are interleaved and
repeated; the ratios are paired per repetition.

    python benchmarks/end_to_end.py --repeat 3
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _common import (count_images, header, limit_args, model_arguments, recording_args, spread, timed,
                     timed_pytest, timm_cmd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    parser.add_argument("--backend", default="reference", help="the suite's backend")
    parser.add_argument("--tuned-timm", action="store_true",
                        help="run the timm-style loop with the reference backend's inference settings "
                             "(channels_last, its batch size, OMP_WAIT_POLICY=PASSIVE): what is "
                             "left is the data path")
    args = parser.parse_args()
    from pytest_vaccbench.backends.reference import ReferenceBackend

    n = count_images(args.dataset, args.limit)
    common = ["--dataset", str(args.dataset), "--weights-dir", str(args.weights_dir), "--backend", args.backend]
    header(f"end to end: {args.model} on {n} images of {args.dataset.name}, backend {args.backend}, "
           f"default threads/batch{'; timm-style tuned like the suite' if args.tuned_timm else ''}")
    rows: dict[str, list[float]] = {"timm": [], "cold": [], "warm": []}
    timm_env = {"OMP_WAIT_POLICY": "PASSIVE"} if args.tuned_timm else None
    with tempfile.TemporaryDirectory() as tmp:
        common += (limit_args(args.limit) if args.backend == "reference" else  # no baseline for others yet
                   recording_args(Path(tmp), args.dataset, args.limit))
        for rep in range(args.repeat):
            cache = Path(tmp) / f"cache{rep}"  # a fresh cache: the first suite run is cold
            runs = {
                "timm": timm_cmd(args.family, args.model, args.dataset, args.weights_dir,
                                 *limit_args(args.limit),
                                 *(["--channels-last", "--batch-size", str(ReferenceBackend.default_batch_size)]
                                   if args.tuned_timm else [])),
                "cold": ["-k", args.model, *common, "--vaccbench-cache", str(cache)],
                "warm": ["-k", args.model, *common, "--vaccbench-cache", str(cache)],
            }
            line = []
            for name, cmd in runs.items():
                t = timed(cmd, env=timm_env) if name == "timm" else timed_pytest(cmd, tests=1)
                rows[name].append(t.wall)
                line.append(f"{name} {t.wall:5.1f} s ({n / t.wall:5.1f} img/s, cpu {t.cpu:5.1f} s)")
            shutil.rmtree(cache)
            print(f"run {rep + 1}: " + " | ".join(line), flush=True)
    for name in ("cold", "warm"):
        ratios = [t / s for t, s in zip(rows["timm"], rows[name])]
        goal = 1.5 if name == "cold" else 4.0
        print(f"suite {name}: {spread([n / s for s in rows[name]])} img/s vs timm-style "
              f"{spread([n / s for s in rows['timm']])} img/s: ratio {spread(ratios, '{:.2f}')}x "
              f"(goal >= {goal}x)")


if __name__ == "__main__":
    main()
