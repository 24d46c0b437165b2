"""Where the accuracy went: one model's loss ladder, every step on the same images.

Each step is the single test the gate runs for one stage of a deployment, one stage apart
from the step before it:

1. published: the README's figures (the full validation set: other images, context only);
2. recipe: reference/fp32 with the baseline's preprocessing;
3. device preprocessing: reference/fp32 with the device's fused preprocessing emulated from
   its vdsp_params JSON;
4. exported graph: onnxruntime/fp32 with step 3's preprocessing;
5. fp16: onnxruntime/fp16;
6. int8: onnxruntime/int8-<mode> as the build config says (mode, per-channel, layers kept in
   float, calibration count);
7. device: the compiled model on the accelerator (a backend that preprocesses on the device).

A step is `run.evaluate` of its case on the whole dataset, exactly as its test runs it (the
same image cache entries, exported graph, calibration ranges, int8 graph and predictions
file), then counted on the images no step calibrated on: the dataset less the int8
calibration images. Each measured row is paired with the measured step before it (compare.
paired_arrays): the delta, the images that flipped each way, the exact McNemar p and the
classes that lost most. A step that cannot run is listed with the reason. The ladder closes
with one sentence naming the step that carries most of the significant loss.

Plain functions, no pytest or argparse: `vaccbench explain` and the gate call `explain` and
`explain_failure`; waterfall.py draws the result.
"""

from __future__ import annotations

import os
import shlex
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .backends import RunOptions, available, get_backend
from .baselines import ModelEntry, load_family
from .compare import Record, paired_arrays
from .dataset import Dataset, Sample, class_name
from .errors import VaccbenchError
from .metrics import accuracy
from .preprocess import PreprocessSpec
from .run import Case, Result, backend_skip_reason, evaluate, predictions_path
from .triage import Clock, keep_variant

ALPHA = 0.05  # a step's loss is significant when its exact McNemar p is below this
CLASSES_SHOWN = 3  # classes that lost most, per row
DEFAULT_BUDGET = 120.0  # seconds a failing test may spend on its ladder
DEFAULT_PRECISION = "int8-percentile"  # vamc's default calibration
CPU_BACKENDS = ("reference", "onnxruntime")
NAMES = {1: "published", 2: "recipe", 3: "device preprocessing", 4: "exported graph", 5: "fp16",
         6: "int8", 7: "device"}
LIBRARIES = {"pil": "Pillow", "cv2": "OpenCV"}


class StepNotRun(Exception):
    """Why a step has no numbers (its row says so)."""


@dataclass
class Step:
    """One row of the ladder. Counts and deltas are on the ladder's images (`Ladder.n`)
    except for step 1, the README's figures on the full validation set."""

    number: int
    name: str
    run: str  # backend/precision as results record it, or "README" for step 1
    what: str  # what this step changes from the one before, for the closing sentence
    status: str = "not run"  # measured | context | not run
    reason: str = ""  # why it was not run
    n: int | None = None
    top1: float | None = None
    top5: float | None = None
    previous: int | None = None  # the measured step it is paired with
    delta_previous: float | None = None  # top1 points against `previous`
    delta_step2: float | None = None  # top1 points against step 2
    lost: int | None = None  # right at `previous`, wrong here
    gained: int | None = None  # wrong at `previous`, right here
    mcnemar_p: float | None = None
    classes: list[dict[str, Any]] = field(default_factory=list)  # the classes that lost most
    seconds: float | None = None  # the run's time (0 when its predictions were reused)
    reused: bool = False  # its predictions came from a test of this session

    @property
    def significant_loss(self) -> bool:
        return (self.delta_previous is not None and self.delta_previous < 0
                and self.mcnemar_p is not None and self.mcnemar_p < ALPHA)


