"""The README's evaluation preprocessing -> one PreprocessSpec per table row, with provenance.

A README states its recipe as a `torchvision.transforms` list (literal values, or variables
such as `Resize(scale_size)`, `CenterCrop(input_size)`, `Normalize(mean, std)` whose values
are given elsewhere in the text), or in words only ("resize至256 ... crop出224"). `read_recipe`
keeps what the text says; `derive` completes it for one row from, in this order: the
README (literal steps, values assigned in the text, crop_pct in prose), the row's input size
from the table, and the source library's own defaults (timm's pretrained config for a timm
row: crop_pct, interpolation, mean, std; the transform of the torchvision weights whose
acc@1 is the row's top1, for a torchvision row). Every value carries where it came from; a value
nothing determines is reported, never guessed.
"""

from __future__ import annotations

import ast
import bisect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..preprocess import INTERPOLATIONS, PreprocessSpec
from .tables import Problem

_TRANSFORM = re.compile(r"\b(?:torchvision\.)?(?:transforms|T)\.(\w+)\s*\(")
_PIL_CODES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_IGNORED_TRANSFORMS = {"ToTensor", "PILToTensor", "ConvertImageDtype", "Compose"}
# Variables that stand for the row's input size (the table's input size column).
SIZE_NAMES = {"input_size", "img_size", "imgsize", "image_size", "size", "crop_size", "resolution",
              "test_size", "input_shape"}
# `name = value` / `name: value` in the text (code blocks, config snippets, prose).
_ASSIGNMENT = re.compile(r"\b([A-Za-z_]\w*)\s*[=:]\s*(\[[^\]\n]*\]|\([^)\n]*\)|\d+(?:\.\d+)?)")
_CROP_PCT = re.compile(r"crop[_ ]?(?:pct|ratio)\s*(?:[=:：]|is|为|of)?\s*(0?\.\d+|1\.0)\b", re.I)
_PROSE_RESIZE = re.compile(r"resize\s*(?:至|到|to|成)\s*(\d{2,4})", re.I)
_PROSE_CROP = re.compile(r"crop\s*(?:出|至|到|to|of|成)\s*(\d{2,4})", re.I)
_PROSE_INTERPOLATION = re.compile(r"(?<![A-Za-z])(bicubic|bilinear|lanczos|nearest)(?![A-Za-z_])", re.I)


@dataclass(frozen=True)
class Value:
    """One preprocessing value and where it came from (the YAML comment)."""

    value: Any
    source: str


@dataclass
class Recipe:
    """What the README says about the evaluation preprocessing, before a row's size is known.

    `steps` maps resize | crop | normalize | interpolation to (the call's argument nodes, the
    line, the call as written); `names` holds the values the text assigns to variables."""

    steps: dict[str, tuple[tuple[ast.expr | None, ...], int, str]] = field(default_factory=dict)
    names: dict[str, Value] = field(default_factory=dict)
    prose: dict[str, Value] = field(default_factory=dict)  # resize/crop/interpolation in words
    listed: bool = False  # a transforms list was found


class Undetermined(Exception):
    """A value neither the README, the row nor the library determines."""


CALL_CHARS = 2000  # a transform call's arguments end within this many characters


_BRACKET = re.compile(r"[(\[{)\]}]")


def _call_args(text: str, open_paren: int) -> str | None:
    """`(...)` from `open_paren` to its closing bracket, within CALL_CHARS characters."""
    depth = 0
    for match in _BRACKET.finditer(text, open_paren, open_paren + CALL_CHARS):
        depth += 1 if match.group() in "([{" else -1
        if depth == 0:
            return text[open_paren:match.end()]
    return None


def _interpolation(node: ast.expr) -> str:
    """InterpolationMode.BICUBIC, Image.BICUBIC, BICUBIC, 3 or 'bicubic' -> 'bicubic'."""
    if isinstance(node, ast.Attribute):
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    else:
        value = _evaluate(node, {})
        name = _PIL_CODES.get(value, str(value)) if isinstance(value, int) else str(value)
    name = name.lower()
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation {name!r} is not one of {INTERPOLATIONS}")
    return name


