"""Option values are checked before collection: one usage error (exit 4) naming the option,
the value and the valid values (or the closest existing name); no test runs. So are a dataset
that cannot be read, an int8 calibration set that takes every image, and a -k that selects
no test at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SUITE = "baselines: ../baselines\nbackends: [reference]\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--backend=onnxrt"], "--backend=onnxrt: unknown backend; did you mean onnxruntime? valid: "
                           "onnxruntime, reference, vamp, vsx"),
    (["--precision=fp61"], "--precision=fp61: unknown precision of backend(s) onnxruntime, reference, "
                           "vamp, vsx; did you mean fp16? valid: fp16, fp32, int8, int8-kl_divergence*"),
    (["--backend=onnxruntime", "--precision=int8-kl-divergence"],
     "--precision=int8-kl-divergence: unknown calibration of backend(s) onnxruntime; did you mean "
     "int8-kl_divergence? valid: fp16, fp32, int8-kl_divergence, int8-max, int8-mse, int8-percentile"),
    (["--dataset=nowhere"], "--dataset=nowhere: no such folder or file (built-in datasets: "
                            "skimage-photos)"),
    (["--weights-dir=wieghts"], "--weights-dir=wieghts: no such folder"),
    (["--onnx-dir=missing"], "--onnx-dir=missing: no such folder"),
    (["--vamp-root=missing"], "--vamp-root=missing: no such folder"),
    (["--vsx-root=missing"], "--vsx-root=missing: no such folder"),
    (["--vsx-batch=0"], "--vsx-batch=0: must be a positive integer"),
    (["--vsx-timeout=0"], "--vsx-timeout=0.0: must be a positive number of seconds"),
    (["--labels=missing.txt"], "--labels=missing.txt: no such file"),
    (["--labels=suites"], "--labels=suites: is a folder, not a file"),
    (["--dataset-name=\x1bimagenet"], "--dataset-name=\\x1bimagenet: holds control characters (an "
                                       "escape sequence?), which a baseline key cannot*"),
    (["--limit=0"], "--limit=0: must be a positive integer"),
    (["--threads=-1"], "--threads=-1: must be a positive integer"),
    (["--batch-size=0"], "--batch-size=0: must be a positive integer"),
    (["--calib-images=0"], "--calib-images=0: must be a positive integer"),
    (["--devices=0,x"], "--devices=0,x: must be comma-separated non-negative integers, e.g. 0,1,2,3"),
    (["--devices=0,-1"], "--devices=0,-1: must be comma-separated non-negative integers*"),
    (["--devices=0,1,1"], "--devices=0,1,1: device 1 given more than once"),
    (["--max-allowed=wide"], "--max-allowed=wide: 'wide' is not a positive number of points (1.0) "
                             "or multiple of the tolerance (2x)"),
    (["--max-allowed=0x"], "--max-allowed=0x: '0x' is not a positive number*"),
    (["--accept-other-images"], "--accept-other-images applies to --update-baselines only"),
])
def test_a_bad_option_value_is_one_usage_error(pytester: pytest.Pytester, args: list[str],
                                              message: str) -> None:
    pytester.makefile(".yaml", **{"suites/s": SUITE})
    result = pytester.runpytest("suites", "-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()
    result.stdout.no_fnmatch_line("*collected*")


def test_good_values_pass_the_check() -> None:
    from pytest_vaccbench.options import check_options, parse_devices

    check_options({"backend": ["reference,onnxruntime"], "precision": ["fp32", "int8-max"],
                   "limit": 5, "threads": 1, "devices": "0,1,3"})
    assert parse_devices("3,0, 1") == (3, 0, 1)


def _usage_error(result: pytest.RunResult, message: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize(("option", "value", "near"), [
    ("--weights-dir", "data/wieghts", "data/weights"),
    ("--dataset", "data/val-subst/images", "data/val-subset/images"),
    ("--labels", "data/val-subset/val_lable.txt", "data/val-subset/val_label.txt"),
    ("--vamc-config", "data/val-subset/val_labels.txt", "data/val-subset/val_label.txt"),
])
def test_a_missing_path_names_the_closest_existing_one(pytester: pytest.Pytester, option: str,
                                                       value: str, near: str) -> None:
    pytester.makefile(".yaml", **{"suites/s": SUITE})
    for folder in ("data/weights", "data/val-subset/images", "data/other"):
        (pytester.path / folder).mkdir(parents=True)
    (pytester.path / "data" / "val-subset" / "val_label.txt").write_text("a.JPEG 1\n")
    result = pytester.runpytest("suites", "-p", "no:cacheprovider", f"{option}={value}")
    _usage_error(result, f"{option}={value}: no such *; did you mean {near}?*")


def test_a_folder_that_is_no_dataset_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"suites/s": SUITE})
    (pytester.path / "photos").mkdir()
    (pytester.path / "photos" / "cat.png").write_bytes(b"not read")
    result = pytester.runpytest("suites", "-p", "no:cacheprovider", "--dataset=photos")
    _usage_error(result, "--dataset: *photos: cannot tell the dataset layout: no label file*")


def test_a_calibration_set_of_every_image_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"suites/s": SUITE})
    args = ["suites", "-p", "no:cacheprovider", "--dataset=skimage-photos", "--backend=onnxruntime"]
    result = pytester.runpytest(*args, "--precision=fp32,int8-max", "--calib-images=5")
    _usage_error(result, "--calib-images=5: the int8 calibration set would take all 5 images of "
                         "skimage-photos, leaving none to count; pass --calib-images below 5 (e.g. 1), "
                         "or --calib-include to count the calibration images too")
    # fp32 alone calibrates nothing; --calib-include counts the calibration images
    for fine in (["--precision=fp32", "--calib-images=5"],
                 ["--precision=int8-max", "--calib-include", "--calib-images=5"]):
        result = pytester.runpytest(*args, *fine, "--collect-only", "-q")
        assert result.ret != pytest.ExitCode.USAGE_ERROR, result.stderr.str()


def test_k_that_selects_nothing_names_the_closest_model_keys(pytester: pytest.Pytester) -> None:
    shutil.copytree(ROOT / "baselines", pytester.path / "baselines")
    pytester.makefile(".yaml", **{"suites/s": SUITE})
    result = pytester.runpytest("suites", "-p", "no:cacheprovider", "-k", "efficentnet_lite0")
    _usage_error(result, "-k 'efficentnet_lite0' selects none of the * accuracy tests; closest model "
                         "keys: efficientnet_lite/timm-efficientnet_lite0 (test ids read <family>/"
                         "<model key>[[]<backend>-<precision>])")


def test_closest_models_to_a_k_expression() -> None:
    from pytest_vaccbench.baselines import load_family
    from pytest_vaccbench.plugin.results import empty_selection
    from pytest_vaccbench.suite import closest_models

    models = list(load_family(ROOT / "baselines" / "ghostnet.yaml").models.values())
    near = closest_models("ghostnet_10 and not fp32", models)
    assert near and near[0].key == "timm-ghostnet_100" and len(near) <= 3
    assert closest_models("zzzzqqq", models) == []
    assert "no model key is close; `vaccbench models` lists them" in empty_selection("zzzzqqq", [])

