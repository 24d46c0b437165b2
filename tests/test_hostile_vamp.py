"""Hostile and broken inputs on the vamp path, through a pytest session with the vamp test
double (tests/vamp_stub.py) and the colours project of test_vamp.py: broken vamp outputs,
images too large to decode, images changed under the npz cache, and a vamp child that
leaves its process group."""

from __future__ import annotations

import os
import stat
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from hostile_project import assert_clean, jpeg_claiming, png_header, snapshot
from vaccbench_fake import summary_table

test_vamp = pytest.importorskip("test_vamp")  # needs cv2, onnx and onnxruntime, as the stand-in does
Project = test_vamp.Project
ONE = ("--precision=int8-percentile", "-k", "stub-colours and not 1001")


@pytest.fixture
def project(pytester: pytest.Pytester) -> Iterator[Project]:
    """The colours project; afterwards nothing but the cache (and the images and the pid file
    a probe writes itself) has changed: baselines, compiled models, vdsp files byte-identical."""
    project = Project(pytester)
    mine = (project.root / "cache", project.root / "colours", project.root / "child.pid",
            project.root / ".cache")  # pytester's $HOME: onnxruntime in the vamp stand-in writes there
    before = snapshot(project.root, *mine)
    yield project
    assert snapshot(project.root, *mine) == before, "written outside the cache"


@pytest.mark.parametrize("mode, problem", [("badzip", "File is not a zip file"), ("empty", "an empty file")])
def test_vamp_output_that_is_not_an_npz_is_named(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                 mode: str, problem: str) -> None:
    monkeypatch.setenv("VAMP_STUB_FAIL", mode)
    result = project.run(*ONE)
    text = assert_clean(result)
    result.assert_outcomes(failed=1)
    assert f"output_000000.npz: cannot read vamp output ({problem}): not an npz file" in text


def test_images_over_the_pixel_limit_are_refused_before_the_npz_is_written(project: Project) -> None:
    images = project.root / "colours" / "images"
    bombs = [images / "ILSVRC2012_val_00000001.png", images / "ILSVRC2012_val_00000002.png"]
    bombs[0].write_bytes(png_header(60000, 60000))  # OpenCV's own error before
    jpeg_claiming(bombs[1], 20000, 20000)  # decoded in full before
    result = project.run(*ONE)
    text = assert_clean(result)
    result.assert_outcomes(failed=1)
    for path, pixels in zip(bombs, ("3600000000", "400000000")):
        assert f"{path}: image is {pixels} pixels, over the limit of" in text
    written = {p.stem for p in (project.root / "cache" / "vamp-npz").rglob("*.npz")}
    assert written and not written & {p.stem for p in bombs}


def test_npz_cache_follows_the_image_content_and_is_readable_by_all(project: Project) -> None:
    images = sorted((project.root / "colours" / "images").glob("*.png"))
    for path in images:  # uncompressed PNGs: a file's size depends on its dimensions only
        Image.open(path).convert("RGB").save(path, compress_level=0)
    first = project.run(*ONE)
    first.assert_outcomes(passed=1)
    npz = sorted((project.root / "cache" / "vamp-npz").rglob("*.npz"))
    assert len(npz) == 8 and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in npz)
    path = images[0]  # colour of class 1, labelled 1: now the colour of class 100
    st = path.stat()
    pixels = np.asarray(Image.open(path)).copy()
    pixels[:] = test_vamp.CENTROIDS[100]
    Image.fromarray(pixels).save(path, compress_level=0)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert path.stat().st_size == st.st_size  # same name and size: the same dataset fingerprint
    second = project.run(*ONE)
    assert_clean(second)
    assert summary_table(second.outlines)["stub/stub-colours vamp/int8-percentile"][0] == "62.500"


