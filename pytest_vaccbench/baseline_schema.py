"""The baseline file format as data: every field, its type and range (baselines/SCHEMA.md).

`validate(data, path)` walks a parsed baseline file (ruamel.yaml round-trip nodes, which know
their lines) and raises one `BaselineError` with file:line for the first field that is wrong:
an unknown key (naming the closest known one), a wrong type, a value out of range. Written by
hand rather than with jsonschema: every message needs the node's line and the closest valid
key, which jsonschema's errors carry neither of, and the whole schema is a few tables.
The same specs and walk (`check`) validate the JSON reports (report_schema.py).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Union

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .errors import BaselineError, control_characters, printable
from .store import DIGEST_RE

Check = Callable[[Any], Union[str, None]]  # None when the value is fine, else what is wrong


@dataclass(frozen=True)
class Fields:
    """A mapping with known keys (`fields`), of which `required` must be present; `values`
    checks the values of a mapping whose keys are free (dataset names, run names)."""

    fields: Mapping[str, "Spec"] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    values: "Spec | None" = None
    what: str = "mapping"
    open: bool = False  # keys beyond `fields` are allowed (a report written by a newer version)


@dataclass(frozen=True)
class ListOf:
    item: "Spec"
    length: int | None = None
    min_length: int = 0


@dataclass(frozen=True)
class AnyOf:
    """The first spec whose top-level check passes is used; `what` says what is allowed."""

    options: tuple["Spec", ...]
    what: str


@dataclass(frozen=True)
class Maybe:
    """`spec`, or null."""

    spec: "Spec"


Spec = Union[Check, Fields, ListOf, AnyOf, Maybe]


# -- leaf checks ------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def anything(v: Any) -> str | None:
    return None


def string(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


def name(v: Any) -> str | None:
    """A name shown on the terminal (family, model, dataset): a string without control characters."""
    if not isinstance(v, str):
        return "must be a string"
    return "must not hold control characters (an escape sequence?)" if control_characters(v) else None


def number(v: Any) -> str | None:
    if not _is_number(v):
        return "must be a number"
    return None if math.isfinite(v) else "must be a finite number"


def positive_number(v: Any) -> str | None:
    return number(v) or (None if v > 0 else "must be > 0")


def non_negative(v: Any) -> str | None:
    return number(v) or (None if v >= 0 else "must be >= 0")


def percent(v: Any) -> str | None:
    return number(v) or (None if 0 <= v <= 100 else "must be a percentage between 0 and 100")


def positive_int(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v > 0 else \
        "must be a positive integer"


def non_negative_int(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else \
        "must be a non-negative integer"


def integer(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) else "must be an integer"


def digest(v: Any) -> str | None:
    """A predictions store digest: 32 lowercase hex digits (it becomes a file name)."""
    return None if isinstance(v, str) and DIGEST_RE.match(v) else "must be 32 hex digits (a predictions digest)"


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def one_of(*values: Any) -> Check:
    def check(v: Any) -> str | None:
        return None if v in values else f"must be one of {', '.join(map(str, values))}"
    return check


def optional(spec: Spec) -> Maybe:
    return Maybe(spec)


# -- the format -------------------------------------------------------------------------

LIBRARIES = ("timm", "torchvision", "torchscript")  # what builds a model here
NATIVE_PRECISIONS = ("fp32", "int8")  # the precision a model's weights are stored in

PREPROCESS = Fields({
    "resize": positive_int, "crop": optional(positive_int),
    "resize_mode": one_of("short-side", "square"),
    "interpolation": one_of("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"),
    "library": one_of("pil", "cv2"), "decoder": optional(one_of("pil", "cv2")),
    "mean": ListOf(number, 3), "std": ListOf(positive_number, 3),
    "channel_order": one_of("RGB", "BGR"), "crop_offset": optional(ListOf(non_negative_int, 2)),
    "pixel_scale": positive_number}, what="preprocess mapping")
TOLERANCE = Fields({"top1": non_negative, "top5": non_negative}, what="{top1, top5} in points")
ACCURACY = Fields({"top1": optional(percent), "top5": optional(percent)}, what="{top1, top5} in percent")
# One measured run under expected.<dataset>.<backend>/<precision>.
RUN_FIELDS: dict[str, Spec] = {
    "top1": optional(percent), "top5": optional(percent), "n": positive_int,
    "fingerprint": string, "date": string, "versions": string, "machine": string,
    "options": Fields(values=anything), "source": string, "broken": boolean,
    "tolerance": TOLERANCE, "calibration_excluded": non_negative_int, "note": string,
    "predictions": digest}
RUN = Fields(RUN_FIELDS, what="{top1, top5, ...}")
WEIGHTS = AnyOf((string, Fields({"file": optional(string), "package": optional(string),
                                 "key_map": one_of("names", "by-order")})),
                "a file name or {file, package, key_map}")
VAMP_BLOCK = Fields(values=anything)
# Every field a model entry may have, in one place (SCHEMA.md documents each).
MODEL_FIELDS: dict[str, Spec] = {
    "name": name, "source": AnyOf((name, ListOf(name, min_length=1)),
                                  "a name or a list of names"),
    "library": optional(one_of(*LIBRARIES)),
    "arch": optional(name), "input_size": positive_int,
    "flops": optional(Fields({"value": optional(non_negative),
                             "unit": optional(one_of("K", "M", "G", "B", "T"))})),
    "params_m": optional(positive_number), "published": optional(ACCURACY),
    "expected": optional(Fields(values=Fields(values=RUN, what="backend/precision -> {top1, top5}"),
                                what="dataset -> backend/precision -> {top1, top5}")),
    "preprocess": optional(PREPROCESS), "tolerance": optional(TOLERANCE),
    "weights": optional(WEIGHTS), "num_classes": one_of(1000, 1001),
    "batch_size": optional(positive_int), "format": one_of("state_dict", "torchscript"),
    "deploy": optional(one_of("reparameterize")), "precision": one_of(*NATIVE_PRECISIONS),
    "float_model": optional(string), "min_agreement": optional(percent),
    "onnx": optional(string), "vamp": optional(AnyOf((VAMP_BLOCK, ListOf(VAMP_BLOCK)),
                                                   "a mapping or a list of mappings")),
    "build": optional(string)}
REQUIRED_MODEL_FIELDS = ("name", "source", "library", "arch", "input_size")
MODEL = Fields(MODEL_FIELDS, REQUIRED_MODEL_FIELDS, what="mapping of model fields")
FAMILY = Fields({
    "family": name, "paper": optional(string), "readme": optional(string),
    "preprocess": PREPROCESS, "tolerance": optional(TOLERANCE),
    "deploy": optional(one_of("reparameterize")),
    "models": optional(Fields(values=MODEL, what="model key -> fields")),
    "extra_models": optional(Fields(values=MODEL, what="model key -> fields"))},
    required=("family", "preprocess", "models"), what="mapping with family, preprocess, models")


# -- the walk ---------------------------------------------------------------------------

def _line(node: Any, key: Any, default: int) -> int:
    lc = getattr(node, "lc", None)
    if lc is None:
        return default
    try:
        if isinstance(node, CommentedMap):
            return lc.key(key)[0] + 1
        if isinstance(node, CommentedSeq):
            return lc.item(key)[0] + 1
    except (KeyError, TypeError, IndexError):
        pass
    return lc.line + 1


def _top_check(spec: Spec, value: Any) -> str | None:
    """Whether `value` has the spec's shape at its top level (for AnyOf)."""
    if isinstance(spec, Fields):
        return None if isinstance(value, Mapping) else f"must be a {spec.what}"
    if isinstance(spec, ListOf):
        return None if isinstance(value, list) else "must be a list"
    if isinstance(spec, Maybe):
        return None if value is None else _top_check(spec.spec, value)
    if isinstance(spec, AnyOf):
        return None if any(_top_check(o, value) is None for o in spec.options) else spec.what
    return spec(value)


