"""Gate decisions on hand-built numbers: sampling allowance, paired agreement, collapse.

Expected allowances are worked out by hand from the Wilson formula (see
test_statistics.py for the interval itself): e.g. 8 right of 10 drawn from 20 images has
the effective size 19 and the interval 57.792 .. 92.117.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.baselines import Tolerance, load_family
from pytest_vaccbench.dataset import Dataset
from pytest_vaccbench.gate import (INT8_ALLOWANCE, Expectation, Images, Paired, expectation_for,
                                   judge, needs_paired, sampling_allowance, same_images)
from pytest_vaccbench.metrics import Accuracy, Agreement

ROOT = Path(__file__).resolve().parents[1]
TOL = Tolerance(0.5, 0.5)
UPDATE = "pytest X --update-baselines"


def expect(top1: float, top5: float | None = None, **kw) -> Expectation:
    return Expectation(top1, top5, kw.pop("tolerance", TOL), "fam.yaml: m.expected.ds.b/p", **kw)


# -- sampling allowance -------------------------------------------------------------------
def test_same_images_by_fingerprint_or_whole_dataset() -> None:
    images = Images("ds", 20, 20, "abc")
    assert same_images(expect(70, n=20, fingerprint="abc"), images)
    assert not same_images(expect(70, n=20, fingerprint="other"), images)
    assert same_images(expect(70), images)  # no n, no fingerprint: taken as the whole set
    assert not same_images(expect(70), Images("ds", 10, 20, "sub"))
    assert sampling_allowance(16, 70.0, expect(70, n=20, fingerprint="abc"), images, 0.95) == 0.0


def test_allowance_for_a_subset_of_the_baseline_images() -> None:
    # measured 8/10 of a 20-image dataset, baseline 70 on all 20: measured side only,
    # toward the lower end (70 < 80): 80 - 57.792
    allowance = sampling_allowance(8, 70.0, expect(70, n=20), Images("ds", 10, 20, "sub"), 0.95)
    assert allowance == pytest.approx(22.2076, abs=1e-3)


def test_allowance_when_the_baseline_was_the_subset() -> None:
    # measured 16/20 (the whole set), baseline 70 on 10 of the 20 images: baseline side only,
    # Wilson(7/10 of 20) upper end 85.728 - 70, toward the measured 80
    allowance = sampling_allowance(16, 70.0, expect(70, n=10), Images("ds", 20, 20, "all"), 0.95)
    assert allowance == pytest.approx(15.7280, abs=1e-3)


def test_allowance_combines_both_samples_as_newcombe() -> None:
    # 8/10 and a baseline of 70 on 20, both drawn from 30 images: effective sizes 14.5 and
    # 58: sides 25.637 and 10.246, combined sqrt(25.637^2 + 10.246^2) = 27.609
    allowance = sampling_allowance(8, 70.0, expect(70, n=20), Images("ds", 10, 30, "sub"), 0.95)
    assert allowance == pytest.approx(27.6092, abs=1e-3)


def test_subset_passes_thanks_to_the_sampling_allowance_and_says_so() -> None:
    measured = Accuracy(20, 17, 20)  # 85% on 20 of 100 images; baseline 94 on all 100
    verdict = judge(measured, expect(94.0, 100.0, n=100, fingerprint="full"),
                    Images("ds", 20, 100, "sub"), UPDATE, confidence=0.95)
    assert verdict.passed and verdict.kind == "passed"
    assert "top1 passed thanks to the sampling allowance" in verdict.message
    assert "measured n=20 of the 100 images of ds" in verdict.message
    assert verdict.details["allowed"]["top1"] == pytest.approx(0.5 + 9.205, abs=1e-3)
    # at 50% confidence the interval is 79.530 .. 89.207: 94 - 85 > 0.5 + 4.207, a failure
    strict = judge(measured, expect(94.0, 100.0, n=100, fingerprint="full"),
                   Images("ds", 20, 100, "sub"), UPDATE, confidence=0.5)
    assert not strict.passed and strict.kind == "regression"
    assert "top1 is 9.000 points below the baseline (allowed ±4.707" in strict.message
    assert "sampling 4.207" in strict.message and "50% sampling error" in strict.message


def test_regression_on_the_same_images_has_no_sampling_allowance() -> None:
    verdict = judge(Accuracy(100, 94, 100), expect(99.0, 100.0, n=100, fingerprint="f"),
                    Images("ds", 100, 100, "f"), UPDATE)
    assert not verdict.passed and verdict.kind == "regression"
    assert verdict.message.startswith("top1 is 5.000 points below the baseline (allowed ±0.500")
    assert "BROKEN" not in verdict.message and "sampling" not in verdict.message
    assert verdict.message.rstrip().endswith(UPDATE)
    assert verdict.details["sampling"] is None


# -- collapse --------------------------------------------------------------------------------
def test_collapse_is_a_broken_build_not_a_regression() -> None:
    verdict = judge(Accuracy(50_000, 301, 1223), expect(70.628, 89.742),
                    Images("imagenet-val", 50_000, 50_000, "f"), UPDATE,
                    build="vamp/int8-percentile")
    assert verdict.kind == "broken" and not verdict.passed
    assert verdict.message.startswith(
        "BROKEN BUILD: top1 0.602% vs 70.628% expected — the vamp/int8-percentile build is "
        "broken, not a small regression")
    assert "--update-baselines" not in verdict.message  # never suggest recording it


def test_a_big_but_plausible_drop_is_a_regression() -> None:
    # 58.6 vs 65.8: the int8 saturation drop of MobileNetV2 on a CPU without VNNI
    verdict = judge(Accuracy(1000, 586, 800), expect(65.8), Images("ds", 1000, 1000, "f"), UPDATE)
    assert verdict.kind == "regression"


def test_no_collapse_check_for_a_target_near_chance() -> None:
    # a random-init model's baseline (0.2%) measured at 0: a regression at most, never broken
    verdict = judge(Accuracy(1000, 0, 5), expect(0.2, 0.5), Images("ds", 1000, 1000, "f"), UPDATE)
    assert verdict.kind == "passed"


def test_collapse_needs_the_whole_interval_below_half() -> None:
    # 2 right of 8 (25%) against 60 expected: the interval reaches 59.1%, not a collapse
    few = judge(Accuracy(8, 2, 8), expect(60.0), Images("ds", 8, 1000, "s"), UPDATE)
    assert few.kind == "regression"
    many = judge(Accuracy(800, 200, 800), expect(60.0), Images("ds", 800, 1000, "s"), UPDATE)
    assert many.kind == "broken"


# -- paired comparison ---------------------------------------------------------------------
def paired(agree: int, n: int = 100, b: int = 0, c: int = 0) -> Paired:
    return Paired(Agreement(n, agree, b, c), "onnxruntime/fp32", "cache/x.npz")


def test_needs_paired_for_non_fp32_and_accelerator_runs() -> None:
    assert needs_paired("onnxruntime", "int8-percentile") and needs_paired("vamp", "fp32")
    assert needs_paired("reference", "int8") and not needs_paired("onnxruntime", "fp32")


def test_paired_numbers_in_the_message_and_details() -> None:
    verdict = judge(Accuracy(100, 80, 95), expect(80.0, 95.0, n=100, fingerprint="f", min_agreement=75),
                    Images("ds", 100, 100, "f"), UPDATE, paired=paired(90, b=6, c=4))
    assert verdict.passed
    assert ("paired with onnxruntime/fp32 on the same 100 images: top-1 agreement 90.000% "
            "(90/100, exact: the whole dataset; min_agreement 75%); fp32 right & run wrong 6, "
            "fp32 wrong & run right 4: exact McNemar p=0.754") in verdict.message
    p = verdict.details["paired"]
    assert (p["agreement"], p["reference_only_correct"], p["run_only_correct"]) == (90.0, 6, 4)
    assert p["mcnemar_p"] == pytest.approx(2 * (1 + 10 + 45 + 120 + 210) / 1024)
    json.dumps(verdict.details)  # travels in a report


def test_agreement_below_min_agreement_fails_as_a_regression() -> None:
    verdict = judge(Accuracy(100, 80, 95), expect(80.0, 95.0, n=100, fingerprint="f", min_agreement=90),
                    Images("ds", 100, 100, "f"), UPDATE, paired=paired(80))
    assert verdict.kind == "regression"
    assert verdict.message.startswith("top-1 agreement with onnxruntime/fp32 is 80.000%, below "
                                      "the baseline's min_agreement 90%")


def test_agreement_below_min_within_sampling_error_passes() -> None:
    # 85/100 images of a 50,000-image set: interval 76.7 .. 90.7 reaches the 90% floor
    verdict = judge(Accuracy(100, 80, 95), expect(80.0, 95.0, min_agreement=90),
                    Images("ds", 100, 50_000, "s"), UPDATE, paired=paired(85))
    assert verdict.passed
    assert "top-1 agreement 85.000% (85/100, 95% interval 76.726-90.690" in verdict.message


def test_agreement_far_below_min_is_a_broken_build() -> None:
    verdict = judge(Accuracy(100, 80, 95), expect(80.0, 95.0, n=100, fingerprint="f", min_agreement=90),
                    Images("ds", 100, 100, "f"), UPDATE, paired=paired(30), build="onnxruntime/int8-max")
    assert verdict.kind == "broken"
    assert verdict.message.startswith("BROKEN BUILD: top-1 agreement with onnxruntime/fp32 30.000% "
                                      "vs min_agreement 90% — the onnxruntime/int8-max build is broken")


def test_missing_fp32_predictions_are_reported_not_failed() -> None:
    note = "no fp32 predictions of fam/m on ds: paired comparison skipped"
    verdict = judge(Accuracy(100, 80, 95), expect(80.0, 95.0, min_agreement=90),
                    Images("ds", 100, 100, "f"), UPDATE, paired=Paired(None, note=note))
    assert verdict.passed and f"  paired: {note}" in verdict.message
    assert verdict.details["paired"] == {"missing": note}


def test_no_baseline_still_gives_the_numbers_for_reports() -> None:
    verdict = judge(Accuracy(10, 8, 10), None, Images("ds", 10, 10, "f"), UPDATE, paired=paired(9, n=10))
    assert verdict.kind == "no-baseline" and verdict.passed
    assert verdict.details["top1_interval"] == [49.016, 94.332]
    assert verdict.details["paired"]["agreement"] == 90.0


# -- the known-broken RepVGG-A0 int8 build -----------------------------------------------------
@pytest.fixture(scope="module")
def repvgg_a0():
    return load_family(ROOT / "baselines" / "repvgg.yaml").models["official-RepVGG-A0"]


def full_val() -> Dataset:
    return Dataset("imagenet-val", Path("."), "flat", (), 50_000)


def test_broken_entry_holds_int8_to_fp16_with_the_int8_allowance(repvgg_a0) -> None:
    e = expectation_for(repvgg_a0, full_val(), "vamp", "int8-percentile")
    assert (e.top1, e.top5) == (70.628, 89.742)  # vamp/fp16 of the same model
    assert e.tolerance == Tolerance(0.5 + INT8_ALLOWANCE.top1, 0.5 + INT8_ALLOWANCE.top5)
    assert e.known_broken == (0.602, 2.446)
    assert "vamp/int8-percentile is marked `broken: true`" in e.note and "vamp/fp16" in e.note


def test_the_known_broken_build_fails_as_broken_and_a_healthy_one_passes(repvgg_a0) -> None:
    e = expectation_for(repvgg_a0, full_val(), "vamp", "int8-percentile")
    images = Images("imagenet-val", 50_000, 50_000, "f")
    broken = judge(Accuracy(50_000, 301, 1223), e, images, UPDATE, build="vamp/int8-percentile")
    assert broken.kind == "broken"
    assert broken.message.startswith("BROKEN BUILD: top1 0.602% vs 70.628% expected")
    assert "reproduces the known-broken build recorded in the baseline (0.602 / 2.446)" in broken.message
    healthy = judge(Accuracy(50_000, 34_500, 44_300), e, images, UPDATE)  # 69.0 / 88.6
    assert healthy.passed
    worse = judge(Accuracy(50_000, 33_500, 44_300), e, images, UPDATE)  # 67.0: 3.6 below
    assert worse.kind == "regression"


def test_broken_entry_without_a_float_figure_has_no_target(tmp_path) -> None:
    text = (ROOT / "baselines" / "repvgg.yaml").read_text()
    text = text.replace('vamp/fp16: {top1: 70.628, top5: 89.742, source: "accelerator model zoo '
                        '(runtime + its scorer)"}', "")
    (tmp_path / "repvgg.yaml").write_text(text)
    entry = load_family(tmp_path / "repvgg.yaml").models["official-RepVGG-A0"]
    small = Dataset("imagenet-val", Path("."), "flat", (), 1000)  # not full val: no published
    assert expectation_for(entry, small, "vamp", "int8-percentile") is None


# -- finding the fp32 run to pair with (run.paired_with_fp32) ------------------------------------
def save_predictions(path: Path, top1: list[int], labels: list[int], image: str = "img",
                     source: str = "weights-sha256", content: int = 100) -> Path:
    """A predictions file as run.evaluate writes it, of the images <image>0.JPEG, <image>1.JPEG...
    whose contents have the digests content, content + 1, ..., by a network of digest `source`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    top5 = np.tile(np.asarray(top1, dtype=np.int16)[:, None], (1, 5))
    np.savez(path, top5=top5, labels=np.asarray(labels, dtype=np.int16),
             files=np.asarray([f"{image}{i}.JPEG" for i in range(len(top1))]),
             digests=np.arange(content, content + len(top1), dtype=np.uint64), source=np.asarray(source))
    return path