def test_vamp_child_in_its_own_session_is_killed_on_timeout(project: Project,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    child_file = project.root / "child.pid"
    monkeypatch.setenv("VAMP_STUB_FAIL", "detach")
    monkeypatch.setenv("VAMP_STUB_CHILD", str(child_file))
    result = project.run(*ONE, "--vamp-timeout=3")
    text = assert_clean(result)
    result.assert_outcomes(failed=1)
    assert "vamp did not finish within 3 s (--vamp-timeout)" in text
    assert test_vamp.gone_within(int(child_file.read_text()))



def inflating_output(path: Path) -> Path:
    """A deflated output_0 of 20 MB of zeros (20 kB on disk), standing for one of gigabytes."""
    import zipfile

    header = {"descr": "<f4", "fortran_order": False, "shape": (1, 5_000_000)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("output_0.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            for _ in range(20):
                member.write(bytes(1_000_000))
    assert path.stat().st_size < 1_000_000
    return path


def test_a_vamp_output_that_inflates_to_gigabytes_is_refused_from_its_header(tmp_path) -> None:
    """Its shape is read from the npy header before anything is inflated or stacked."""
    import tracemalloc

    from pytest_vaccbench.backends.vamp import VampError, read_outputs

    np.savez(tmp_path / "output_000000.npz", output_0=np.ones((1, 1000), np.float32))
    inflating_output(tmp_path / "output_000001.npz")
    tracemalloc.start()
    try:
        with pytest.raises(VampError, match=r"output_000001.npz: output_0 has shape \(1, 5000000\), "
                                            r"expected \(1, 1000\) like the outputs before it"):
            read_outputs(tmp_path, 2, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, peak  # nothing near the 20 MB it declares


def test_a_scored_vamp_output_that_inflates_to_gigabytes_is_refused_from_its_header(tmp_path) -> None:
    """`vaccbench score` reads vamp outputs made elsewhere under the same bound."""
    import tracemalloc

    from pytest_vaccbench.resultfiles import ResultsError, _output_scores

    path = inflating_output(tmp_path / "output_000000.npz")
    tracemalloc.start()
    try:
        with pytest.raises(ResultsError, match=r"output_0 has shape \(1, 5000000\): one image's scores"):
            _output_scores(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, peak


@pytest.mark.parametrize("runner", ["vamp", "vsx"])
def test_the_tail_of_a_runners_stderr_is_read_from_its_end(tmp_path, runner: str) -> None:
    """75 MB of vamp's stderr took 1.9 GB to show its last lines; 8 MB stands for it here.
    The VastStreamX process's log is shown the same way."""
    import importlib
    import tracemalloc

    from pytest_vaccbench.backends.compiled import TAIL_LINE

    _tail = importlib.import_module(f"pytest_vaccbench.backends.{runner}")._tail
    log = tmp_path / "vamp.stderr.log"
    line = "W0101 something is retried " + "x" * 60 + "\n"
    log.write_text(line * (8_000_000 // len(line)) + "last but one\n" + "y" * 10_000 + "\n")
    tracemalloc.start()
    try:
        tail = _tail(log)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    lines = tail.splitlines()
    assert len(lines) == 20 and lines[-2] == "  | last but one"
    assert lines[-1] == "  | " + "y" * TAIL_LINE + " ..."
    assert peak < 1_000_000, peak


@pytest.mark.slow
def test_a_damaged_npz_in_the_cache_is_written_again(project: Project) -> None:
    """Every later run failed inside vamp until `cache --clear`: now the damaged input is
    found from its zip directory and npy header, and written again."""
    project.run(*ONE).assert_outcomes(passed=1)
    [damaged, *_] = sorted((project.root / "cache" / "vamp-npz").rglob("*.npz"))
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[: len(whole) // 2])  # cut short: a full disk, a copy killed
    result = project.run(*ONE)
    assert_clean(result)
    result.assert_outcomes(passed=1)
    assert damaged.read_bytes() == whole


def test_a_vamp_npz_folder_that_is_a_link_out_of_the_cache_is_refused(project: Project, tmp_path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (project.root / "cache").mkdir()
    (project.root / "cache" / "vamp-npz").symlink_to(outside)
    result = project.run(*ONE)
    text = assert_clean(result)
    result.assert_outcomes(failed=1)
    assert f"the cache's vamp-npz folder is a link to {outside}, outside the cache" in text
    assert list(outside.iterdir()) == []