@dataclass
class Ladder:
    model: str  # family/key
    dataset: str
    precision: str  # the build the ladder explains: fp16 or int8-<mode>
    n: int  # images every measured step counts
    excluded: int  # int8 calibration images, counted by no step
    preprocessing: dict[str, str]  # "recipe" and "device": what each does
    steps: list[Step]
    conclusion: str = ""
    seconds: float = 0.0
    rerun: str = ""  # the command that measures what a time budget left out

    def to_dict(self) -> dict[str, Any]:
        """The ladder as JSON data: `{"steps": [...], ...}` (`--json`, the gate's payload)."""
        return {"model": self.model, "dataset": self.dataset, "precision": self.precision,
                "n": self.n, "excluded": self.excluded, "preprocessing": self.preprocessing,
                "steps": [{**asdict(s), "significant": s.significant_loss} for s in self.steps],
                "conclusion": self.conclusion, "seconds": round(self.seconds, 1),
                **({"rerun": self.rerun} if self.rerun else {})}

    def lines(self, short: bool = False) -> list[str]:
        """The ladder as text: a head, one row per step, the closing sentence. `short` (a
        failing test's message) leaves out top5, the classes and long reasons."""
        calib = f" ({self.excluded} calibration images not counted)" if self.excluded else ""
        head = [f"loss ladder of {self.model} {self.precision} on {self.dataset}: {self.n} images, "
                f"the same in every step{calib}; {self.seconds:.0f}s"]
        head += [f"  {k} preprocessing: {v}" for k, v in self.preprocessing.items()]
        run_w = max(len(_shown_run(s.run)) for s in self.steps)
        name_w = max(len(s.name) for s in self.steps)
        columns = [f"{'top1':>6}", *([] if short else [f"{'top5':>6}"]), f"{'vs prev':>7}",
                   f"{'vs 2':>7}", f"{'lost':>4}", f"{'won':>4}", f"{'McNemar p':>9}"]
        rows = [f"  {'step':<{name_w + 2}} {'run':<{run_w}}  {' '.join(columns)}"
                f"{'' if short else '  classes that lost most'}"]
        for s in self.steps:
            start = f"  {s.number} {s.name:<{name_w}} {_shown_run(s.run):<{run_w}}  "
            if s.status == "not run":
                reason = s.reason.splitlines()[0] if s.reason else ""
                if short and len(reason) > 120:
                    reason = reason[:117] + "..."
                rows.append(f"{start}not run: {reason}")
                continue
            cells = [_num(s.top1, "6.2f"), *([] if short else [_num(s.top5, "6.2f")]),
                     _num(s.delta_previous, "+7.2f"), _num(s.delta_step2, "+7.2f"),
                     _num(s.lost, "4d"), _num(s.gained, "4d"), _p(s.mcnemar_p)]
            tail = "" if short else "  " + (
                s.what if s.status == "context" else
                ", ".join(f"{c['change']:+d} {c['name']}" for c in s.classes))
            rows.append((start + " ".join(cells) + tail).rstrip())
        rerun = [f"the whole ladder: {self.rerun}"] if self.rerun else []
        return [*head, *rows, self.conclusion, *rerun]


def _shown_run(run: str) -> str:
    """backend/precision without the preprocessing variant (the ladder's head names it)."""
    head, *variants = run.split("+")
    return "+".join([head, *(v for v in variants if not v.startswith(("vdsp-", "vsx-")))])


def _num(value: float | int | None, spec: str) -> str:
    width = int(spec.lstrip("+").split(".")[0].rstrip("df"))
    return f"{'-':>{width}}" if value is None else format(value, spec)


def _p(value: float | None) -> str:
    return f"{'-':>9}" if value is None else f"{value:>9.2g}" if value < 0.01 else f"{value:>9.3f}"


# -- what each step changes ---------------------------------------------------------------------
def _geometry(spec: PreprocessSpec) -> str:
    even = "odd sides made even, then " if spec.even_size else ""
    resize = (f"{spec.resize}x{spec.resize} stretch" if spec.resize_mode == "square"
              else f"short-side resize to {spec.resize}")
    crop = ("" if not spec.crop else f", {spec.crop} crop at {spec.crop_offset[0]},{spec.crop_offset[1]}"
            if spec.crop_offset else f", centre {spec.crop} crop"
            + (" (offsets rounded up)" if spec.crop_rounding == "up" else ""))
    return even + resize + crop


def _resampling(spec: PreprocessSpec) -> str:
    return f"{LIBRARIES[spec.library]} {spec.interpolation}"


