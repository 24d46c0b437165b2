"""`vaccbench prep npz` / `prep folders`: the files they write, checked with independent readers."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.cli import main
from pytest_vaccbench.dataset import imagenet_classes
from pytest_vaccbench.errors import DatasetError, ImageDecodeError
from pytest_vaccbench.prep import class_folders, write_npz

cv2 = pytest.importorskip("cv2")


def _skimage_photos() -> list[Path]:
    skimage_data = pytest.importorskip("skimage.data")
    folder = Path(skimage_data.__file__).parent
    return [folder / n for n in ("chelsea.png", "coffee.png", "rocket.jpg", "camera.png")]


def _check_npz_against_opencv(images: list[Path], target: Path) -> None:
    for image in images:
        npz = target / image.parent.name / f"{image.stem}.npz"
        with zipfile.ZipFile(npz) as archive:  # numpy.savez: a zip of .npy files, not compressed
            assert archive.namelist() == ["input_0.npy"]
            assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        with np.load(npz) as data:
            array = data["input_0"]
        bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)  # independent decode: BGR HWC
        assert array.dtype == np.uint8
        assert array.shape == (3, *bgr.shape[:2])  # CHW at the original size
        np.testing.assert_array_equal(array, bgr[:, :, ::-1].transpose(2, 0, 1))


def test_prep_npz_writes_image2npz_files_and_a_datalist(tmp_path: Path, capsys) -> None:
    source = tmp_path / "photos"
    source.mkdir()
    photos = [Path(shutil.copy(p, source)) for p in _skimage_photos()]  # camera.png is grayscale
    target = tmp_path / "npz"
    assert main(["prep", "npz", str(source), str(target), "--workers", "2"]) == 0
    assert "4 npz written, 0 already there" in capsys.readouterr().out
    _check_npz_against_opencv(photos, target)
    lines = (target / "npz_datalist.txt").read_text().splitlines()
    assert lines == [str((target / "photos" / f"{p.stem}.npz").resolve())
                     for p in sorted(photos, key=lambda p: p.name)]
    assert main(["prep", "npz", str(source), str(target), "--datalist", str(tmp_path / "d.txt")]) == 0
    assert "0 npz written, 4 already there" in capsys.readouterr().out
    assert (tmp_path / "d.txt").read_text().splitlines() == lines


def test_npz_of_real_imagenet_photos(shared_data: Path, tmp_path: Path) -> None:
    images = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[:12]
    result = write_npz(images, tmp_path, workers=2)
    assert result.written == 12 and len({np.load(p)["input_0"].shape for p in result.paths}) > 1
    _check_npz_against_opencv(images, tmp_path)


def test_unreadable_images_are_all_listed_and_the_rest_written(tmp_path: Path) -> None:
    source = tmp_path / "val"
    source.mkdir()
    good = Path(shutil.copy(_skimage_photos()[0], source))
    for name in ("broken_a.JPEG", "broken_b.JPEG"):
        (source / name).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ImageDecodeError) as info:
        write_npz(sorted(source.iterdir()), tmp_path / "npz")
    assert "2 unreadable image(s)" in str(info.value)
    assert str(source / "broken_a.JPEG") in str(info.value) and str(source / "broken_b.JPEG") in str(info.value)
    assert (tmp_path / "npz" / "val" / f"{good.stem}.npz").is_file()
    assert not (tmp_path / "npz" / "val" / "broken_a.npz").exists()


def test_two_images_that_map_to_one_npz_are_refused(tmp_path: Path) -> None:
    photo = _skimage_photos()[0]
    for parent in ("a/x", "b/x"):
        (tmp_path / parent).mkdir(parents=True)
        shutil.copy(photo, tmp_path / parent)
    with pytest.raises(DatasetError, match="would both be written to"):
        write_npz([tmp_path / "a/x/chelsea.png", tmp_path / "b/x/chelsea.png"], tmp_path / "npz")


def _flat_val(root: Path) -> Path:
    images = root / "val"
    images.mkdir(parents=True)
    rows = []
    for i, label in enumerate([0, 0, 281, 999]):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        cv2.imwrite(str(images / name), np.full((20, 30, 3), 40 * i, dtype=np.uint8))
        rows.append(f"{name} {label}")
    (root / "val_label.txt").write_text("\n".join(rows) + "\n")
    return images


def test_prep_folders_hard_links_by_wnid_and_is_idempotent(tmp_path: Path, capsys) -> None:
    images = _flat_val(tmp_path)
    target = tmp_path / "by_class"
    assert main(["prep", "folders", str(images), str(target)]) == 0
    assert "4 hard-linked, 0 copied, 0 already there" in capsys.readouterr().out
    wnids = [w for w, _ in imagenet_classes()]
    assert (wnids[0], wnids[281], wnids[999]) == ("n01440764", "n02123045", "n15075141")
    expected = {f"{wnids[0]}/ILSVRC2012_val_00000001.JPEG", f"{wnids[0]}/ILSVRC2012_val_00000002.JPEG",
                f"{wnids[281]}/ILSVRC2012_val_00000003.JPEG", f"{wnids[999]}/ILSVRC2012_val_00000004.JPEG"}
    assert {p.relative_to(target).as_posix() for p in target.rglob("*.JPEG")} == expected
    for rel in expected:
        assert (target / rel).stat().st_ino == (images / Path(rel).name).stat().st_ino
    assert main(["prep", "folders", str(images), str(target)]) == 0
    assert "0 hard-linked, 0 copied, 4 already there" in capsys.readouterr().out


def test_prep_folders_never_overwrites_a_different_file(tmp_path: Path) -> None:
    images = _flat_val(tmp_path)
    target = tmp_path / "by_class"
    clash = target / "n15075141" / "ILSVRC2012_val_00000004.JPEG"
    clash.parent.mkdir(parents=True)
    clash.write_bytes(b"someone else's file")
    with pytest.raises(DatasetError, match="1 target file.*nothing was written") as info:
        class_folders(images, target)
    assert str(clash) in str(info.value)
    assert clash.read_bytes() == b"someone else's file"
    assert not (target / "n01440764").exists()
    assert main(["prep", "folders", str(images), str(target)]) == 2  # the script says so too


def test_prep_folders_copy_mode(tmp_path: Path) -> None:
    images = _flat_val(tmp_path)
    result = class_folders(images, tmp_path / "copies", copy=True)
    assert (result.linked, result.copied, result.present) == (0, 4, 0)
    copied = tmp_path / "copies" / "n02123045" / "ILSVRC2012_val_00000003.JPEG"
    original = images / "ILSVRC2012_val_00000003.JPEG"
    assert copied.read_bytes() == original.read_bytes()
    assert copied.stat().st_ino != original.stat().st_ino


def test_prep_folders_needs_a_flat_layout_with_every_listed_image(tmp_path: Path) -> None:
    images = _flat_val(tmp_path)
    (images / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(DatasetError, match="1 images listed in .* are missing"):
        class_folders(images, tmp_path / "out")
    wnid_folders = tmp_path / "other" / "wnids"  # no val_label.txt beside or above it
    (wnid_folders / "n01440764").mkdir(parents=True)
    shutil.copy(images / "ILSVRC2012_val_00000001.JPEG", wnid_folders / "n01440764")
    with pytest.raises(DatasetError, match="expected a flat folder with a label file"):
        class_folders(wnid_folders, tmp_path / "out2")
