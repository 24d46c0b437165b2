"""Cost of the image cache's content digest (and of the pixel-limit header check), against
decoding the same images.

The preprocessed-image cache (pytest_vaccbench.image_cache) decides freshness from a digest
(XXH3-128) of every image file's content, so an image replaced by another of the same size
and time is not served stale. Each file is digested on every run, also when the cache
answers (row by row, as the rows are read); this script measures it against what the cache
saves (decode + resize + crop of the same files, one thread each), against sha256 (the
digest it replaced) and against a stat-only check (path, size, mtime).

    python benchmarks/cache_digest.py [--dataset DIR] [--repeat 3]

The files are read once before timing, so every side reads from the page cache. From a
cold disk the digest also costs one read of the files: on a cache miss the decoder reads
them anyway (and then finds them in the page cache); on a cache hit that read is what the
freshness check adds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

from _common import DATA, header, require, spread


def sha256_digest(paths: list[Path]) -> str:
    """The content digest before XXH3: sha256 of every file."""
    h = hashlib.sha256()
    for path in paths:
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def stat_digest(paths: list[Path]) -> str:
    """The freshness check before content digests: path, size and mtime."""
    h = hashlib.sha256()
    for path in paths:
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATA / "imagenet-sample",
                        help="a folder of images (default: the shared imagenet-sample, 500 JPEGs)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (median and range shown)")
    args = parser.parse_args()

    from pytest_vaccbench.dataset import IMAGE_SUFFIXES, Sample
    from pytest_vaccbench.image_cache import files_digest
    from pytest_vaccbench.preprocess import PreprocessSpec, check_pixels, load_crop

    paths = sorted(p for p in require(args.dataset).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    samples = [Sample(p, 0) for p in paths]
    spec = PreprocessSpec(resize=256, crop=224)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    header(f"image cache freshness: {len(paths)} images, {megabytes:.1f} MB, from {args.dataset}")
    files_digest(samples)  # warm the page cache
    rounds: dict[str, list[float]] = {"stat only": [], "content digest": [], "sha256 of the content": [],
                                      "pixel-limit header check": [], "decode+resize+crop": []}
    for _ in range(args.repeat):  # interleaved, so that load changes hit all alike
        for name, work in (("stat only", lambda: stat_digest(paths)),
                           ("content digest", lambda: files_digest(samples)),
                           ("sha256 of the content", lambda: sha256_digest(paths)),
                           ("pixel-limit header check", lambda: [check_pixels(p) for p in paths]),
                           ("decode+resize+crop", lambda: [load_crop(p, spec) for p in paths])):
            start = time.perf_counter()
            work()
            rounds[name].append((time.perf_counter() - start) * 1000 / len(paths))
    for name, values in rounds.items():
        print(f"{name:>24}: {spread(values, '{:.3f}')} ms per image")
    digest, decode = (min(rounds[k]) for k in ("content digest", "decode+resize+crop"))
    print(f"content digest / decoding: {digest / decode:.3f} "
          f"({digest / decode * 100:.1f} % of the work a cache hit saves)")
    check = min(rounds["pixel-limit header check"])
    print(f"header check / decoding: {check / decode:.3f} (paid by the cv2 decoder; Pillow's "
          "own decode reads the header anyway)")


if __name__ == "__main__":
    main()