def _normalisation(spec: PreprocessSpec) -> tuple[tuple[float, ...], str]:
    """Mean and std on 0..1 pixels (as a recipe states them), and in words."""
    scale = spec.pixel_scale / 255.0
    values = tuple(round(v * scale, 3) for v in (*spec.mean, *spec.std))
    text = (f"mean {','.join(f'{v:g}' for v in values[:3])} std {','.join(f'{v:g}' for v in values[3:])}"
            + (" on BGR" if spec.channel_order == "BGR" else ""))
    return values, text


def describe(spec: PreprocessSpec) -> str:
    """A preprocessing in a few words: `256x256 stretch, 224 crop at 16,16 (OpenCV bilinear;
    mean 0.485,0.456,0.406 std 0.229,0.224,0.225)`."""
    return f"{_geometry(spec)} ({_resampling(spec)}; {_normalisation(spec)[1]})"


def differences(recipe: PreprocessSpec, device: PreprocessSpec) -> str:
    """What the device's preprocessing does otherwise than the recipe, in words."""
    parts = [f"{part(device)} against the recipe's {part(recipe)}" for part in (_geometry, _resampling)
             if part(device) != part(recipe)]
    (theirs, said), (ours, recipe_said) = _normalisation(device), _normalisation(recipe)
    if max(abs(a - b) for a, b in zip(theirs, ours)) > 1e-3 or device.channel_order != recipe.channel_order:
        parts.append(f"{said} against the recipe's {recipe_said}")  # beyond the device's fp16 rounding
    return "its " + "; ".join(parts) if parts else "the same as the recipe's"


def int8_recipe(entry: ModelEntry, precision: str, options: RunOptions, calibration: int) -> str:
    """What the onnxruntime emulation of an int8 build does, in a few words."""
    from .backends.onnxruntime import OrtSettings, build_config
    from .layers import parse_keep

    settings = OrtSettings.from_options(options)
    build = build_config(entry, settings)
    per_channel = build.per_channel if build else settings.per_channel
    keep_conv, keep_matmul = parse_keep(settings.keep_fp32) if settings.keep_fp32 else ((), ())
    conv = sorted({*(build.skip_conv_layers if build else ()), *keep_conv})
    matmul = sorted({*(build.skip_matmul_layers if build else ()), *keep_matmul})
    kept = [f"{kind} {', '.join(map(str, found))}" for kind, found in (("conv", conv), ("matmul", matmul))
            if found]
    return ", ".join([f"{precision.removeprefix('int8-')} calibration",
                      "per-channel" if per_channel else "per-tensor", f"{calibration} calibration images",
                      *([f"kept in float: {'; '.join(kept)}"] if kept else []),
                      *([f"as {build.path.name} says"] if build else [])])


def build_precision(entry: ModelEntry, options: RunOptions) -> str:
    """The precision of the build the ladder explains when none is asked for: the vamc build
    config's (--vamc-config, or the entry's `build:`), else vamc's default calibration."""
    from .backends.onnxruntime import OrtSettings, build_config

    build = build_config(entry, OrtSettings.from_options(options))
    return build.precision if build else DEFAULT_PRECISION


# -- the device ---------------------------------------------------------------------------------
def device_backends() -> list[str]:
    """Registered backends that run on the accelerator (they preprocess on the device)."""
    found = []
    for name in sorted(available()):
        try:
            if get_backend(name).preprocesses_on_device:
                found.append(name)
        except ImportError:
            continue
    return found


@dataclass(frozen=True)
class Device:
    """Step 7: an accelerator backend (vamp, vsx), result files the accelerator wrote, or
    both: the result files a host of that backend wrote, its compiled model giving step 3's
    preprocessing (`--device vamp:FILE`, a test scored by `pytest --results`)."""

    backend: str | None = None
    results: tuple[Path, ...] = ()

    @property
    def option(self) -> str:
        """The `--device` value that names this device."""
        files = os.pathsep.join(map(str, self.results))
        return f"{self.backend}:{files}" if self.backend and files else self.backend or files