class SchemaError(Exception):
    """The first field that is wrong: where (its dotted path), what is wrong, and its line
    (1 where the data carries no lines, as JSON does)."""

    def __init__(self, where: str, problem: str, line: int = 1) -> None:
        super().__init__(f"{where} {problem}" if where else problem)
        self.where, self.problem, self.line = where, problem, line


def _fail(where: str, problem: str, line: int) -> None:
    raise SchemaError(where, problem, line)


def key_text(key: Any) -> str:
    """A mapping key as it appears in a field's path, its control characters escaped."""
    return printable(str(key))


def check(value: Any, spec: Spec, where: str = "", line: int = 1) -> None:
    """Walk `value` along `spec`; raise SchemaError at the first field that is not valid."""
    if isinstance(spec, Maybe):
        if value is not None:
            check(value, spec.spec, where, line)
    elif isinstance(spec, AnyOf):
        chosen = next((o for o in spec.options if _top_check(o, value) is None), None)
        if chosen is None:
            _fail(where, f"must be {spec.what}", line)
        check(value, chosen, where, line)
    elif isinstance(spec, ListOf):
        if not isinstance(value, list):
            _fail(where, f"must be a list{f' of {spec.length} values' if spec.length else ''}"
                  f", got {_show(value)}", line)
        if (spec.length is not None and len(value) != spec.length) or len(value) < spec.min_length:
            _fail(where, f"must have {spec.length or f'at least {spec.min_length}'} values, "
                  f"has {len(value)}", line)
        for i, item in enumerate(value):
            check(item, spec.item, f"{where}[{i}]", _line(value, i, line))
    elif isinstance(spec, Fields):
        if not isinstance(value, Mapping):
            _fail(where, f"must be a {spec.what}, got {_show(value)}", line)
        own = value.lc.line + 1 if isinstance(value, CommentedMap) else line
        missing = [k for k in spec.required if k not in value]
        if missing:
            _fail(where, f"is missing field(s) {', '.join(missing)} (required: "
                  f"{', '.join(spec.required)})", own)
        for key, item in value.items():
            at = _line(value, key, line)
            name = f"{where}.{key_text(key)}" if where else key_text(key)
            if spec.values is not None and not spec.fields:
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    _fail(name, "is not a valid key (use a plain name)", at)
                if isinstance(key, str) and control_characters(key):
                    _fail(name, "is not a valid key: it holds control characters (an escape "
                          "sequence?)", at)
                check(item, spec.values, name, at)
                continue
            if key not in spec.fields:
                if spec.open:
                    continue
                close = difflib.get_close_matches(str(key), list(spec.fields), n=1, cutoff=0.5)
                hint = f"did you mean `{close[0]}`? " if close else ""
                _fail(name, f"is not a known key: {hint}known keys: {', '.join(spec.fields)}", at)
            check(item, spec.fields[key], name, at)
    else:
        problem = spec(value)
        if problem:
            _fail(where, f"{problem}, got {_show(value)}", line)


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def validate(data: Any, path: Path, registry: bool = True) -> None:
    """Raise a BaselineError with file:line at the first field of `data` that is not valid;
    with `registry`, a run a registered backend cannot make is one too (a writer that reads
    its text back leaves that to the next run, which may register more backends)."""
    try:
        check(data, FAMILY)
        runs_known: dict[str, tuple[str, ...] | None] | None = None
        for section in ("models", "extra_models"):
            for key, model in (data.get(section) or {}).items():
                names = [str(d) for d in model.get("expected") or {}]
                twice = sorted({d for d in names if names.count(d) > 1})
                if twice:
                    _fail(f"{section}.{key_text(key)}.expected", f"names dataset {twice[0]!r} twice "
                          "(once as a number, once as a string?): keep one", _line(model, "expected", 1))
                for dataset, runs in (model.get("expected") or {}).items():
                    for run, entry in (runs or {}).items():
                        runs_known = known_runs() if runs_known is None and registry else runs_known
                        _check_run(entry, str(run), f"{section}.{key_text(key)}.expected."
                                   f"{key_text(dataset)}.{key_text(run)}", _line(runs, run, 1),
                                   runs_known)
    except SchemaError as exc:
        raise BaselineError(f"{exc.where or 'the file'} {exc.problem}", path, exc.line) from None