@pytest.fixture
def mobilenet_entries():
    return load_family(ROOT / "baselines" / "mobilenet_v2.yaml").models


def make_result(entry, backend: str, precision: str, predictions: Path):
    from pytest_vaccbench.run import Result

    return Result(entry.family, entry.key, backend, precision, "ds", "fp1", 4, 0, 0, 0.0,
                  str(predictions), str(entry.baseline_path))


def test_pairs_with_the_same_backends_fp32_first(tmp_path, mobilenet_entries) -> None:
    from pytest_vaccbench.run import Case, paired_with_fp32

    entry = mobilenet_entries["timm-mobilenetv2_100"]
    base = tmp_path / "predictions" / "mobilenet_v2" / "timm-mobilenetv2_100"
    labels = [1, 2, 3, 4]
    run = save_predictions(base / "onnxruntime-int8-max" / "ds-fp1.npz", [1, 2, 0, 0], labels)
    save_predictions(base / "reference-fp32" / "ds-fp1.npz", [1, 2, 3, 4], labels)
    save_predictions(base / "onnxruntime-fp32" / "ds-fp1.npz", [1, 0, 3, 0], labels)
    save_predictions(base / "onnxruntime-fp32" / "ds-other.npz", [9, 9, 9, 9], labels, image="other")
    case = Case(entry, "onnxruntime", "int8-max")
    paired = paired_with_fp32(make_result(entry, "onnxruntime", "int8-max", run), case, tmp_path)
    assert paired.reference == "onnxruntime/fp32"
    assert paired.note.endswith("onnxruntime-fp32/ds-fp1.npz")
    # run [1,2,0,0] vs fp32 [1,0,3,0], labels [1,2,3,4]: agree on images 0 and 3;
    # fp32 alone right on image 2, run alone right on image 1
    assert paired.agreement == Agreement(4, 2, 1, 1)
    (base / "onnxruntime-fp32" / "ds-fp1.npz").unlink()
    paired = paired_with_fp32(make_result(entry, "onnxruntime", "int8-max", run), case, tmp_path)
    assert paired.reference == "reference/fp32" and paired.agreement == Agreement(4, 2, 2, 0)


