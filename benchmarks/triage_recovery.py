"""What layer triage's pick of layers to keep in fp32 recovers on images nobody looked at.

    PYTHONPATH=. python benchmarks/triage_recovery.py --dataset ../shared/data/ilsvrc2012-val-subset \
        --unseen ../shared/data/imagenet-sample --calib-images 64 --per-tensor \
        --precision int8-percentile --threads 2

The int8 build of efficientnet_lite0 is calibrated on --calib-images images of --dataset and
triaged on the others, as `vaccbench triage` does (triage images from one half, the held-out
images of the other half). Two ways of growing the set of layers kept in fp32 are compared:

- before: greedy on the top-1 agreement with fp32 of the discordant images only (at most 64,
  filled up to 32), no held-out confirmation (the method until this benchmark was written);
- after: triage.triage, greedy on the mean KL divergence from fp32 over all the triage images
  (at most 128), each layer confirmed on the held-out half.

Each set's top-1 is then measured for K = 0..5 on --unseen, a third set of images used
neither for calibration, triage nor confirmation: the numbers a user's full validation run
would move by. Prints a table of K against both; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import ROOT
from pytest_vaccbench.backends import RunOptions, class_scores, iter_batches
from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend, run_session
from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.dataset import resolve
from pytest_vaccbench.run import Case, _fp32_rows, evaluate
from pytest_vaccbench import triage

OLD_LEAST, OLD_MOST = 32, 64  # the old triage images: the discordant ones, filled up to 32, at most 64


def flip_greedy(fp32, qdq, images, threads: int, top_k: int = triage.TOP_K) -> list:
    """The old pick: layers by single SQNR, the 10 worst kept alone by top-1 agreement with
    fp32, then grown greedily on that agreement (no held-out confirmation)."""
    fp32 = triage.fp32_at_opset(fp32, qdq)
    layers = triage.quantizable_layers(fp32)
    errors, f_scores, _ = triage.layer_errors(fp32, qdq, layers, images, threads)
    f_top1 = f_scores.argmax(axis=1)
    worst = sorted((layer for layer in layers if layer.node in errors),
                   key=lambda layer: errors[layer.node].single_sqnr)[:triage.IMPACT_LAYERS]

    def agreement(kept: list) -> float:
        model = triage.keep_fp32(qdq, fp32, [layer.node for layer in kept])
        return float((triage.top1(model, images, threads) == f_top1).mean())
    alone = {layer: agreement([layer]) for layer in worst}
    order = [max(worst, key=lambda layer: alone[layer])]
    while len(order) < top_k:
        left = [layer for layer in worst if layer not in order]
        order.append(max(left, key=lambda layer: agreement([*order, layer])))
    return order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="the dataset calibrated and triaged on")
    parser.add_argument("--unseen", required=True, help="other images, to measure the recovery on")
    parser.add_argument("--precision", default="int8-percentile")
    parser.add_argument("--per-tensor", action="store_true")
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--weights-dir", default=str(ROOT / "weights"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one)")
    args = parser.parse_args()
    import onnx

    entry = load_family(ROOT / "baselines" / "efficientnet_lite.yaml").models["timm-efficientnet_lite0"]
    data, unseen = resolve(args.dataset), resolve(args.unseen)
    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(weights_dir=Path(args.weights_dir).resolve(),
                             cache_dir=Path(args.cache or tmp).resolve(), threads=args.threads,
                             workers=args.threads,
                             extra={"calib_images": args.calib_images, "int8_per_tensor": args.per_tensor})
        started, load = time.perf_counter(), os.getloadavg()[0]
        fp32_run = evaluate(Case(entry, "onnxruntime", "fp32"), data, options)
        int8_run = evaluate(Case(entry, "onnxruntime", args.precision), data, options)
        backend = OnnxRuntimeBackend()
        fp32 = onnx.load(str(backend.fp32_graph(entry, options)))
        qdq = onnx.load(str(backend.graph(entry, args.precision, data, options)))
        with np.load(int8_run.predictions) as run:
            files, labels, run_top1 = run["files"].tolist(), run["labels"], run["top5"][:, 0]
            fp32_top1 = _fp32_rows(Path(fp32_run.predictions), run)[0]
        half, held = triage.split_rows(len(files))
        by_name = {s.path.name: s for s in data.samples}

        def crops(rows) -> np.ndarray:
            return np.concatenate(list(iter_batches([by_name[files[i]] for i in rows], entry.preprocess,
                                                    16, options.workers)))

        flipped = [i for i in half if run_top1[i] != fp32_top1[i]]
        others = [i for i in half if run_top1[i] == fp32_top1[i]]
        old_rows = flipped[:OLD_MOST] + others[:max(0, OLD_LEAST - len(flipped[:OLD_MOST]))]
        before = flip_greedy(fp32, qdq, crops(old_rows), args.threads)
        picked, discordant = triage.pick_images([files[i] for i in half], run_top1[half], fp32_top1[half])
        holdout = triage.Holdout(
            lambda: iter_batches([by_name[files[i]] for i in held], entry.preprocess, 32, options.workers,
                                 cache_dir=options.image_cache_dir),
            labels[held], fp32_top1[held], run_top1[held], lambda scores: class_scores(scores, entry))
        found = triage.triage(fp32, qdq, crops([half[i] for i in picked]), discordant, holdout=holdout,
                              budget=None, threads=args.threads, curve=True)
        after = found.recovery.order if found.recovery else []

        def unseen_top1(kept: list) -> float:
            model = triage.keep_fp32(qdq, triage.fp32_at_opset(fp32, qdq), [x.node for x in kept])
            batches = iter_batches(unseen.samples, entry.preprocess, 32, options.workers,
                                   cache_dir=options.image_cache_dir)
            scores = class_scores(run_session(triage.session(model, args.threads), batches,
                                              triage.fixed_batch(model)), entry)
            return 100.0 * float((scores.argmax(axis=1) == np.asarray(unseen.labels)).mean())

        batches = iter_batches(unseen.samples, entry.preprocess, 32, options.workers,
                               cache_dir=options.image_cache_dir)
        fp32_scores = class_scores(run_session(triage.session(fp32, args.threads), batches), entry)
        fp32_unseen = 100.0 * float((fp32_scores.argmax(axis=1) == np.asarray(unseen.labels)).mean())
        print(f"{entry.key} onnxruntime/{args.precision} ({'per-tensor' if args.per_tensor else 'per-channel'}), "
              f"calibrated on {args.calib_images} images of {data.name}; load average {load:.1f} at start")
        print(f"triaged on {data.name}: before {len(old_rows)} images ({min(len(flipped), OLD_MOST)} "
              f"discordant); after {found.images} images ({found.discordant} discordant), held-out "
              f"{len(held)}")
        print(f"unseen: {unseen.name}, {len(unseen.samples)} images: fp32 {fp32_unseen:.2f}")
        print(f"{'K':>2}  {'before':>7}  {'after':>7}  layers added (before | after)")
        plain = unseen_top1([])
        for k in range(0, triage.TOP_K + 1):
            old = unseen_top1(before[:k]) if k else plain
            new = f"{unseen_top1(after[:k]) if k else plain:7.2f}" if k <= len(after) else f"{'-':>7}"
            added = (f"{before[k - 1].module} | {after[k - 1].module if k <= len(after) else '-'}"
                     if k else "(plain int8)")
            print(f"{k:>2}  {old:7.2f}  {new}  {added}")
        r = found.recovery
        print(f"after: held-out K={r.k if r else None} (best {r.best if r else None}); "
              f"{'; '.join(found.recovery_lines()[1:3]) if r else ''}")
        print(f"{time.perf_counter() - started:.0f}s, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