def known_runs() -> dict[str, tuple[str, ...] | None]:
    """Each registered backend's precisions (None: its libraries are not installed here, so
    its precisions are not known and any is taken)."""
    from .backends import available, get_backend  # the registry imports this module's users

    found: dict[str, tuple[str, ...] | None] = {}
    for name in sorted(available()):
        try:
            found[name] = tuple(get_backend(name).precisions)
        except Exception:  # noqa: BLE001 - a backend that cannot be imported here
            found[name] = None
    return found


def _check_run(entry: Mapping[str, Any], run: str, where: str, line: int,
               known: Mapping[str, tuple[str, ...] | None] | None) -> None:
    """A run entry must say what to gate: a registered backend and one of its precisions
    (with a `+variant`; not checked without `known`), and top1 or top5 (unless broken)."""
    if run.count("/") != 1:
        _fail(where, "is not a backend/precision run name (e.g. reference/fp32)", line)
    backend, precision = run.split("/")
    base, plus, variant = precision.partition("+")
    precisions = known.get(backend, ()) if known is not None else None
    if known is not None and (backend not in known or
                              (precisions is not None and base not in precisions)):
        valid = [f"{b}/{p}" for b, ps in known.items() for p in ps or ()]
        close = difflib.get_close_matches(f"{backend}/{base}", valid, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}{plus}{variant}? " if close else ""
        what = (f"backend {backend!r} has no precision {base!r}" if backend in known else
                f"{backend!r} is not a backend")
        _fail(where, f"names no run a test can make ({what}): {hint}backends: "
              f"{', '.join(known)}", line)
    if entry.get("top1") is None and entry.get("top5") is None and not entry.get("broken"):
        _fail(where, "has neither top1 nor top5: nothing to gate", line)
