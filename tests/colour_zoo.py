"""A small zoo of stand-in compiled models for the vamp test double, as a project folder.

Every model is the nearest-colour classifier of vamp_standin.colour_model, so its numbers
are known by construction on the colour images laid out here: 6 of 8 right (top1 75.0),
7 of 8 in the top 5 (top5 87.5). A `broken` model has its colours moved to other classes
(top1 0: it fails its gate), and one model has no compiled model (its test is skipped).

    root/colours/images/*.png, root/colours/val_label.txt   the dataset (name: colours)
    root/models/<key>-<precision>-3_32_32-vacc/<key>.onnx   --vamp-root
    root/baselines/zooa.yaml, zoob.yaml                      two families
    root/suites/zoo.yaml                                     backends: [vamp]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vamp_standin  # noqa: E402

CENTROIDS = {1: (220, 20, 20), 100: (20, 200, 30), 300: (30, 40, 210), 500: (230, 220, 40),
             700: (40, 210, 220), 999: (200, 50, 200)}
# (colour class, label, width, height): the last two are labelled off their colour on purpose
IMAGES = [(1, 1, 50, 40), (100, 100, 64, 48), (300, 300, 40, 40), (500, 500, 33, 61),
          (700, 700, 45, 45), (999, 999, 70, 36), (1, 999, 52, 52), (100, 42, 48, 64)]
VDSP = {"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR",
        "OpConfig": {"IimageFormat": "RGB_PLANAR", "IimageWidth": 40, "IimageHeight": 40,
                     "OimageWidth": 32, "OimageHeight": 32, "CropX": 4, "CropY": 4,
                     "ResizeWidth": 40, "ResizeHeight": 40, "IimageWidthPitch": 40,
                     "IimageHeightPitch": 40, "Mean": [0, 0, 0], "Std": [1, 1, 1],
                     "NormaType": "EQUAL", "ColorCvtCode": "NO_CHANGE", "ResizeType": "BILINEAR_CV"}}
PREPROCESS = "preprocess: {resize: 40, resize_mode: square, crop: 32, library: cv2}"


@dataclass(frozen=True)
class ZooModel:
    key: str
    family: str
    precisions: tuple[str, ...]  # compiled (and expected) precisions; () = nothing compiled
    broken: bool = False


def default_models(count: int = 3) -> list[ZooModel]:
    """`count` working models over two families (every other one also int8), one broken
    model and one that is not compiled."""
    models = [ZooModel(f"zoo-m{i:02d}", "zooa" if i % 2 == 0 else "zoob",
                       ("fp16", "int8-percentile") if i % 2 == 0 else ("fp16",)) for i in range(count)]
    return [*models, ZooModel("zoo-broken", "zoob", ("fp16",), broken=True),
            ZooModel("zoo-uncompiled", "zooa", ())]


def write_colours(root: Path) -> Path:
    """The colours dataset (`colours/images` + `val_label.txt`, flat layout) and its vdsp file
    `colours.json` under `root`; returns the vdsp file."""
    import cv2

    images = root / "colours" / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (colour, label, width, height) in enumerate(IMAGES):
        name = f"ILSVRC2012_val_{i + 1:08d}.png"
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        pixels[:] = CENTROIDS[colour][::-1]  # written as BGR
        cv2.imwrite(str(images / name), pixels)
        rows.append(f"{name} {label}")
    (root / "colours" / "val_label.txt").write_text("\n".join(rows) + "\n")
    vdsp = root / "colours.json"
    vdsp.write_text(json.dumps(VDSP))
    return vdsp


def build(root: Path, models: list[ZooModel] | None = None) -> Path:
    """Lay the project out under `root`; returns root."""
    models = default_models() if models is None else models
    vdsp = write_colours(root)
    good = vamp_standin.colour_model(root / "export" / "colours.onnx", CENTROIDS)
    moved = dict(zip(CENTROIDS, list(CENTROIDS.values())[1:] + list(CENTROIDS.values())[:1]))
    broken = vamp_standin.colour_model(root / "export" / "moved.onnx", moved)
    families: dict[str, list[str]] = {}
    for model in models:
        if model.precisions:
            vamp_standin.install(root / "models", model.key, broken if model.broken else good, vdsp,
                                 model.precisions, 32)
        expected = "".join(f"\n        vamp/{p}: {{top1: 75.0, top5: 87.5}}" for p in model.precisions)
        families.setdefault(model.family, []).append(
            f"  {model.key}:\n    name: {model.key}\n    source: stub\n    library:\n    arch:\n"
            f"    input_size: 32\n" + (f"    expected:\n      colours:{expected}\n" if expected else ""))
    (root / "baselines").mkdir(exist_ok=True)
    for family, entries in families.items():
        (root / "baselines" / f"{family}.yaml").write_text(
            f"family: {family}\n{PREPROCESS}\nmodels:\n" + "".join(entries))
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites" / "zoo.yaml").write_text("baselines: ../baselines\nbackends: [vamp]\n")
    return root


def pytest_args(root: Path, cache: str = "cache") -> list[str]:
    """The options of a session over the zoo, run from `root`."""
    return ["suites", "-p", "no:cacheprovider", f"--vamp-bin={vamp_standin.stub_command()}",
            f"--vamp-root={root / 'models'}", f"--dataset={root / 'colours' / 'images'}",
            f"--vaccbench-cache={root / cache}"]