_FUNCTIONS = {"int": int, "round": round, "floor": math.floor, "ceil": math.ceil, "float": float}
_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b}


def _evaluate(node: ast.expr, names: Mapping[str, Any]) -> Any:
    """A size or mean/std expression: numbers, strings, lists, names bound in `names`,
    + - * / //, int/round/floor/ceil. Nothing else is evaluated (the text is not trusted)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise Undetermined(node.id)
        return names[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [_evaluate(e, names) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, names)
    try:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](_evaluate(node.left, names), _evaluate(node.right, names))
        if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in _FUNCTIONS:
                return _FUNCTIONS[func](_evaluate(node.args[0], names))
    except (ArithmeticError, TypeError) as exc:
        raise ValueError(f"{ast.unparse(node)}: {exc}") from None
    raise ValueError(f"{ast.unparse(node)} is not a value the importer evaluates")


def _channels(value: Value) -> Value:
    """mean or std: three numbers."""
    items = value.value
    if not isinstance(items, (list, tuple)) or len(items) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{items!r} ({value.source}) is not three numbers")
    return Value([float(v) for v in items], value.source)


class _Lines:
    """Line numbers of positions in a text, by bisection over its line starts (counting the
    newlines before every match would take time quadratic in the README's size)."""

    def __init__(self, text: str) -> None:
        self.starts = [m.end() for m in re.finditer("\n", text)]

    def __call__(self, position: int) -> int:
        return bisect.bisect_right(self.starts, position) + 1


def read_recipe(text: str) -> tuple[Recipe, list[Problem]]:
    """The transforms list (values or variables), the values the text assigns, and the recipe
    in words. A step that appears twice keeps its first value."""
    recipe, problems = Recipe(), []
    line_of = _Lines(text)
    for match in _TRANSFORM.finditer(text):
        line, name = line_of(match.start()), match.group(1)
        recipe.listed = True
        if name in _IGNORED_TRANSFORMS:
            continue
        args_src = _call_args(text, match.end() - 1) or "("
        written = " ".join(f"{name}{args_src}".split())  # a call written over several lines
        try:
            call = ast.parse(f"f{args_src}", mode="eval").body
        except SyntaxError:
            problems.append(Problem(line, f"cannot read transforms.{written[:60]}: unbalanced "
                                          "parentheses; ignored"))
            continue
        assert isinstance(call, ast.Call)
        args, kwargs = list(call.args), {k.arg: k.value for k in call.keywords}
        if name == "Resize":
            step = "resize", (kwargs.get("size") or (args[0] if args else None),
                              kwargs.get("interpolation") or (args[1] if len(args) > 1 else None))
        elif name == "CenterCrop" or ("Crop" in name and not name.startswith("Random")):
            if name != "CenterCrop":
                problems.append(Problem(line, f"transforms.{name} is no torchvision transform: read "
                                              "as a centre crop of the row's input size"))
            step = "crop", (kwargs.get("size") or (args[0] if args else None),)
        elif name == "Normalize":
            step = "normalize", (kwargs.get("mean") or (args[0] if args else None),
                                 kwargs.get("std") or (args[1] if len(args) > 1 else None))
        else:
            problems.append(Problem(line, f"transforms.{name} is not a step of the evaluation "
                                          "preprocessing this importer knows; ignored"))
            continue
        if step[0] in recipe.steps:
            problems.append(Problem(line, f"a second transforms.{name}; the one at line "
                                          f"{recipe.steps[step[0]][1]} is used"))
            continue
        recipe.steps[step[0]] = (step[1], line, written)
    for match in _ASSIGNMENT.finditer(text):
        name = match.group(1)
        if name in SIZE_NAMES or name in recipe.names:
            continue  # the row's size comes from the table
        try:
            value = ast.literal_eval(match.group(2))
        except (ValueError, SyntaxError):
            continue
        recipe.names[name] = Value(value, f"{name} = {match.group(2)} in the README "
                                          f"(line {line_of(match.start())})")
    pct = _CROP_PCT.search(text)
    if pct and "crop_pct" not in recipe.names:
        recipe.names["crop_pct"] = Value(float(pct.group(1)), f"crop_pct {pct.group(1)} in the README "
                                                              f"(line {line_of(pct.start())})")
    for key, pattern in (("resize", _PROSE_RESIZE), ("crop", _PROSE_CROP),
                         ("interpolation", _PROSE_INTERPOLATION)):
        found = pattern.search(text)
        if found:
            value = found.group(1).lower() if key == "interpolation" else int(found.group(1))
            recipe.prose[key] = Value(value, f"the README text (line {line_of(found.start())}): "
                                             f"{found.group(0)!r}")
    return recipe, problems


# --- library defaults --------------------------------------------------------------------------


def timm_defaults(arch: str, size: int | None) -> dict[str, Value] | None:
    """timm's pretrained config of `arch` (no download): crop_pct (test_crop_pct when the row's
    size is the config's test size), crop_mode, interpolation, mean, std. None without timm or
    without a config for that architecture."""
    try:
        import timm.models
    except ImportError:
        return None
    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        return None
    where = f"timm pretrained_cfg of {arch}"
    test = cfg.test_input_size is not None and tuple(cfg.test_input_size[1:]) == (size, size)
    crop_pct = cfg.test_crop_pct if test and cfg.test_crop_pct else cfg.crop_pct
    return {"crop_pct": Value(crop_pct, f"{where}: {'test_' if test else ''}crop_pct {crop_pct}"),
            "crop_mode": Value(cfg.crop_mode or "center", f"{where}: crop_mode {cfg.crop_mode}"),
            "interpolation": Value(cfg.interpolation, where),
            "mean": Value([float(v) for v in cfg.mean], where),
            "std": Value([float(v) for v in cfg.std], where)}


def torchvision_defaults(arch: str, size: int | None, top1: float | None) -> dict[str, Value] | None:
    """The evaluation transform of the torchvision weights whose ImageNet acc@1 is the README's
    top1 (within 0.5 points; `arch` has several: IMAGENET1K_V1, _V2 ...): resize and crop sizes,
    interpolation, mean, std. None without torchvision, or without such weights."""
    try:
        from torchvision.models import get_model_weights
    except ImportError:
        return None
    try:
        weights = list(get_model_weights(arch))
    except (KeyError, ValueError):
        return None
    scored = [(abs(w.meta["_metrics"]["ImageNet-1K"]["acc@1"] - top1), w) for w in weights
              if top1 is not None and "ImageNet-1K" in w.meta.get("_metrics", {})]
    if not scored or min(scored, key=lambda s: s[0])[0] > 0.5:
        return None
    chosen = min(scored, key=lambda s: s[0])[1]
    transform = chosen.transforms()
    accuracy = chosen.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    where = f"torchvision {type(chosen).__name__}.{chosen.name} (acc@1 {accuracy})"
    return {"resize": Value(int(transform.resize_size[0]), where),
            "crop": Value(int(transform.crop_size[0]), where),
            "crop_mode": Value("center", where),
            "interpolation": Value(transform.interpolation.value, where),
            "mean": Value([float(v) for v in transform.mean], where),
            "std": Value([float(v) for v in transform.std], where)}


def library_defaults(library: str, arch: str, size: int | None,
                     top1: float | None) -> dict[str, Value] | None:
    """The source library's own evaluation recipe for a row (timm or torchvision), else None."""
    if library == "timm":
        return timm_defaults(arch, size)
    if library == "torchvision":
        return torchvision_defaults(arch, size, top1)
    return None


# --- one row ------------------------------------------------------------------------------------


def _square(value: Any, what: str) -> tuple[int, str]:
    """A Resize/CenterCrop size -> (n, resize mode): an int, [n] or (n, n)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value), "short-side"
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return int(value[0]), "short-side"  # torchvision: Resize([n]) is short-side
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        return int(value[0]), "square"
    raise ValueError(f"{what} {value!r}: only a square size is supported")


def _mean_std(recipe: Recipe, names: Mapping[str, Any],
              library: Mapping[str, Value] | None) -> tuple[Value, Value]:
    step = recipe.steps.get("normalize")
    if step is not None and None not in step[0]:
        (mean_node, std_node), line, written = step
        try:
            mean, std = _evaluate(mean_node, names), _evaluate(std_node, names)
        except Undetermined:
            pass  # Normalize(mean, std) with the values nowhere in the text: the library's
        else:
            named = isinstance(mean_node, ast.Name) and mean_node.id in recipe.names
            where = recipe.names[mean_node.id].source if named else f"{written} (line {line})"
            return _channels(Value(mean, where)), _channels(Value(std, where))
    if "mean" in recipe.names and "std" in recipe.names:
        return _channels(recipe.names["mean"]), _channels(recipe.names["std"])
    if library is not None:
        return library["mean"], library["std"]
    raise Undetermined("mean/std (no Normalize values in the README, no library defaults for this row)")


def derive(recipe: Recipe, size: int | None, library: Mapping[str, Value] | None = None,
           crop_pct: Value | None = None) -> dict[str, Value]:
    """The preprocessing of one row of input size `size` (and crop_pct, where the table has a
    column for it): PreprocessSpec keys -> Value. Raises Undetermined naming the value nothing
    determines."""
    names: dict[str, Any] = {n: v.value for n, v in recipe.names.items()}
    out: dict[str, Value] = {}
    resize_step, crop_step = recipe.steps.get("resize"), recipe.steps.get("crop")
    resize_node, interp_node = resize_step[0] if resize_step else (None, None)
    crop_pct = crop_pct or recipe.names.get("crop_pct") or (library or {}).get("crop_pct")

    # the crop: the row's input size wherever the README crops (or says nothing of a crop)
    literal_crop, where = None, "the table's input size"
    if crop_step is not None:
        (node,), line, written = crop_step
        if node is not None and not any(isinstance(n, ast.Name) for n in ast.walk(node)):
            literal_crop = _square(_evaluate(node, {}), "CenterCrop size")[0]
            where = f"{written} (line {line})"
        else:
            where = f"{written} (line {line}): the table's input size"
    elif "crop" in recipe.prose and not recipe.listed:
        literal_crop, where = recipe.prose["crop"].value, recipe.prose["crop"].source
    if size is None:
        size = literal_crop
    if size is None:
        raise Undetermined("the input size (no input size column, no crop in the README)")
    names.update({n: size for n in SIZE_NAMES})
    crops = crop_step is not None or (not recipe.listed and ("crop" in recipe.prose or crop_pct
                                                              or "crop" in (library or {})))
    if crops:
        out["crop"] = Value(size, where if literal_crop in (None, size) else
                            f"the table's input size (the README's {literal_crop} is another row's)")

    # the resize
    literal_resize = None
    if resize_node is not None:
        _, line, written = resize_step
        try:
            value, mode = _square(_evaluate(resize_node, names), "Resize size")
            variable = any(isinstance(n, ast.Name) for n in ast.walk(resize_node))
            out["resize"] = Value(value, f"{written} (line {line})" + (" at the table's input size"
                                                                       if variable else ""))
            out["resize_mode"] = Value(mode, f"{written}: {'(h, w)' if mode == 'square' else 'an int'}")
            literal_resize = None if variable else value
        except Undetermined:
            pass  # e.g. Resize(scale_size) without scale_size in the text: crop_pct below
    elif "resize" in recipe.prose and not recipe.listed:
        literal_resize = recipe.prose["resize"].value
        out["resize"] = recipe.prose["resize"]
        out["resize_mode"] = Value("short-side", "the README text names one size")
    if literal_resize is not None and literal_crop is not None and literal_crop != size:
        value = math.floor(size * literal_resize / literal_crop)
        out["resize"] = Value(value, f"floor({size} * {literal_resize} / {literal_crop}): the README's "
                                     "resize/crop ratio at the table's input size")
    if "resize" not in out and crop_pct is None and library is not None and "resize" in library:
        resize, crop = library["resize"].value, library["crop"].value  # sizes, not a ratio
        value = resize if size == crop else math.floor(size * resize / crop)
        out["resize"] = Value(value, library["resize"].source + ("" if size == crop else
                                                                 f": floor({size} * {resize} / {crop})"))
        out["resize_mode"] = Value("short-side", library["resize"].source)
    if "resize" not in out:
        if crop_pct is None:
            raise Undetermined("the resize (no literal Resize size, no crop_pct in the README or "
                               "the library's defaults)")
        mode = library["crop_mode"] if library else Value("center", "crop_pct: short side, then centre crop")
        if mode.value not in ("center", "squash"):
            raise Undetermined(f"the geometry ({mode.source}: only center and squash are emulated)")
        if not 0 < crop_pct.value <= 1:
            raise ValueError(f"crop_pct {crop_pct.value} ({crop_pct.source}) is not in (0, 1]")
        value = math.floor(size / crop_pct.value)
        out["resize"] = Value(value, f"floor({size} / crop_pct {crop_pct.value}), {crop_pct.source}")
        out["resize_mode"] = Value("square" if mode.value == "squash" else "short-side", mode.source)
    if crops and out["resize"].value < size:
        raise ValueError(f"the resize to {out['resize'].value} ({out['resize'].source}) is smaller than "
                         f"the row's {size} crop")
    if not crops:
        out["crop"] = Value(None, "no crop in the README's transforms list")
        if out["resize"].value != size:
            raise Undetermined(f"the crop (the README resizes to {out['resize'].value} and does not "
                               f"crop, the table says {size})")

    # interpolation
    if interp_node is not None:
        _, line, written = resize_step
        out["interpolation"] = Value(_interpolation(interp_node), f"{written} (line {line})")
    elif resize_step is not None:
        out["interpolation"] = Value("bilinear", "torchvision's default for Resize")
    elif library is not None:
        out["interpolation"] = library["interpolation"]
    elif "interpolation" in recipe.prose:
        out["interpolation"] = recipe.prose["interpolation"]
    else:
        raise Undetermined("the interpolation (no Resize call, no library defaults for this row)")

    mean, std = _mean_std(recipe, names, library)
    out["library"] = Value("pil", "torchvision/timm evaluate on PIL images")
    out["mean"], out["std"] = mean, std
    if max(mean.value) > 1.0:  # 0-255 units: the pixels are not divided by 255 first
        out["pixel_scale"] = Value(1.0, "mean/std are on the 0-255 scale")
    order = ("resize", "resize_mode", "crop", "interpolation", "library", "mean", "std", "pixel_scale")
    return {key: out[key] for key in order if key in out}


def spec_of(values: Mapping[str, Value]) -> PreprocessSpec:
    return PreprocessSpec.from_mapping({k: v.value for k, v in values.items()})


def parse_transforms(text: str) -> tuple[PreprocessSpec | None, list[Problem]]:
    """A transforms list with literal values -> its PreprocessSpec (None when a value needs a
    row's size or is not in the list), and the problems found reading it."""
    recipe, problems = read_recipe(text)
    if not recipe.steps:
        return None, problems
    literal = Recipe(recipe.steps, {}, {}, recipe.listed)
    try:
        size = None  # without a crop, the output is the resize
        if "crop" not in recipe.steps and recipe.steps.get("resize", ((None,),))[0][0] is not None:
            size = _square(_evaluate(recipe.steps["resize"][0][0], {}), "Resize size")[0]
        return spec_of(derive(literal, size)), problems
    except (Undetermined, ValueError) as exc:
        if isinstance(exc, ValueError):
            problems.append(Problem(min(s[1] for s in recipe.steps.values()), f"{exc}; the transforms "
                                                                              "list is not imported"))
        return None, sorted(problems, key=lambda p: p.line or 0)