def parse_device(value: str | None) -> Device | None:
    """`--device`: an accelerator backend's name, result files (a file or folder), or
    BACKEND:RESULTS."""
    if not value:
        return None
    backends = device_backends()
    if value in backends:
        return Device(backend=value)
    backend, colon, files = value.partition(":")
    backend, files = (backend, files) if colon and backend in backends else (None, value)
    path = Path(files).expanduser()
    if path.exists():
        return Device(backend, (path,))
    raise VaccbenchError(f"--device {value}: neither an accelerator backend ({', '.join(backends)}) "
                         f"nor result files, alone or as BACKEND:FILE (no such file or folder {files})")


def device_preprocessing(device: Device | None, entry: ModelEntry, precision: str,
                         options: RunOptions, vdsp: Path | None) -> tuple[str, PreprocessSpec] | str:
    """Step 3's preprocessing as (variant name, spec): `vdsp` (a vdsp_params JSON), else the
    one the device's compiled model comes with; after the VastStreamX host's odd-to-even
    resize for vsx (`--preprocess=vsx:FILE`'s spec and name). Or why there is none."""
    from .vdsp import preprocess_option, variant_name

    kind = "vsx" if device is not None and device.backend == "vsx" else "vdsp"
    if vdsp is not None:
        return preprocess_option(f"{kind}:{vdsp}")
    if device is None:
        return "no vdsp_params JSON (give --vdsp FILE, or a device with --device)"
    if device.backend is None:
        return "result files do not say how the device preprocessed (give --vdsp FILE)"
    backend = get_backend(device.backend)
    try:
        model = backend.compiled_model(entry, precision, options)  # type: ignore[attr-defined]
        host = getattr(backend, "host_spec", None)  # what a host does before the device (vsx)
        spec = host(entry, precision, options) if host else backend.vdsp_spec(model)  # type: ignore[attr-defined]
    except VaccbenchError as exc:
        return f"{exc} (or give --vdsp FILE)"
    return variant_name(model.vdsp_params, kind), spec


# -- planning -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Planned:
    """A step before it runs: its case (None: nothing to run, `reason` says why)."""

    number: int
    run: str
    what: str
    case: Case | None = None
    reason: str = ""
    results: tuple[Path, ...] = ()  # step 7 from result files


def calibration_images(entry: ModelEntry, precision: str, dataset: Dataset,
                       options: RunOptions) -> tuple[tuple[Sample, ...], str]:
    """The int8 emulation's calibration images (counted by no step), or () and why there
    is no int8 step."""
    if not precision.startswith("int8"):
        return (), f"{precision} build: nothing is quantized to int8"
    backend = get_backend("onnxruntime")
    try:
        return tuple(backend.excluded_samples(entry, precision, dataset, replace(
            options, extra={**options.extra, "calib_include": False}))), ""
    except VaccbenchError as exc:
        return (), str(exc)


NO_DEVICE = "no device given (--device)"


def plan(entry: ModelEntry, precision: str, options: RunOptions,
         preprocessing: tuple[str, PreprocessSpec] | str, device: Device | None,
         int8_reason: str, calibration: int, no_device: str = NO_DEVICE) -> list[Planned]:
    """Steps 2-7 of `entry` (with the baseline's own preprocessing) for the `precision` build;
    `no_device`: why step 7 does not run when there is no device."""
    if isinstance(preprocessing, str):
        variant, device_entry = None, entry
        step3 = Planned(3, "reference/fp32", "the device's preprocessing", reason=preprocessing)
    else:
        variant, spec = preprocessing
        device_entry = replace(entry, preprocess=spec)
        step3 = Planned(3, f"reference/fp32+{variant}",
                        f"the device's preprocessing: {differences(entry.preprocess, spec)}",
                        Case(device_entry, "reference", "fp32", variant))

    keep = options.extra.get("int8_keep_fp32")

    def cpu(number: int, precision: str, what: str, reason: str = "") -> Planned:
        kept = keep_variant(keep) if keep and precision.startswith("int8") else None
        case = Case(device_entry, "onnxruntime", precision, "+".join(filter(None, [variant, kept])) or None)
        return Planned(number, f"onnxruntime/{case.run_precision}", what,
                       None if reason else case, reason)

    steps = [Planned(2, "reference/fp32", "the recipe", Case(entry, "reference", "fp32")), step3,
             cpu(4, "fp32", "the exported graph: onnxruntime fp32 against PyTorch"),
             cpu(5, "fp16", "fp16: the graph in float16 (onnxruntime)"),
             cpu(6, precision if precision.startswith("int8") else "int8",
                 f"int8 quantization ({int8_recipe(device_entry, precision, options, calibration)})"
                 if not int8_reason else "int8 quantization", int8_reason)]
    if device is None:
        steps.append(Planned(7, "device", "the device", reason=no_device))
    elif device.backend is not None:
        what = (f"{device.backend} {precision} against its CPU emulation" if not device.results else
                f"its {device.backend} {precision} result files against the CPU emulation")
        steps.append(Planned(7, f"{device.backend}/{precision}", f"the device itself: {what}",
                             Case(entry, device.backend, precision), results=device.results))
    else:
        steps.append(Planned(7, f"results/{precision}",
                             "the device itself: its result files against the CPU emulation",
                             results=device.results))
    return steps


