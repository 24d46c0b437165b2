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
from pytest_vaccbench.errors import VaccbenchError
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


@pytest.mark.parametrize("option", ["--vaccbench-json", "--vaccbench-html", "--vaccbench-history"])
def test_a_report_option_naming_a_folder_is_a_usage_error_at_startup(project: Hostile, tmp_path: Path,
                                                                     option: str) -> None:
    """The output rule of the `vaccbench` commands, checked before anything is collected."""
    result = project.run(f"{option}={tmp_path}")
    text = assert_clean(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "collected" not in text
    assert f"{option}: {tmp_path}: is a folder: give a file name" in text
    assert list(tmp_path.iterdir()) == []


def test_a_junitxml_under_a_file_is_a_usage_error_at_startup(project: Hostile, tmp_path: Path) -> None:
    """pytest refuses a folder as --junitxml itself, but a file where its folder would go
    fails only as the session ends, after every test ran: checked at startup too."""
    (tmp_path / "taken").write_text("a file where a folder would go")
    result = project.run(f"--junitxml={tmp_path / 'taken' / 'j.xml'}")
    text = assert_clean(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "collected" not in text
    assert f"--junitxml: {tmp_path / 'taken' / 'j.xml'}: cannot write here: {tmp_path / 'taken'} " \
           "is a file, not a folder" in text


@pytest.mark.parametrize("name", ["vaccbench_json", "vaccbench_html", "vaccbench_history", "xmlpath"])
def test_a_report_under_a_file_is_refused_and_missing_folders_are_allowed(tmp_path: Path, name: str) -> None:
    """As pytest makes the folder of --junitxml, missing folders of a report are made; a file
    where one of them would go is refused, with the file named."""
    from pytest_vaccbench.options import REPORT_FILES, check_options

    (tmp_path / "taken").write_text("a file where a folder would go")
    with pytest.raises(VaccbenchError) as refused:
        check_options({name: str(tmp_path / "taken" / "more" / "r.json")})
    assert str(refused.value) == (f"{REPORT_FILES[name]}: {tmp_path / 'taken' / 'more' / 'r.json'}: "
                                  f"cannot write here: {tmp_path / 'taken'} is a file, not a folder")
    check_options({name: str(tmp_path / "new" / "nightly" / "r.json")})  # made as the report is written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


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


# -- what a backend, an option or a baseline says -----------------------------------------------

def test_a_backend_returning_fewer_score_rows_than_images_is_named(project: Hostile) -> None:
    backend = project.root / "hostilebackend.py"
    backend.write_text(backend.read_text().replace("return class_scores(scores, entry)",
                                                   "return class_scores(scores[:-1], entry)"))
    result = project.run()
    text = assert_clean(result)
    result.assert_outcomes(failed=1)
    assert ("fam/test-m[hostile-fp32]: the hostile backend returned 3 score rows for 4 images; every "
            "image needs one row of class scores") in text


@pytest.mark.parametrize("option", ["--vamp-bin=/opt/vamp --config 'a b", "--vamp-args=--hw \"x"])
def test_an_unbalanced_quote_in_a_command_line_option_is_a_usage_error(project: Hostile, option: str) -> None:
    result = project.run(option)
    text = assert_clean(result)
    assert result.ret == 4
    assert f"{option.split('=')[0]}=" in text and "not a command line (No closing quotation)" in text


def test_control_characters_in_a_baseline_key_never_reach_the_terminal(project: Hostile) -> None:
    path = project.baseline(model('"\\e[2J\\e[31mred"'))  # YAML's escape of ESC, as a key
    result = project.run()
    text = assert_clean(result)
    assert result.ret == 2 and "\x1b" not in text
    assert f"{path}:4: models.\\x1b[2J\\x1b[31mred is not a valid key: it holds control characters" in text
    path.write_text(path.read_text().replace("\\e", "\x1b"))  # ESC itself: YAML refuses it
    result = project.run()
    text = assert_clean(result)
    assert result.ret == 2 and "\x1b" not in text
    assert f"{path}:4: character \\x1b is not allowed in YAML text" in text


def test_a_dataset_key_written_as_a_number_is_the_dataset_of_that_name(project: Hostile, pytester) -> None:
    """`2012:` (YAML reads a number) gates the dataset named 2012, and an update writes to it
    instead of adding a second, quoted '2012' beside it."""
    images = project.images.rename(project.images.parent / "2012")
    path = project.baseline(model("test-m", expected=False) + "    expected:\n      2012:\n"
                            "        hostile/fp32: {top1: 100.0, top5: 100.0}\n")
    result = project.pytester.runpytest("suites", "-p", "no:cacheprovider", f"--dataset={images}",
                                        f"--labels={project.labels}", f"--vaccbench-cache={project.cache}")
    result.assert_outcomes(passed=1)
    assert ["test-m", "100.000", "+0.000", "0.500", "4", "passed"] in \
        [line.split() for line in result.outlines], result.outlines  # gated: +0.000 from 100.000
    result = project.pytester.runpytest("suites", "-p", "no:cacheprovider", f"--dataset={images}",
                                        f"--labels={project.labels}", f"--vaccbench-cache={project.cache}",
                                        "--update-baselines")
    result.assert_outcomes(passed=1)
    text = path.read_text()
    assert "      2012:\n        hostile/fp32: {top1: 100.0, top5: 100.0, n: 4" in text and "'2012'" not in text


# -- images ------------------------------------------------------------------------------------

def float_tiff(path: Path) -> None:
    """A TIFF of 32-bit float samples (a depth map, a scientific image) under `path`'s name."""
    values = np.linspace(0, 1, 20 * 24, dtype=np.float32).reshape(20, 24)
    Image.fromarray(values, "F").save(path, format="TIFF")


@pytest.mark.parametrize("library", ["pil", "cv2"])
def test_a_float_tiff_is_refused_by_both_decoders_alike(project: Hostile, library: str) -> None:
    float_tiff(project.images / "img2.png")
    project.baseline(model("test-m", library=library))
    result = project.run()
    text = assert_clean(result)
    result.assert_outcomes(failed=1)
    assert (f"{project.images / 'img2.png'}: has floating-point samples (a float TIFF?), not a photo's "
            "8 or 16 bits: convert it to 8-bit") in text


def test_a_radiance_hdr_named_png_is_not_decoded_by_opencv(project: Hostile) -> None:
    """OpenCV decodes formats whose header nothing checked: only images whose header Pillow
    reads (and checks against the pixel limit) reach it."""
    cv2 = pytest.importorskip("cv2")
    assert cv2.imwrite(str(project.root / "x.hdr"), np.ones((20, 24, 3), np.float32))
    (project.images / "img3.png").write_bytes((project.root / "x.hdr").read_bytes())
    project.baseline(model("test-m", library="cv2"))
    result = project.run()
    text = assert_clean(result)
    result.assert_outcomes(failed=1)
    assert f"{project.images / 'img3.png'}: not a readable image (corrupt or unknown format)" in text


@pytest.mark.parametrize("library", ["pil", "cv2"])
def test_an_image_of_extreme_aspect_is_resized_only_under_its_crop(tmp_path: Path, library: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """1 x 12,000 pixels, short side to 224: 224 x 2,688,000 (1.8 GB) before the centre crop.
    Every resize is watched: none may make more than RESIZE_BOUND times the crop's pixels."""
    cv2 = pytest.importorskip("cv2")
    from pytest_vaccbench import preprocess

    path = tmp_path / "thin.png"
    Image.fromarray(np.arange(12000, dtype=np.uint8).reshape(12000, 1)[..., None].repeat(3, 2)).save(path)
    spec = PreprocessSpec(resize=224, crop=224, library=library, interpolation="bicubic")
    bound = preprocess.RESIZE_BOUND * 224 * 224
    made = []

    def watch(size: tuple[int, int]) -> None:
        made.append(size[0] * size[1])
        assert size[0] * size[1] <= bound, f"resize to {size}: {size[0] * size[1]} pixels"
    pil_resize, cv2_resize = Image.Image.resize, cv2.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, size, *a, **k: (watch(size), pil_resize(self, size, *a, **k))[1])
    monkeypatch.setattr(cv2, "resize", lambda src, dsize, *a, **k: (
        watch(dsize if dsize else (round(src.shape[1] * k["fx"]), round(src.shape[0] * k["fy"]))),
        cv2_resize(src, dsize, *a, **k))[1])
    crop = load_crop(path, spec)
    assert crop.shape == (224, 224, 3) and made
    column = crop[:, 112, 0].astype(int)  # rows 5999.5 +- 0.5 of the source, stretched 224 times
    assert abs(column.mean() - 6000 % 256) < 2


def test_a_windowed_resize_gives_pillows_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The window Pillow resizes (its `box`) gives the pixels the whole resize would: checked
    on images small enough to resize whole."""
    from pytest_vaccbench import preprocess

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:300, 0:20]
    smooth = np.stack([128 + 100 * np.sin(yy / 15), 128 + 100 * np.cos(xx / 9), 128 + 0 * xx], -1).astype(np.uint8)
    for interpolation in ("bilinear", "bicubic", "lanczos"):
        spec = PreprocessSpec(resize=int(rng.integers(16, 40)), crop=16, interpolation=interpolation)
        whole = load_crop_via(smooth, spec, bound=10**9)
        windowed = load_crop_via(smooth, spec, bound=0)
        assert np.abs(whole.astype(int) - windowed.astype(int)).max() <= 2, interpolation


def load_crop_via(rgb: np.ndarray, spec: PreprocessSpec, bound: int) -> np.ndarray:
    from pytest_vaccbench import preprocess

    old, preprocess.RESIZE_BOUND = preprocess.RESIZE_BOUND, bound
    try:
        return resize_crop(rgb, spec)
    finally:
        preprocess.RESIZE_BOUND = old


# -- the cache ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["images", "predictions"])
def test_a_cache_folder_that_is_a_link_out_of_the_cache_is_refused(project: Hostile, tmp_path: Path,
                                                                   kind: str) -> None:
    """Planted at the real root the tool writes to: `<cache>/images`, not a folder below it."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    project.cache.mkdir()
    (project.cache / kind).symlink_to(outside)
    result = project.run()
    text = assert_clean(result)
    result.assert_outcomes(failed=1)
    assert f"the cache's {kind} folder is a link to {outside}, outside the cache" in text
    assert list(outside.iterdir()) == []


def test_each_run_records_the_content_of_its_images_and_its_network(project: Hostile) -> None:
    import xxhash

    project.run().assert_outcomes(passed=1)
    [saved] = (project.cache / "predictions").rglob("*.npz")
    with np.load(saved) as run:
        files, digests, source = run["files"].tolist(), run["digests"].tolist(), str(run["source"])
    assert digests == [int(xxhash.xxh3_128_hexdigest((project.images / f).read_bytes())[:16], 16) for f in files]
    assert source == ""  # this backend names no weights file: its network is unknown


def test_weights_replaced_by_others_of_the_same_size_and_time_are_exported_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export cache was keyed by the weights' size and mtime: new weights with both put
    back reused the old export (the gate passed at 75.0 with weights that give 0.0)."""
    from pytest_vaccbench import export
    from pytest_vaccbench.baselines import load_family

    exported = []
    monkeypatch.setattr(export, "export_entry",
                        lambda entry, weights, path, options: (exported.append(weights.read_bytes()),
                                                               path.write_bytes(weights.read_bytes()))[1])
    entry = load_family(Path(__file__).parents[1] / "baselines" / "mobilenet_v2.yaml").models["timm-mobilenetv2_100"]
    weights, cache = tmp_path / "w.pth", tmp_path / "cache"
    weights.write_bytes(b"old weights " * 100)
    first = export.cached_export(entry, weights, cache)
    st = weights.stat()
    weights.write_bytes(b"new weights " * 100)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_size == st.st_size and weights.stat().st_mtime_ns == st.st_mtime_ns
    export._DIGESTS.clear()  # another session: only digests.json remembers
    second = export.cached_export(entry, weights, cache)
    assert second != first and second.read_bytes() == weights.read_bytes()
    assert exported == [b"old weights " * 100, b"new weights " * 100]


def _predictions(path: Path, top1: list[int], digests: list[int], source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, top5=np.tile(np.asarray(top1, np.int16)[:, None], (1, 5)),
             labels=np.array([1, 2, 3, 4], np.int16), files=np.array([f"img{i}.png" for i in range(4)]),
             digests=np.array(digests, np.uint64), source=np.array(source))
    return path


@pytest.mark.parametrize("fp32_digests, fp32_source, note", [
    ([1, 2, 3, 4], "old-weights", "are of other weights or another graph than this run's"),
    ([1, 2, 3, 99], "new-weights", "no fp32 predictions of mobilenet_v2/timm-mobilenetv2_100"),
])
def test_an_int8_run_is_not_paired_with_fp32_predictions_of_other_weights_or_images(
        tmp_path: Path, fp32_digests: list[int], fp32_source: str, note: str) -> None:
    """fp32 predictions of older weights, or of other images with the same names, made a
    false BROKEN BUILD: the paired comparison needs the same weights, graph and images."""
    from pytest_vaccbench.baselines import load_family
    from pytest_vaccbench.run import Case, Result, paired_with_fp32

    entry = load_family(Path(__file__).parents[1] / "baselines" / "mobilenet_v2.yaml").models["timm-mobilenetv2_100"]
    base = tmp_path / "predictions" / "mobilenet_v2" / "timm-mobilenetv2_100"
    run = _predictions(base / "onnxruntime-int8-max" / "ds-f.npz", [1, 2, 3, 4], [1, 2, 3, 4], "new-weights")
    _predictions(base / "onnxruntime-fp32" / "ds-f.npz", [9, 9, 9, 9], fp32_digests, fp32_source)
    result = Result(entry.family, entry.key, "onnxruntime", "int8-max", "ds", "f", 4, 4, 4, 0.0,
                    str(run), str(entry.baseline_path))
    paired = paired_with_fp32(result, Case(entry, "onnxruntime", "int8-max"), tmp_path)
    assert paired.agreement is None and note in paired.note
    _predictions(base / "onnxruntime-fp32" / "ds-f.npz", [1, 2, 3, 4], [1, 2, 3, 4], "new-weights")
    assert paired_with_fp32(result, Case(entry, "onnxruntime", "int8-max"), tmp_path).agreement.n == 4


def test_onnxruntime_advice_on_pre_processing_does_not_reach_the_user(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """quantize_static logs it on the root logger for every graph it quantizes."""
    pytest.importorskip("onnxruntime.quantization")
    from onnx import TensorProto, helper, numpy_helper, save

    from pytest_vaccbench.backends.onnxruntime import Int8Recipe, int8_graph

    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["output"], name="c")], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 3, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["b", 4, 4, 4])],
                              [weight])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m.onnx"))
    batches = lambda: iter([np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)])  # noqa: E731
    with caplog.at_level("WARNING"):
        out = int8_graph(tmp_path / "m.onnx", Int8Recipe("max", per_channel=False), batches, "k", tmp_path / "cache")
    assert out.name.startswith("int8-max-per-tensor")
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()], caplog.text