def test_vamp_fp32_pairs_with_another_backends_fp32(tmp_path, mobilenet_entries) -> None:
    from pytest_vaccbench.run import Case, paired_with_fp32

    entry = mobilenet_entries["timm-mobilenetv2_100"]
    base = tmp_path / "predictions" / "mobilenet_v2" / "timm-mobilenetv2_100"
    run = save_predictions(base / "vamp-fp32" / "ds-fp1.npz", [1, 2, 3, 4], [1, 2, 3, 4])
    paired = paired_with_fp32(make_result(entry, "vamp", "fp32", run), Case(entry, "vamp", "fp32"),
                              tmp_path)
    assert paired.agreement is None  # its own predictions are not a reference
    assert paired.note.startswith("no fp32 predictions of mobilenet_v2/timm-mobilenetv2_100 on ds "
                                  "(fingerprint fp1, n=4)")
    save_predictions(base / "onnxruntime-fp32" / "ds-fp1.npz", [1, 2, 3, 5], [1, 2, 3, 4])
    paired = paired_with_fp32(make_result(entry, "vamp", "fp32", run), Case(entry, "vamp", "fp32"),
                              tmp_path)
    assert paired.reference == "onnxruntime/fp32" and paired.agreement == Agreement(4, 3, 0, 1)


