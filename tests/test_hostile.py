"""Hostile and broken inputs, one probe each, through the real entry point (a pytest session
with the plugin, or the `vaccbench` CLI): a one-line message naming the file, no Python
traceback, nothing written outside the cache, nothing lost.

The project (tests/hostile_project.py) is small synthetic PNGs and a backend that reads
them through the shared batch loop and scores every image right. The vamp probes are in
test_hostile_vamp.py.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hostile_project import (TRACEBACK, Hostile, assert_clean, jpeg_claiming, model, png_header,
                             small_fs, snapshot)
from pytest_vaccbench.preprocess import MAX_PIXELS, PreprocessSpec, load_crop, resize_crop


@pytest.fixture
def project(pytester: pytest.Pytester) -> Hostile:
    return Hostile(pytester)


def test_the_project_passes_as_made(project: Hostile) -> None:
    """The baseline every probe starts from: one test, measured, within tolerance."""
    result = project.run()
    result.assert_outcomes(passed=1)
    assert any("100.000" in line and "passed" in line for line in result.outlines), result.outlines


# -- names from a baseline file that become paths --------------------------------------------

def test_family_and_model_keys_with_path_parts_stay_in_the_cache(project: Hostile) -> None:
    outside = Path("/tmp") / f"vaccbench-hostile-{uuid.uuid4().hex}"
    project.baseline(model("../../escaped-key") + model(str(outside)), family="../../escaped-family")
    before = snapshot(project.root.parent, project.cache)
    result = project.run()
    result.assert_outcomes(passed=2)
    assert_clean(result)
    assert snapshot(project.root.parent, project.cache) == before  # the baseline too, byte for byte
    assert not outside.exists()
    written = sorted(p.relative_to(project.cache / "predictions")
                     for p in (project.cache / "predictions").rglob("*.npz"))
    assert len(written) == 2 and len({p.parts[1] for p in written}) == 2  # two distinct models
    assert all(p.parts[0].startswith("escaped-family-") for p in written), written


def test_weights_package_is_looked_up_without_importing_it(project: Hostile) -> None:
    package = project.root / "evilpkg"
    (package / "sub").mkdir(parents=True)
    marker = project.root / "imported.txt"
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (package / "sub" / "w.pth").write_bytes(b"weights")
    project.pytester.syspathinsert(project.root)
    project.baseline(model("test-pkg", extra="    weights: {package: evilpkg.sub}\n") +
                     model("test-module", extra="    weights: {package: this.sub}\n") +
                     model("test-relative", extra="    weights: {package: .foo}\n"))
    result = project.run()
    text = assert_clean(result)
    result.assert_outcomes(passed=1, skipped=2)  # evilpkg.sub's w.pth found, the others named
    assert not marker.exists()  # evilpkg's __init__ never ran
    assert "this is a module, not a package folder" in text and "fam.yaml" in text
    assert "'.foo' (not a package name" in text


def test_yaml_alias_bomb_is_refused_before_it_expands(project: Hostile) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 items
    path = project.baseline(model("test-m"))
    path.write_text(path.read_text() + "bomb:\n" + "".join(f"  {line}\n" for line in levels))
    before = path.read_bytes()
    start = time.monotonic()
    result = project.run()
    assert time.monotonic() - start < 20
    text = assert_clean(result)
    assert result.ret != 0
    assert f"{path}:{before.decode().count(chr(10)) - 7}: YAML alias *a0 refused" in text
    assert path.read_bytes() == before


# -- images ---------------------------------------------------------------------------------

@pytest.mark.parametrize("library", ["pil", "cv2"])
def test_images_over_the_pixel_limit_are_refused_from_their_header(project: Hostile, library: str) -> None:
    jpeg_claiming(project.images / "img0.png", 20000, 20000)  # a JPEG under a .png name: sniffed
    (project.images / "img1.png").write_bytes(png_header(10000, 9000))  # under Pillow's own 2x limit
    project.baseline(model("test-m", library=library))
    result = project.run()
    text = assert_clean(result)
    result.assert_outcomes(failed=1)
    assert f"{project.images / 'img1.png'}: image is 10000x9000 = 90000000 pixels, over the limit of {MAX_PIXELS}" in text
    assert f"{project.images / 'img0.png'}: image is 400000000 pixels, over the limit" in text


def test_16_bit_grayscale_png_reads_as_opencv_reads_it(project: Hostile) -> None:
    cv2 = pytest.importorskip("cv2")
    gray = (np.arange(20 * 24, dtype=np.uint32).reshape(20, 24) * 137 % 65536).astype(np.uint16)
    path = project.images / "img0.png"
    cv2.imwrite(str(path), gray)
    assert Image.open(path).mode.startswith("I")  # Pillow's own RGB conversion clips it to white
    result = project.run()
    result.assert_outcomes(passed=1)
    [entry] = (project.cache / "images").glob("*.npy")
    cached = np.load(entry)[0]  # the crop the run used, from the image cache
    spec = PreprocessSpec(resize=16, crop=16)
    by_opencv = resize_crop(np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]), spec)
    assert np.array_equal(cached, by_opencv) and len(np.unique(cached)) > 10  # not a white image


def test_image_replaced_with_same_size_and_time_is_not_served_stale(project: Hostile) -> None:
    project.run().assert_outcomes(passed=1)
    path = project.images / "img1.png"
    st = path.stat()
    inverted = 255 - np.asarray(Image.open(path))
    Image.fromarray(inverted).save(path, compress_level=0)  # uncompressed: the same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    project.run().assert_outcomes(passed=1)
    [entry] = (project.cache / "images").glob("*.npy")
    assert np.array_equal(np.load(entry)[1], load_crop(path, PreprocessSpec(resize=16, crop=16)))


def test_image_cache_header_that_is_not_an_object_is_rebuilt(project: Hostile) -> None:
    project.run().assert_outcomes(passed=1)
    [header] = (project.cache / "images").glob("*.json")
    header.write_text("null")
    result = project.run()
    assert_clean(result)
    result.assert_outcomes(passed=1)
    assert isinstance(json.loads(header.read_text()), dict)


def test_label_file_that_is_not_utf8_is_named_with_its_line(project: Hostile) -> None:
    project.labels.write_bytes(b"img0.png 1\nimg1.png 2\n# caf\xe9\n")
    result = project.run()
    text = assert_clean(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # found at startup, not in every test
    assert f"{project.labels}:3: label file is not UTF-8 text" in text


# -- the file system: full, read-only, locked -------------------------------------------------

def test_full_disk_while_caching_images_keeps_earlier_results_and_reports(pytester: pytest.Pytester) -> None:
    with small_fs(pytester.path / "small", "1m") as small:
        project = Hostile(pytester, base=small)
        # the second model's crops (4 x 400 x 400 x 3 = 1.9 MB) do not fit the 1 MB disk
        path = project.baseline(model("test-a", expected=False) + model("test-b", size=400, expected=False))
        report = small / "report.json"
        result = project.run("--update-baselines", f"--vaccbench-json={report}", writes=True)
        text = assert_clean(result)
        result.assert_outcomes(passed=1, failed=1)
        assert "cannot write the image cache (No space left on device)" in text
        assert f"{project.cache / 'images'}" in text
        assert "updated fam.yaml: test-a data hostile/fp32" in text
        assert "test-a:\n" in path.read_text() and "hostile/fp32: {top1: 100.0" in path.read_text()
        assert path.read_text().count("hostile/fp32") == 1  # test-b failed: not recorded
        records = {r["nodeid"].rsplit("/", 1)[1]: r for r in json.loads(report.read_text())["tests"]}
        assert records["test-a[hostile-fp32]"]["outcome"] == "passed"
        assert records["test-a[hostile-fp32]"]["top1"] == 100.0
        assert records["test-b[hostile-fp32]"]["outcome"] == "failed"
        assert not [p for p in small.rglob("*") if ".tmp" in p.name]  # the large .tmp is gone


def test_reports_on_a_full_disk_keep_the_previous_ones(project: Hostile, tmp_path: Path) -> None:
    with small_fs(tmp_path / "small", "256k") as small:
        old = {name: small / name for name in ("report.json", "report.html")}
        for path in old.values():
            path.write_text("previous report\n")
        (small / "filler").write_bytes(b"\0" * (os.statvfs(small).f_bavail * os.statvfs(small).f_frsize))
        history = small / "history.db"
        result = project.run(f"--vaccbench-json={old['report.json']}",
                             f"--vaccbench-html={old['report.html']}", f"--vaccbench-history={history}")
        text = assert_clean(result)
        result.assert_outcomes(passed=1)
        for what, path in (("JSON report", old["report.json"]), ("HTML report", old["report.html"]),
                           ("history", history)):
            assert f"ERROR writing {what} {path}:" in text
        assert all(p.read_text() == "previous report\n" for p in old.values())
        assert not history.exists()  # not left as an empty database
        assert sorted(p.name for p in small.iterdir()) == ["filler", "report.html", "report.json"]
        assert "vaccbench accuracy on data" in text  # the terminal summary is still printed


def test_read_only_cache_with_the_reference_backend(project: Hostile, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    weights = tmp_path / "tiny.pt"
    tiny = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still read
        torch.jit.script(tiny.eval()).save(str(weights))
    project.baseline(model("test-tiny", extra=f"    weights: {weights}\n").replace(
        "library:\n", "library: torchscript\n").replace("hostile/fp32", "reference/fp32"))
    with small_fs(tmp_path / "readonly", "64k", read_only=True) as cache:
        result = project.pytester.runpytest("suites", "-p", "no:cacheprovider", "--backend=reference",
                                            f"--dataset={project.images}", f"--vaccbench-cache={cache}")
        text = assert_clean(result)
        result.assert_outcomes(failed=1)
        assert f"{cache / 'images'}: cannot write the image cache (Read-only file system)" in text
        result = project.pytester.runpytest("suites", "-p", "no:cacheprovider", "--backend=reference",
                                            f"--dataset={project.images}", f"--vaccbench-cache={cache}",
                                            "--no-image-cache")
        text = assert_clean(result)
        result.assert_outcomes(failed=1)
        assert f"{cache / 'predictions'}" in text and "cannot write the predictions (Read-only file system)" in text


def test_locked_history_database_is_an_error_and_the_summary_still_prints(project: Hostile,
                                                                          tmp_path: Path) -> None:
    history = tmp_path / "history.db"
    project.run(f"--vaccbench-history={history}").assert_outcomes(passed=1)
    locker = sqlite3.connect(history)
    locker.execute("BEGIN EXCLUSIVE")  # another session writing
    try:
        report = tmp_path / "report.json"
        result = project.run(f"--vaccbench-history={history}", f"--vaccbench-json={report}")
    finally:
        locker.rollback()
        locker.close()
    text = assert_clean(result)
    result.assert_outcomes(passed=1)
    assert f"ERROR writing history {history}: {history}: history database is locked by another process" in text
    assert "vaccbench accuracy on data" in text and report.is_file()
    with sqlite3.connect(history) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 1  # the first run is kept


# -- leftovers --------------------------------------------------------------------------------

def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_killed_export_leftover_is_removed_by_the_next_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    pytest.importorskip("onnx")
    from pytest_vaccbench.cli import main

    weights = tmp_path / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), weights)
    host = socket.gethostname()
    stale = tmp_path / f".test_resnet_64.onnx.{host}-{_dead_pid()}.tmp"
    stale.write_bytes(b"half an export")
    running = tmp_path / f".test_resnet_64.onnx.{host}-{os.getppid()}.tmp"  # a live process
    running.write_bytes(b"an export in progress")
    assert main(["export", "--model-library", "timm", "--model-name", "test_resnet",
                 "--pretrained-weights", str(weights), "--size", "64", "--save-dir", str(tmp_path)]) == 0
    assert TRACEBACK not in capsys.readouterr().err
    assert (tmp_path / "test_resnet_64.onnx").is_file()
    assert not stale.exists() and running.exists()
