"""Dataset layouts, label files and the stratified subset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from pytest_vaccbench.dataset import (FULL_VAL_NAME, imagenet_classes, limit, read_label_file,
                                      resolve)
from pytest_vaccbench.errors import DatasetError

WNIDS = ["n01440764", "n01443537", "n15075141"]  # classes 0, 1, 999


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path, format="JPEG")
    return path


def test_class_order_is_sorted_wnids() -> None:
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert [w for w, _ in classes] == sorted(w for w, _ in classes)
    assert classes[0][0] == "n01440764" and classes[999][0] == "n15075141"
    assert classes[281][1].startswith("tabby")


def test_flat_layout_with_val_label(tmp_path: Path) -> None:
    for i in (1, 2, 3):
        _img(tmp_path / "val" / f"ILSVRC2012_val_0000000{i}.JPEG")
    (tmp_path / "val" / "val_label.txt").write_text(
        "ILSVRC2012_val_00000002.JPEG 7\nILSVRC2012_val_00000001.JPEG 65\n\n"
        "ILSVRC2012_val_00000003.JPEG 999\n")
    data = resolve(str(tmp_path / "val"))
    assert data.layout == "flat"
    assert [(s.path.name, s.label) for s in data.samples] == [
        ("ILSVRC2012_val_00000001.JPEG", 65), ("ILSVRC2012_val_00000002.JPEG", 7),
        ("ILSVRC2012_val_00000003.JPEG", 999)]
    assert data.name == tmp_path.name  # a folder named `val` takes its parent's name


def test_class_folders_and_wnid_names_give_the_same_labels(tmp_path: Path) -> None:
    for w in WNIDS:
        _img(tmp_path / "folders" / w / f"x_{w}.JPEG")
        _img(tmp_path / "names" / f"{w}_some_name.JPEG")
    folders = resolve(str(tmp_path / "folders"))
    names = resolve(str(tmp_path / "names"))
    assert folders.layout == "class-folders" and names.layout == "wnid-names"
    assert folders.labels == names.labels == [0, 1, 999]


def test_unknown_layout_says_what_it_looked_for(tmp_path: Path) -> None:
    _img(tmp_path / "holiday.jpg")
    with pytest.raises(DatasetError) as info:
        resolve(str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message and "val_label.txt" in message and "wnid" in message


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        resolve(str(tmp_path / "nope"))


@pytest.mark.parametrize("line, problem", [
    ("ILSVRC2012_val_00000002.JPEG", "expected `<image file> <class index>`"),
    ("ILSVRC2012_val_00000002.JPEG seven", "expected `<image file> <class index>`"),
    ("ILSVRC2012_val_00000002.JPEG 1000", "outside 0..999"),
])
def test_bad_label_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    labels = tmp_path / "val_label.txt"
    labels.write_text(f"ILSVRC2012_val_00000001.JPEG 65\n{line}\n")
    with pytest.raises(DatasetError) as info:
        read_label_file(labels)
    assert f"{labels}:2:" in str(info.value) and problem in str(info.value)


def test_labelled_image_missing_from_folder(tmp_path: Path) -> None:
    _img(tmp_path / "ILSVRC2012_val_00000001.JPEG")
    (tmp_path / "val_label.txt").write_text(
        "ILSVRC2012_val_00000001.JPEG 1\nILSVRC2012_val_00000009.JPEG 2\n")
    with pytest.raises(DatasetError, match="1 images listed .* are missing"):
        resolve(str(tmp_path))


def test_limit_is_deterministic_stratified_and_in_dataset_order(tmp_path: Path) -> None:
    for w in WNIDS:
        for i in range(10):
            _img(tmp_path / w / f"img{i:02d}.JPEG")
    data = resolve(str(tmp_path))
    subset = limit(data, 7)
    assert len(subset.samples) == 7
    assert Counter(subset.labels) == {0: 3, 1: 2, 999: 2}  # classes take turns
    assert list(subset.samples) == [s for s in data.samples if s in subset.samples]
    assert limit(data, 7).samples == subset.samples
    assert subset.total == 30 and subset.fingerprint() != data.fingerprint()


def test_real_val_subset_and_sample(shared_data: Path) -> None:
    val = resolve(str(shared_data / "ilsvrc2012-val-subset"))
    assert (val.name, val.layout, len(val.samples)) == ("ilsvrc2012-val-subset", "flat", 650)
    sample = resolve(str(shared_data / "imagenet-sample"))
    assert (sample.layout, len(sample.samples)) == ("wnid-names", 500)
    tench = next(s for s in sample.samples if s.path.name == "n01440764_tench.JPEG")
    assert tench.label == 0
    assert FULL_VAL_NAME not in (val.name, sample.name)


def test_builtin_photos() -> None:
    pytest.importorskip("skimage")
    data = resolve("skimage-photos")
    assert data.layout == "builtin" and len(data.samples) >= 4
    assert all(s.path.is_file() for s in data.samples)
