"""The real int8 reference: torchvision's quantized MobileNetV2 as reference/int8.

Baseline fields `precision`, `float_model` and `min_agreement`, the reference backend's
skips, and (on the real data) the int8 model against its float twin image by image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.backends import RunOptions
from pytest_vaccbench.backends.reference import ReferenceBackend
from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.errors import BaselineError

ROOT = Path(__file__).resolve().parents[1]
INT8_KEY = "torchvision-mobilenet_v2_quantized"
# Lowest acceptable top-1 agreement of the torchvision int8 model with its float twin on
# the 650-image val subset. The two share every weight (the float file is the int8 one
# dequantized), so they differ only where activation rounding flips the top class: 95.2%
# (619/650) measured, whose 95% Wilson interval is 93.3-96.6. 90 sits below that interval;
# a wrong scale, zero point or preprocessing in the int8 path drops it far lower.
AGREEMENT_FLOOR = 90.0


@pytest.fixture(scope="module")
def mobilenet_v2():
    return load_family(ROOT / "baselines" / "mobilenet_v2.yaml")


def test_the_int8_model_declares_its_precision_and_float_twin(mobilenet_v2) -> None:
    entry = mobilenet_v2.models[INT8_KEY]
    assert (entry.precision, entry.float_model, entry.min_agreement) == \
        ("int8", "local-mobilenetv2_100-tvq", 90.0)
    assert mobilenet_v2.models["local-mobilenetv2_100-tvq"].precision == "fp32"
    assert all(run.startswith("reference/int8") for runs in entry.expected.values() for run in runs)


def test_reference_backend_runs_each_model_in_its_stored_precision_only(mobilenet_v2, tmp_path) -> None:
    backend, options = ReferenceBackend(), RunOptions(weights_dir=tmp_path, cache_dir=tmp_path)
    int8, float_ = mobilenet_v2.models[INT8_KEY], mobilenet_v2.models["local-mobilenetv2_100-tvq"]
    reason = backend.skip_reason(int8, "fp32", options)
    assert reason.startswith(f"mobilenet_v2/{INT8_KEY} is an int8 model (`precision: int8` at ")
    assert reason.endswith("runs it as reference/int8 only, not reference/fp32")
    reason = backend.skip_reason(float_, "int8", options)
    assert "has float weights: the reference backend runs it as reference/fp32 only" in reason
    assert "--backend=onnxruntime --precision=int8-<calibration>" in reason
    # in its own precision only the weights decide (none in tmp_path)
    assert backend.skip_reason(int8, "int8", options).startswith("weights not found")


SMALL_BASELINE = """\
family: tiny
preprocess: {{resize: 256, crop: 224}}
models:
  timm-float:
    {{name: f, source: timm, library: timm, arch: mobilenetv2_100, input_size: 224}}
  torchvision-quantized:
    name: q
    source: torchvision
    library: torchscript
    arch:
    input_size: 224
    {field}: {value}
"""


@pytest.mark.parametrize("field, value, message", [
    ("precision", "int4", "models.torchvision-quantized.precision must be one of fp32, int8, got 'int4'"),
    ("min_agreement", "120", "models.torchvision-quantized.min_agreement must be a percentage "
     "between 0 and 100, got 120"),
    ("min_agreement", "yes", "models.torchvision-quantized.min_agreement must be a number, got 'yes'"),
    ("float_model", "nowhere", "model 'torchvision-quantized': float_model 'nowhere' is not a model "
     "of this file"),
])
def test_bad_int8_fields_name_the_file_and_line(tmp_path, field, value, message) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(SMALL_BASELINE.format(field=field, value=value))
    with pytest.raises(BaselineError) as err:
        load_family(path)
    # the field's own line (12), or the model's first line (7) for a dangling float_model
    line = 7 if field == "float_model" else 12
    assert str(err.value) == f"{path}:{line}: {message}"


@pytest.mark.slow
def test_torchvision_int8_agrees_with_its_float_twin_on_the_val_subset(shared_data, tmp_path,
                                                                      mobilenet_v2) -> None:
    """Slow (about a minute on 2 free cores): both models over the 650 val-subset images."""
    pytest.importorskip("timm")
    from pytest_vaccbench.dataset import resolve
    from pytest_vaccbench.run import Case, evaluate, paired_with_fp32

    int8 = mobilenet_v2.models[INT8_KEY]
    twin = mobilenet_v2.models[int8.float_model]
    data = resolve(str(shared_data / "ilsvrc2012-val-subset" / "images"))
    options = RunOptions(weights_dir=shared_data / "weights", cache_dir=tmp_path, threads=2, workers=2)
    fp32 = evaluate(Case(twin, "reference", "fp32"), data, options)
    case = Case(int8, "reference", "int8")
    quantized = evaluate(case, data, options)
    paired = paired_with_fp32(quantized, case, tmp_path)
    assert paired.reference == "reference/fp32 of local-mobilenetv2_100-tvq"
    # the same numbers straight from the two saved prediction files
    run_top1 = np.load(quantized.predictions)["top5"][:, 0]
    twin_top1 = np.load(fp32.predictions)["top5"][:, 0]
    labels = np.asarray(data.labels)
    assert paired.agreement.n == 650
    assert paired.agreement.agree == int((run_top1 == twin_top1).sum())
    assert paired.agreement.reference_only == int(((twin_top1 == labels) & (run_top1 != labels)).sum())
    assert paired.agreement.run_only == int(((run_top1 == labels) & (twin_top1 != labels)).sum())
    assert paired.agreement.percent >= AGREEMENT_FLOOR, paired
