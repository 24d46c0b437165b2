"""Speed and memory of scoring a result.txt (`vaccbench score`, resultfiles.read_predictions),
against the zoo's own way of reading it (eval_topk.py: `readlines()`, then 5-line groups).

A 50,000-image result.txt is generated (the zoo's line format, class-folder paths, the
official val label file's images and classes when it is found), then copies of other sizes:
the same images appended 4 times over (a rerun appended to the file: 4x the lines, the same
images), and files of 10,000 and 40,000 images (50k and 200k lines). Each is read in a fresh
process; the script prints seconds, images/s, lines/s and the peak memory the read added
(ru_maxrss after minus before), for this tool and for the readlines() reference.

    python benchmarks/score_speed.py [--images 50000] [--repeat 3] [--keep DIR]

This tool keeps one row per image, so its memory follows the number of images and not the
file's size; with --labels its rows are the label set's, fixed before the first line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, ROOT, header, spread

LABELS = DATA / "ilsvrc2012-val-subset" / "ILSVRC2012_val_labels_all50000.txt"


def peak_mb() -> float:
    """This process's peak resident memory. VmHWM is reset by exec; ru_maxrss is not (a child
    starts with its parent's), so it is the fallback where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def one(path: Path, how: str, labels: str | None) -> dict[str, float]:
    """In this (fresh) process: read `path` one way, and what it took."""
    from pytest_vaccbench.resultfiles import read_predictions

    before = peak_mb()
    start = time.perf_counter()
    if how == "vaccbench":
        scored = read_predictions([path], labels=labels, subset=bool(labels))
        images = scored.n
    else:  # eval_topk.py's way: the whole file in a list, then positional groups of 5
        with open(path) as handle:
            lines = handle.readlines()
        images = 0
        for i in range(0, len(lines), 5):
            images += 1
            [line.split(":")[4].strip() == line.split("/")[-2] for line in lines[i:i + 5]]
    return {"seconds": time.perf_counter() - start, "images": images, "added_mb": peak_mb() - before}


def measure(path: Path, how: str, labels: Path | None) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", str(path), "--how", how]
    if labels:
        cmd += ["--labels", str(labels)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)


def generate(folder: Path, images: int) -> dict[str, tuple[Path, int, int]]:
    """name -> (file, lines, distinct images)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np
    import result_files as rf

    if LABELS.is_file():
        text = LABELS.read_text().split()
        names, labels = text[0::2][:images], np.asarray(text[1::2][:images], dtype=np.int64)
    else:
        names, labels = rf.image_names(images), np.arange(images) % 1000
    full = rf.result_txt(folder / "50k-images.txt", names, labels, rf.predictions(labels))
    lines = full.read_text().splitlines(keepends=True)
    files = {"all images": (full, len(lines), images)}
    appended = folder / "appended-4x.txt"
    appended.write_text("".join(lines) * 4)
    files["same images, appended 4x"] = (appended, 4 * len(lines), images)
    for part in (images // 5, 4 * images // 5):
        path = folder / f"{part}-images.txt"
        path.write_text("".join(lines[:5 * part]))
        files[f"{part} images"] = (path, 5 * part, part)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000, help="images of the largest file")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (median and range shown)")
    parser.add_argument("--keep", type=Path, default=None, help="write the files here and keep them")
    parser.add_argument("--one", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--how", default="vaccbench", help=argparse.SUPPRESS)
    parser.add_argument("--labels", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.how, args.labels)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        files = generate(folder, args.images)
        header(f"scoring result.txt files: {args.images} images, {args.repeat} rounds each")
        labels = LABELS if LABELS.is_file() and args.images <= 50_000 else None
        print(f"{'file':>26} {'lines':>9} {'MB':>7} {'reader':>18} {'seconds':>24} {'images/s':>9} "
              f"{'lines/s':>9} {'memory added MB':>16}")
        summary: dict[tuple[str, str], float] = {}
        for name, (path, lines, images) in files.items():
            megabytes = path.stat().st_size / 1e6
            for how, label in (("vaccbench", None), ("vaccbench", labels), ("readlines", None)):
                runs = [measure(path, how, label) for _ in range(args.repeat)]
                seconds = [r["seconds"] for r in runs]
                best = min(seconds)
                memory = max(r["added_mb"] for r in runs)
                reader = how + (" --labels" if label else "")
                summary[(name, reader)] = memory
                print(f"{name:>26} {lines:>9} {megabytes:>7.1f} {reader:>18} "
                      f"{spread(seconds, '{:.2f}'):>24} {images / best:>9.0f} {lines / best:>9.0f} "
                      f"{memory:>16.1f}")
        for reader in sorted({r for _, r in summary}):
            once, four = summary[("all images", reader)], summary[("same images, appended 4x", reader)]
            print(f"{reader}: memory of the 4x file / the 1x file = {four / max(once, 0.1):.2f}")
        small, large = (f"{args.images // 5} images", f"{4 * args.images // 5} images")
        print(f"vaccbench --labels: memory of the {large.split()[0]}-image file / the "
              f"{small.split()[0]}-image file = "
              f"{summary[(large, 'vaccbench --labels')] / max(summary[(small, 'vaccbench --labels')], 0.1):.2f}"
              if labels else "(no label file found: the --labels rows are not measured)")


if __name__ == "__main__":
    main()
