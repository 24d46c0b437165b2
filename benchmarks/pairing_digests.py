"""What recording each image's content digest in a run's predictions costs a warm run.

A run's predictions record the content digest of every image (and of its weights or graph),
so that an int8 run is paired only with the fp32 run of the same network on the same images
(run._fp32_rows), never with one of other images under the same names. A warm run's image
cache digests every image file anyway, as it checks each row it reads (image_cache.
CachedCrops); `image_cache.image_digests` takes those digests again, reading no image file a
second time. Over N images (hard links to the shared data's images) with a warm cache entry,
interleaved and repeated, in this process:

- warm read: a warm entry's rows read and checked batch by batch, as every warm run reads
  them (all a run spends on its images when its predictions record no digests);
- then digests: right after it, `image_digests` of every image (what a run records now);
- then sha256 reread: a sha256 of every image file (one more read of each file, from the
  page cache here: how the digests were taken before).

With `--reference CHECKOUT` (another version's source tree, e.g. one made by
`git archive main | tar -x -C DIR`), it also times whole warm `pytest suites/` runs of
mobilenetv2_100 on onnxruntime fp32 over the same images, this checkout's and the
reference's in turn, each with a cache of its own made warm by a first run, and prints the
ratios of their wall and CPU times (on a shared machine the CPU time is the steadier).

    python benchmarks/pairing_digests.py --images 1000 --repeat 3 [--reference DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from _common import DATA, ROOT, header, linked_dataset, spread

FAMILY, MODEL = "mobilenet_v2", "local-mobilenetv2_100-tvq"
BATCH = 32


def warm_read(samples: list[Any], spec: Any, cache: Path) -> None:
    """Every row of the warm entry, read and checked as a run's batches are (no decoding)."""
    from pytest_vaccbench.backends import iter_batches

    for _ in iter_batches(samples, spec, BATCH, workers=2, cache_dir=cache):
        pass


def sha256_reread(samples: list[Any]) -> list[int]:
    """The digests as they were taken before: every image file read again."""
    found = []
    for s in samples:
        h = hashlib.sha256()
        with open(s.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        found.append(int.from_bytes(h.digest()[:8], "big"))
    return found


def in_process(samples: list[Any], cache: Path, repeat: int) -> None:
    from pytest_vaccbench import image_cache
    from pytest_vaccbench.preprocess import PreprocessSpec

    spec = PreprocessSpec(resize=256, crop=224)
    warm_read(samples, spec, cache)  # the cold pass: decodes and writes the entry
    steps: dict[str, Callable[[], object]] = {
        "warm read": lambda: warm_read(samples, spec, cache),
        "then digests": lambda: image_cache.image_digests(samples),
        "then sha256 reread": lambda: sha256_reread(samples),
    }
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeat):  # each step timed right after the warm read it follows
        image_cache._SEEN.clear()  # a new process: nothing digested yet
        for name, work in steps.items():
            start = time.perf_counter()
            work()
            rounds[name].append((time.perf_counter() - start) * 1000 / len(samples))
    for name, values in rounds.items():
        print(f"{name:>18}: {spread(values, '{:.4f}')} ms per image")
    for name in ("then digests", "then sha256 reread"):
        ratios = [added / read for added, read in zip(rounds[name], rounds["warm read"])]
        print(f"{name} / warm read: {spread(ratios, '{:.3f}')} (what it adds to a warm run's "
              "work on its images)")


def suite_run(checkout: Path, data: Path, work: Path, weights: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, its threads and children) of one `pytest suites/`
    process of `checkout` (its own code and suites)."""
    copy = work / "baselines"
    if not copy.is_dir():
        shutil.copytree(checkout / "baselines", copy)
    cmd = [sys.executable, "-m", "pytest", "suites/", "-q", "-p", "no:cacheprovider", "-k", MODEL,
           "--dataset", str(data), "--labels", str(data / "val_label.txt"), "--backend", "onnxruntime",
           "--precision", "fp32", "--weights-dir", str(weights), "--vaccbench-cache", str(work / "cache"),
           "--baselines", str(copy), "--update-baselines", "--dataset-name", f"bench-{data.name}"]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        output = out.read()
    if "1 passed" not in output:
        sys.exit(f"the run of {checkout} did not pass ({status}):\n{output[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def whole_runs(reference: Path, data: Path, work: Path, weights: Path, repeat: int) -> None:
    sides = {"this checkout": ROOT, "reference": reference.resolve()}
    for name, checkout in sides.items():
        suite_run(checkout, data, work / name, weights)  # cold: export, decode, cache write
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, checkout in sides.items():
            rounds[name].append(suite_run(checkout, data, work / name, weights))
    for name, values in rounds.items():
        print(f"warm pytest run, {name:>13}: wall {spread([w for w, _ in values], '{:.2f}')} s, "
              f"CPU {spread([c for _, c in values], '{:.2f}')} s")
    for i, what in ((0, "wall"), (1, "CPU")):
        ratios = [a[i] / b[i] for a, b in zip(rounds["this checkout"], rounds["reference"])]
        print(f"this checkout / reference, {what} time per repetition: {spread(ratios, '{:.3f}')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="images in the set (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (median and range shown)")
    parser.add_argument("--reference", type=Path, default=None, metavar="CHECKOUT",
                        help="another version's source tree: also time whole warm pytest runs of both")
    parser.add_argument("--weights-dir", type=Path, default=DATA / "weights")
    args = parser.parse_args()

    from pytest_vaccbench.dataset import resolve

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = linked_dataset(args.images, work / f"set{args.images}")
        samples = list(resolve(str(data / "images"), labels=str(data / "val_label.txt")).samples)
        megabytes = sum(s.path.stat().st_size for s in samples) / 1e6
        header(f"digests of a run's images, warm image cache: {len(samples)} images, {megabytes:.0f} MB")
        in_process(samples, work / "cache", args.repeat)
        if args.reference:
            whole_runs(args.reference, data, work / "runs", args.weights_dir.resolve(), args.repeat)


if __name__ == "__main__":
    main()