# -- running ------------------------------------------------------------------------------------
Arrays = dict[str, np.ndarray]  # top5, labels, files: a predictions file's arrays


def _read(path: Path) -> Arrays:
    try:
        with np.load(path) as saved:
            return {k: saved[k] for k in ("top5", "labels", "files")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # being written, or damaged
        raise StepNotRun(f"cannot read its predictions {path} ({exc})") from None


def _on(arrays: Arrays, counted: Sequence[Sample]) -> Arrays:
    """The rows of `arrays` for the counted images, in their order."""
    index = {name: i for i, name in enumerate(arrays["files"].tolist())}
    missing = [s.path.name for s in counted if s.path.name not in index]
    if missing:
        raise StepNotRun(f"its predictions lack {len(missing)} of the ladder's images "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    rows = np.array([index[s.path.name] for s in counted], dtype=np.int64)
    picked = {k: v[rows] for k, v in arrays.items()}
    if not np.array_equal(picked["labels"], np.array([s.label for s in counted])):
        raise StepNotRun("its predictions carry other labels for the ladder's images")
    return picked


def _results(step: Planned, dataset: Dataset) -> Arrays:
    """The device's result files (result.txt, vamp outputs with their datalist, predictions
    files: resultfiles.py) as predictions, with the dataset's label file for a flat folder."""
    from .resultfiles import read_predictions

    labels = next((p for p in (dataset.root / "val_label.txt", dataset.root.parent / "val_label.txt")
                   if p.is_file()), None) if dataset.layout == "flat" else None
    scored = read_predictions(step.results, labels, subset=True)
    return {"top5": scored.top5, "labels": scored.labels, "files": np.asarray(scored.names)}


Reuse = Callable[[Case], "Path | None"]  # a saved predictions file of a case, or None


def measure(steps: Sequence[Planned], dataset: Dataset, counted: Sequence[Sample],
            options: RunOptions, reuse: Reuse = lambda case: None, budget: float | None = None,
            estimate: float | None = None) -> list[tuple[Planned, Arrays | str, float, bool]]:
    """Run each planned step (or reuse its saved predictions) within the time budget:
    (step, its arrays on the counted images or why there are none, seconds, reused).
    `estimate`: seconds a step is expected to take before any has run."""
    clock = Clock(budget)
    out: list[tuple[Planned, Arrays | str, float, bool]] = []
    for step in steps:
        start = time.perf_counter()
        saved = reuse(step.case) if step.case is not None else None
        try:
            if step.reason:
                raise StepNotRun(step.reason)
            if saved is not None:
                arrays = _on(_read(saved), counted)
            elif step.results:
                arrays = _on(_results(step, dataset), counted)
            else:
                assert step.case is not None
                why = backend_skip_reason(step.case, options)
                if why:
                    raise StepNotRun(why)
                if estimate is not None and not clock.allows(estimate):
                    raise StepNotRun(f"time budget of {budget:g} s (--explain-budget)")
                result = evaluate(step.case, dataset, options)
                arrays = _on(_read(Path(result.predictions)), counted)
                seconds = time.perf_counter() - start
                estimate = max(estimate or 0.0, seconds)
        except StepNotRun as exc:
            out.append((step, str(exc), 0.0, False))
            continue
        except VaccbenchError as exc:  # a run that failed: the other steps still say something
            out.append((step, f"failed: {exc}", time.perf_counter() - start, False))
            continue
        out.append((step, arrays, time.perf_counter() - start, saved is not None))
    return out


def _record(step: Planned, entry: ModelEntry, dataset: str, arrays: Arrays) -> Record:
    acc = accuracy(arrays["top5"], arrays["labels"])
    backend, _, precision = step.run.partition("/")
    return Record(entry.family, entry.key, backend, precision, dataset, "", acc.n, acc.top1,
                  acc.top5, "measured", None)


def rows(entry: ModelEntry, dataset: str, measured: Iterable[tuple[Planned, Arrays | str, float, bool]]) -> list[Step]:
    """The ladder's rows 2-7: each measured step paired with the measured step before it."""
    steps: list[Step] = []
    before: tuple[Step, Record, Arrays] | None = None
    step2: Step | None = None
    for planned, arrays, seconds, reused in measured:
        step = Step(planned.number, NAMES[planned.number], planned.run, planned.what,
                    seconds=round(seconds, 1), reused=reused)
        steps.append(step)
        if isinstance(arrays, str):
            step.reason = arrays
            continue
        record = _record(planned, entry, dataset, arrays)
        step.status, step.n, step.top1, step.top5 = "measured", record.n, record.top1, record.top5
        if planned.number == 2:
            step2 = step
        if step2 is not None and step is not step2:
            step.delta_step2 = step.top1 - step2.top1
        if before is not None:
            previous, previous_record, previous_arrays = before
            pair = paired_arrays(previous_record, record, previous_arrays, arrays)
            assert pair.agreement is not None  # the same images, the same labels
            step.previous = previous.number
            step.delta_previous = step.top1 - previous.top1  # type: ignore[operator]
            step.lost, step.gained = pair.agreement.reference_only, pair.agreement.run_only
            step.mcnemar_p = pair.agreement.mcnemar_p
            step.classes = [{"class": c.label, "name": class_name(c.label), "n": c.n,
                             "before": c.correct_a, "after": c.correct_b, "change": c.change}
                            for c in pair.classes if c.change < 0][:CLASSES_SHOWN]
        before = (step, record, arrays)
    return steps


def published_step(entry: ModelEntry, dataset: Dataset) -> Step:
    """Step 1: the README's figures, on the full validation set: other images, or these
    images scored elsewhere (nothing to pair with)."""
    figures = entry.published or {}
    step = Step(1, NAMES[1], "README (full val)",
                "not paired, context only" if dataset.is_full_val else "other images: context only")
    if figures.get("top1") is None:
        step.reason = f"no published figures for {entry.key} in {entry.baseline_path.name}"
        return step
    step.status, step.top1 = "context", float(figures["top1"])
    step.top5 = None if figures.get("top5") is None else float(figures["top5"])
    return step


def conclusion(steps: Sequence[Step]) -> str:
    """One sentence: the step carrying most of the significant loss (exact McNemar p < ALPHA
    against the step before), and its share of all the top1 lost over the ladder."""
    measured = [s for s in steps if s.status == "measured"]
    if len(measured) < 2:
        return "Fewer than two steps were measured: nothing to compare."
    first, last = measured[0], measured[-1]
    lost = first.top1 - last.top1  # type: ignore[operator]
    span = f"from step {first.number} to step {last.number}"
    losing = [s for s in measured[1:] if s.delta_previous is not None and s.delta_previous < 0]
    significant = [s for s in losing if s.significant_loss]
    if significant:
        top = min(significant, key=lambda s: (s.delta_previous, s.number))
        share = -top.delta_previous  # type: ignore[operator]
        at = f"step {top.number}, {top.what} (exact McNemar p={top.mcnemar_p:.2g})"
        if share <= lost + 1e-9:
            return f"{share:.2f} of the {lost:.2f} top1 points lost {span} are {at}."
        return (f"The largest significant loss, {share:.2f} top1 points, is {at}; {span} top1 "
                f"changes by {-lost:+.2f} in all.")
    if losing and lost > 0:
        top = min(losing, key=lambda s: (s.delta_previous, s.number))
        return (f"No step loses significantly (exact McNemar p >= {ALPHA:g} against the step "
                f"before); of the {lost:.2f} top1 points lost {span}, the most, "
                f"{-top.delta_previous:.2f}, are step {top.number}, {top.what} "  # type: ignore[operator]
                f"(p={top.mcnemar_p:.2g}).")
    return f"No step loses top1: {span} it changes by {last.top1 - first.top1:+.2f}."  # type: ignore[operator]


def explain(entry: ModelEntry, dataset: Dataset, options: RunOptions, precision: str, *,
            vdsp: Path | None = None, device: Device | None = None,
            preprocessing: tuple[str, PreprocessSpec] | str | None = None, budget: float | None = None,
            reuse: Reuse = lambda case: None, estimate: float | None = None,
            no_device: str = NO_DEVICE) -> Ladder:
    """The ladder of `entry` (its baseline's preprocessing as the recipe) for the `precision`
    build on `dataset`. Step 3's preprocessing: `preprocessing` (variant, spec; or why there
    is none) when given, else the `vdsp` file, else the device's own. `reuse` gives saved
    predictions of a case to read instead of running it; `budget` bounds the seconds spent
    running steps (each expected to take `estimate`, then as long as the longest so far)."""
    from .backends.onnxruntime import CALIBRATION_METHODS

    if precision != "fp16" and precision not in CALIBRATION_METHODS:
        raise VaccbenchError(f"precision {precision}: a build is fp16 or one of "
                             f"{', '.join(CALIBRATION_METHODS)}")
    started = time.perf_counter()
    calibration, int8_reason = calibration_images(entry, precision, dataset, options)
    if preprocessing is None:
        preprocessing = device_preprocessing(device, entry, precision, options, vdsp)
    planned = plan(entry, precision, options, preprocessing, device, int8_reason, len(calibration),
                   no_device)
    held_out = set(calibration)
    counted = [s for s in dataset.samples if s not in held_out]
    steps = [published_step(entry, dataset), *rows(entry, dataset.name, measure(
        planned, dataset, counted, options, reuse, budget, estimate))]
    device_text = (f"none: {preprocessing}; steps 4-6 use the recipe's" if isinstance(preprocessing, str)
                   else f"{describe(preprocessing[1])}; {preprocessing[0]}, steps 3-6 use it")
    return Ladder(entry.test_name, dataset.name, precision, len(counted), len(calibration),
                  {"recipe": describe(entry.preprocess), "device": device_text}, steps,
                  conclusion(steps), time.perf_counter() - started)


# -- in the gate --------------------------------------------------------------------------------
EXPLAINED = ("regression", "broken")  # the gate's verdicts (Verdict.kind) a ladder is shown for
IMAGES = "IMAGES"  # the dataset argument of a command for images not on this machine


class NoLadder(VaccbenchError):
    """Why a failing test gets no ladder at all, with the command that gives it elsewhere."""


def explains(backend: str, precision: str, kind: str = "regression") -> bool:
    """Whether a failing test (its verdict `kind`) gets a ladder: a regression or a broken
    build of an fp16 or int8 emulation, or of a device run."""
    if kind not in EXPLAINED:
        return False
    if backend in CPU_BACKENDS:
        return backend == "onnxruntime" and (precision == "fp16" or precision.startswith("int8"))
    try:
        return get_backend(backend).preprocesses_on_device
    except (VaccbenchError, ImportError):
        return False


def recipe_entry(case: Case, override: PreprocessSpec | None) -> ModelEntry:
    """The case's model with its baseline's own preprocessing (a --preprocess case carries
    the override instead)."""
    if override is None or case.entry.preprocess != override:
        return case.entry
    return load_family(case.entry.baseline_path).models.get(case.entry.key, case.entry)


def fresh(cache_dir: Path, dataset: Dataset, counted: Sequence[Sample], since: float) -> Reuse:
    """Saved predictions of a case written at or after `since` (by a test of this session)."""
    whole = dataset.fingerprint()
    part = Dataset(dataset.name, dataset.root, dataset.layout, tuple(counted), dataset.total)

    def saved(case: Case) -> Path | None:
        for images, fingerprint in ((dataset, whole), (part, None)):
            path = predictions_path(cache_dir, case, images, fingerprint or images.fingerprint())
            if path.is_file() and path.stat().st_mtime >= since:
                return path
        return None
    return saved


def elsewhere(entry: ModelEntry, precision: str, device: str, why: str, images: str = IMAGES,
              flags: dict[str, Any] | None = None) -> str:
    """Why a run scored from result files gets no ladder here, and the `vaccbench explain`
    command that gives it where the images and the weights are (`device`: its --device value,
    `flags`: its other options)."""
    run = command(entry, images, precision, {**(flags or {}), "--device": device})
    return (f"loss ladder not run: {why}; every step before the device's runs the model on "
            f"the images. Where the images and the weights are: {run}"
            + (f" ({IMAGES}: the folder of the images the result files name)" if images == IMAGES else ""))


def images_folder(dataset: Dataset) -> str | None:
    """The folder holding every image of a dataset read from result files, or None when
    some are not on this machine."""
    if not dataset.samples or not all(s.path.is_file() for s in dataset.samples):
        return None
    return os.path.commonpath([str(s.path.parent) for s in dataset.samples])


def explain_failure(case: Case, dataset: Dataset, options: RunOptions, result: Result, *,
                    override: tuple[str, PreprocessSpec] | None = None,
                    budget: float | None = DEFAULT_BUDGET, since: float | None = None,
                    rerun: dict[str, Any] | None = None, results: Path | None = None) -> Ladder:
    """The ladder of a failing test: its own predictions are its step (run again when it
    stopped early, --vaccbench-sequential), the predictions other tests of the session saved
    since `since` are theirs, the rest run within `budget`.
    Step 3 is the device's preprocessing for a device run, else the session's --preprocess
    (`override`). When the budget left steps out, the ladder names the `vaccbench explain`
    command that runs them all (`rerun`: its dataset and options, None for those not set).
    `results`: the result files a device run was scored from (`pytest --results`); the
    other steps run on the images they name, and NoLadder says so when those are not here."""
    on_device = case.backend not in CPU_BACKENDS
    device = Device(case.backend, (results,) if results else ()) if on_device else None
    if results is not None:
        folder = images_folder(dataset)
        rerun = {**(rerun or {}), "dataset": folder or IMAGES}
        if folder is None:
            away = [s.path.name for s in dataset.samples if not s.path.is_file()]
            flags = {k: v for k, v in rerun.items() if k != "dataset"}
            raise NoLadder(elsewhere(case.entry, case.precision, Device(case.backend, (results,)).option, (
                f"{len(away)} of the {len(dataset.samples)} images the result files name are not on "
                f"this machine ({', '.join(away[:3])}{', ...' if len(away) > 3 else ''}: looked "
                "for at the paths the files give and beside the --labels file)"), flags=flags))
    entry = recipe_entry(case, override[1] if override else None)
    precision = case.precision
    held_out = set(calibration_images(entry, precision, dataset, options)[0])
    counted = [s for s in dataset.samples if s not in held_out]
    saved = fresh(options.cache_dir, dataset, counted, since if since is not None else time.time())

    own = result.n >= len(counted)  # not a sequential run that stopped before the last image

    def reuse(step: Case) -> Path | None:
        if step.id == case.id:
            return Path(result.predictions) if own else None
        return saved(step)

    preprocessing = (None if on_device else override or
                     "no vdsp_params JSON in this session (--preprocess=vdsp:FILE or vsx:FILE)")
    found = explain(entry, dataset, options, precision, device=device, preprocessing=preprocessing,
                    budget=budget, reuse=reuse, estimate=result.seconds,
                    no_device="this test is the CPU emulation: no device run to compare")
    if rerun is not None and any(s.reason.startswith("time budget") for s in found.steps):
        flags = {k: v for k, v in rerun.items() if k != "dataset"}
        found.rerun = command(entry, str(rerun["dataset"]), precision,
                              {**flags, "--device": device.option if device else None})
    return found


def command(entry: ModelEntry, dataset: str, precision: str, flags: dict[str, Any]) -> str:
    """The `vaccbench explain` command for this model and build (`flags`: its options, None
    for those not set)."""
    args = ["vaccbench", "explain", entry.test_name, dataset, f"--precision={precision}",
            *(f"{flag}={value}" for flag, value in flags.items() if value is not None)]
    return shlex.join(args)

