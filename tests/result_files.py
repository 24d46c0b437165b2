"""Result files for tests: generated predictions with known counts, written as the zoo's
scripts and vamp write them, and the zoo's scorer re-implemented from its description (an
independent check of zoo_scorer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pytest_vaccbench.dataset import imagenet_classes
from pytest_vaccbench.resultfiles import write_result_txt

WNIDS = [w for w, _ in imagenet_classes()]
NAMES = [n for _, n in imagenet_classes()]


def image_names(n: int, first: int = 1) -> list[str]:
    return [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(first, first + n)]


def predictions(labels: Sequence[int], seed: int = 0, right: float = 0.75,
                in_top5: float = 0.9) -> np.ndarray:
    """(N, 5) distinct classes per image: the true class first for about `right` of them, at
    ranks 1-4 for about `in_top5 - right`, nowhere for the rest."""
    rng = np.random.default_rng(seed)
    truth = np.asarray(labels, dtype=np.int64)
    offsets = np.cumsum(rng.integers(1, 150, (len(truth), 5)), axis=1)  # distinct, never 0 mod 1000
    top5 = (truth[:, None] + offsets) % 1000
    draw = rng.random(len(truth))
    first = draw < right
    later = (draw >= right) & (draw < in_top5)
    top5[first, 0] = truth[first]
    ranks = rng.integers(1, 5, len(truth))
    top5[later, ranks[later]] = truth[later]
    return top5


def probabilities(n: int, seed: int = 1) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).random((n, 5)), axis=1)[:, ::-1]


def folder_paths(names: Sequence[str], labels: Sequence[int], root: str = "/data/ILSVRC2012_img_val") -> list[str]:
    """`<root>/<wnid>/<image>`: the class-folder layout's paths."""
    return [f"{root}/{WNIDS[label]}/{name}" for name, label in zip(names, labels)]


def label_file(path: Path, names: Sequence[str], labels: Sequence[int]) -> Path:
    path.write_text("".join(f"{n} {int(label)}\n" for n, label in zip(names, labels)))
    return path


def result_txt(path: Path, names: Sequence[str], labels: Sequence[int], top5: np.ndarray,
               relay: bool = True, flat: bool = False) -> Path:
    """A result.txt of these predictions: class-folder paths (or bare names with `flat`)."""
    paths = list(names) if flat else folder_paths(names, labels)
    return write_result_txt(path, paths, top5, probabilities(len(names)), relay=relay)


def vamp_outputs(folder: Path, datalist: Path, names: Sequence[str], labels: Sequence[int],
                 top5: np.ndarray, padding: int = 6, classes: int = 1000) -> None:
    """What vamp writes for these predictions: `output_<i>.npz` holding `output_0` (1, classes)
    scores whose top 5 are `top5`, and the datalist of `<root>/<wnid>/<stem>.npz` paths."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (name, label, top) in enumerate(zip(names, labels, np.asarray(top5).tolist())):
        scores = np.zeros((1, classes), dtype=np.float32)
        scores[0, [t + classes - 1000 for t in top]] = [0.5, 0.2, 0.1, 0.05, 0.02]
        np.savez(folder / f"output_{i:0{padding}d}.npz", output_0=scores)
        lines.append(f"/data/npz/{WNIDS[label]}/{name.rsplit('.', 1)[0]}.npz")
    datalist.write_text("\n".join(lines) + "\n")


def eval_topk(path: Path) -> tuple[float, float, int]:
    """The zoo's scorer as its description says: positional groups of 5 lines, the truth is
    the name of each line's parent folder's wnid, the prediction the text after the 4th ':'."""
    table = dict(zip(WNIDS, NAMES))
    lines = path.read_text().splitlines(keepends=True)
    groups = hits1 = hits5 = 0
    for start in range(0, len(lines), 5):
        matched = []
        for line in lines[start:start + 5]:
            line = line.rstrip("\n")
            matched.append(bool(line) and table[line.split("/")[-2]] == line.split(":")[4].strip())
        groups += 1
        hits1 += matched[0]
        hits5 += any(matched)
    return 100.0 * hits1 / groups, 100.0 * hits5 / groups, groups


def exact_predictions(labels: Sequence[int], right: int, in_top5: int, seed: int = 0,
                      right_480: int = 0, crane_for_crane: int = 0) -> np.ndarray:
    """(N, 5) predictions with exactly `right` images right at top-1 and `in_top5` in the top 5;
    `right_480` of them are images of class 480, and `crane_for_crane` images of class 134
    (wrong) take class 517 first: what the zoo's scorer counts otherwise."""
    truth = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    top5 = (truth[:, None] + np.cumsum(rng.integers(1, 150, (len(truth), 5)), axis=1)) % 1000
    of_480, cranes = np.flatnonzero(truth == 480), np.flatnonzero(truth == 134)
    fixed_right, fixed_wrong = of_480[:right_480], cranes[:crane_for_crane]
    rest = rng.permutation(np.setdiff1d(np.arange(len(truth)), np.concatenate([of_480, cranes])))
    first = np.concatenate([fixed_right, rest[:right - len(fixed_right)]])
    later = rest[right - len(fixed_right):in_top5 - len(fixed_right)]
    top5[first, 0] = truth[first]
    top5[later, rng.integers(1, 5, len(later))] = truth[later]
    top5[fixed_wrong] = [517, 1, 2, 3, 4]
    return top5


def device_results(root: Path, labels_50k: Path, subset_labels: Path) -> None:
    """Stand-ins for what accelerator hosts write, for docs/score.md:
    - results/mobilenet_v2/timm-mobilenetv2_100/vamp-fp16/result.txt: the zoo's result.txt of
      the 50,000 val images scoring exactly the baseline's 71.522 / 90.488 by class index, 40
      of them right on class 480 and 3 cranes taken for the other crane;
    - .../vamp-int8-percentile/result.txt: a build that lost 1.4 points top1;
    - vamp/output/ + vamp/npz_datalist.txt: vamp's outputs for the 650 images of the subset."""
    text = labels_50k.read_text().split()
    names, labels = text[0::2], np.asarray(text[1::2], dtype=np.int64)
    model = root / "results" / "mobilenet_v2" / "timm-mobilenetv2_100"
    for run, right, in_top5, extra in (("vamp-fp16", 35761, 45244, {"right_480": 40, "crane_for_crane": 3}),
                                       ("vamp-int8-percentile", 34950, 44900, {})):
        (model / run).mkdir(parents=True)
        top5 = exact_predictions(labels, right, in_top5, seed=len(run), **extra)
        write_result_txt(model / run / "result.txt", folder_paths(names, labels), top5,
                         probabilities(len(names)))
    text = subset_labels.read_text().split()
    names, labels = text[0::2], np.asarray(text[1::2], dtype=np.int64)
    vamp_outputs(root / "vamp" / "output", root / "vamp" / "npz_datalist.txt", names, labels,
                 exact_predictions(labels, 520, 610, seed=7))


def stub_baseline(dataset: str, top1: float, top5: float) -> str:
    """baselines/stub.yaml: model stub-a, with vamp/fp16 figures on `dataset`."""
    return f"""\
family: stub
preprocess: {{resize: 40, resize_mode: square, crop: 32, library: cv2}}
models:
  stub-a:
    name: a
    source: stub
    library:
    arch:
    input_size: 32
    expected:
      {dataset}:
        vamp/fp16: {{top1: {top1}, top5: {top5}}}
"""