def test_a_model_stored_int8_pairs_with_its_float_model(tmp_path, mobilenet_entries) -> None:
    from pytest_vaccbench.run import Case, paired_with_fp32

    entry = mobilenet_entries["torchvision-mobilenet_v2_quantized"]
    root = tmp_path / "predictions" / "mobilenet_v2"
    run = save_predictions(root / entry.key / "reference-int8" / "ds-fp1.npz", [1, 2, 3, 4], [1, 2, 3, 4])
    twin = root / "local-mobilenetv2_100-tvq" / "reference-fp32" / "ds-fp1.npz"
    save_predictions(twin, [1, 2, 7, 4], [1, 2, 3, 4])
    result, case = make_result(entry, "reference", "int8", run), Case(entry, "reference", "int8")
    paired = paired_with_fp32(result, case, tmp_path)
    assert paired.reference == "reference/fp32 of local-mobilenetv2_100-tvq"
    assert paired.agreement == Agreement(4, 3, 0, 1)
    save_predictions(twin, [1, 2, 3, 4], [1, 2, 3, 0])  # a stale file: other labels
    paired = paired_with_fp32(result, case, tmp_path)
    assert paired.agreement is None and "other labels than this run" in paired.note


def test_an_unreadable_fp32_predictions_file_skips_only_the_comparison(tmp_path, mobilenet_entries) -> None:
    from pytest_vaccbench.run import Case, paired_with_fp32

    entry = mobilenet_entries["timm-mobilenetv2_100"]
    base = tmp_path / "predictions" / "mobilenet_v2" / "timm-mobilenetv2_100"
    run = save_predictions(base / "onnxruntime-int8-max" / "ds-fp1.npz", [1, 2, 3, 4], [1, 2, 3, 4])
    (base / "reference-fp32").mkdir(parents=True)
    (base / "reference-fp32" / "ds-fp1.npz").write_bytes(b"PK\x03\x04 half written")
    paired = paired_with_fp32(make_result(entry, "onnxruntime", "int8-max", run),
                              Case(entry, "onnxruntime", "int8-max"), tmp_path)
    assert paired.agreement is None
    assert paired.note.startswith(f"cannot read the fp32 predictions {base / 'reference-fp32' / 'ds-fp1.npz'}")


def test_a_changed_dataset_of_the_same_size_is_named_not_excused() -> None:
    """Other images than the baseline's: the headline says so, and recording is not the fix."""
    verdict = judge(Accuracy(650, 500, 600), expect(79.385, 94.769, n=650, fingerprint="old"),
                    Images("val-subset", 650, 650, "new"), UPDATE)
    assert verdict.kind == "other-images" and "+ sampling" not in verdict.message
    assert verdict.message.startswith("measured on other images than the baseline: val-subset has "
                                      "fingerprint new, the baseline was measured on old")
    assert UPDATE not in verdict.message and "stale" not in verdict.message
    assert ("images: the 650 images of val-subset (fingerprint new) are not those the baseline "
            "was measured on (n=650, fingerprint old)") in verdict.message
