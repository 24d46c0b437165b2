"""Option values are checked before collection: one usage error (exit 4) naming the option,
the value and the valid values; no test runs."""

from __future__ import annotations

import pytest

SUITE = "baselines: ../baselines\nbackends: [reference]\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--backend=onnxrt"], "--backend=onnxrt: unknown backend; did you mean onnxruntime? valid: "
                           "onnxruntime, reference, vamp, vsx"),
    (["--precision=fp61"], "--precision=fp61: unknown precision of backend(s) onnxruntime, reference, "
                           "vamp, vsx; did you mean fp16? valid: fp16, fp32, int8, int8-kl_divergence*"),
    (["--backend=onnxruntime", "--precision=int8-kl-divergence"],
     "--precision=int8-kl-divergence: unknown calibration of backend(s) onnxruntime; did you mean "
     "int8-kl_divergence? valid: fp16, fp32, int8-kl_divergence, int8-max, int8-mse, int8-percentile"),
    (["--dataset=nowhere"], "--dataset=nowhere: no such folder or file, and not a built-in dataset*"),
    (["--weights-dir=wieghts"], "--weights-dir=wieghts: no such folder"),
    (["--onnx-dir=missing"], "--onnx-dir=missing: no such folder"),
    (["--vamp-root=missing"], "--vamp-root=missing: no such folder"),
    (["--vsx-root=missing"], "--vsx-root=missing: no such folder"),
    (["--vsx-batch=0"], "--vsx-batch=0: must be a positive integer"),
    (["--vsx-timeout=0"], "--vsx-timeout=0.0: must be a positive number of seconds"),
    (["--labels=missing.txt"], "--labels=missing.txt: no such file"),
    (["--limit=0"], "--limit=0: must be a positive integer"),
    (["--threads=-1"], "--threads=-1: must be a positive integer"),
    (["--batch-size=0"], "--batch-size=0: must be a positive integer"),
    (["--calib-images=0"], "--calib-images=0: must be a positive integer"),
    (["--devices=0,x"], "--devices=0,x: must be comma-separated non-negative integers, e.g. 0,1,2,3"),
    (["--devices=0,-1"], "--devices=0,-1: must be comma-separated non-negative integers*"),
    (["--devices=0,1,1"], "--devices=0,1,1: device 1 given more than once"),
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
