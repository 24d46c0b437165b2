"""Write the README-derived fields into a baseline file (new, or read with ruamel), keeping
everything else: `expected`, `extra_models`, extra per-model fields, comments. Keys are
matched up to case, so a README that spells a name differently updates the entry it has."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.nodes import ScalarNode

from ..baselines import (DEFAULT_TOLERANCE, MODEL_SECTIONS, _line, _yaml, atomic_write, parse_family,
                         read_yaml)
from ..errors import BaselineError, VaccbenchError, printable
from ..safefiles import safe_name
from .mapping import ImportedModel, LibraryDefaults, family_preprocess, map_models
from .names import ArchCheck, installed_arch
from .readme import Readme, read_readme
from .tables import Problem
from .transforms import Value, library_defaults

COMMENT_COLUMN = 38


@dataclass
class ImportResult:
    path: Path
    family: str
    created: bool
    models: list[str]  # keys of the README rows, in table order
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # "key.field: old -> new"
    kept: list[str] = field(default_factory=list)  # keys in the file that are no README row
    no_arch: list[str] = field(default_factory=list)  # README rows nothing here builds
    problems: list[Problem] = field(default_factory=list)


def one_line(text: str) -> str:
    """A comment as YAML can hold it: one line (a README's call may span several), printable."""
    return printable(" ".join(text.split()))


def _node(value: Any) -> Any:
    """A plain value -> what ruamel writes back as the README wrote it (327.650 stays 327.650).
    Mappings of Values (a preprocess block) become block mappings with a comment per key."""
    if isinstance(value, Value):
        return _node(value.value)
    if isinstance(value, Decimal):
        return _number(str(value))
    if isinstance(value, dict) and value and all(isinstance(v, Value) for v in value.values()):
        node = CommentedMap((k, _node(v)) for k, v in value.items())
        for key, item in value.items():
            node.yaml_add_eol_comment(one_line(item.source), key, column=COMMENT_COLUMN)
        return node
    if isinstance(value, dict):
        node = CommentedMap((k, _node(v)) for k, v in value.items())
        node.fa.set_flow_style()
        return node
    if isinstance(value, list):
        seq = CommentedSeq(_node(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    return value


@lru_cache(maxsize=1)
def _constructor() -> Any:
    return _yaml().constructor


def _number(text: str) -> Any:
    """A README number (digits, maybe a decimal point) as ruamel reads it back, so that it is
    written as the README wrote it (327.650 stays 327.650); made by ruamel's own constructor
    without parsing a document per number (most of the time of a large import)."""
    if "." not in text:
        return int(text)
    return _constructor().construct_yaml_float(ScalarNode("tag:yaml.org,2002:float", text))


def _same(old: Any, new: Any) -> bool:
    """Equal as data: 3.5 == 3.500, a quoted string == the plain one."""
    if isinstance(new, Value):
        new = new.value
    if new is None:
        return old is None
    if isinstance(new, dict):
        return (isinstance(old, Mapping) and set(old) == set(new)
                and all(_same(old[k], v) for k, v in new.items()))
    if isinstance(new, list):
        return isinstance(old, list) and len(old) == len(new) and all(map(_same, old, new))
    if isinstance(new, (Decimal, float, int)):
        return isinstance(old, (int, float)) and not isinstance(old, bool) and float(old) == float(new)
    return isinstance(old, str) and str(old) == new


def _show(value: Any) -> str:
    if isinstance(value, Value):
        value = value.value
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _update(target: CommentedMap, fields: Mapping[str, Any], where: str, changed: list[str]) -> None:
    """Set `fields` in `target` in place: an equal value is left untouched (its formatting and
    comment kept), a mapping is updated key by key, a missing key is inserted after the field
    before it; a Value's source becomes the comment of what it inserts or changes (unless it
    has one). Keys of
    `target` not in `fields` are kept."""
    previous = None
    for key, value in fields.items():
        if key not in target:
            position = list(target).index(previous) + 1 if previous is not None else 0
            target.insert(position, key, _node(value))
            changed.append(f"{where}{key}: (absent) -> {_show(value)}")
        elif isinstance(value, dict) and isinstance(target[key], CommentedMap) and value:
            _update(target[key], value, f"{where}{key}.", changed)
        elif not _same(target[key], value):
            changed.append(f"{where}{key}: {_show(target[key])} -> {_show(value)}")
            target[key] = _node(value)
        else:
            previous = key
            continue
        if isinstance(value, Value) and key not in target.ca.items:  # a comment by hand is kept
            target.yaml_add_eol_comment(one_line(value.source), key, column=COMMENT_COLUMN)
        previous = key


def _new_model(model: ImportedModel) -> CommentedMap:
    entry = CommentedMap((k, _node(v)) for k, v in model.fields.items())
    entry["expected"] = CommentedMap()
    if model.note:
        entry.yaml_add_eol_comment(one_line(model.note), "arch", column=COMMENT_COLUMN)
    return entry


def _skeleton(readme: Readme, family: str) -> CommentedMap:
    data = CommentedMap()
    data["family"] = None
    data["paper"] = ""
    data["readme"] = str(readme.path)
    data["preprocess"] = CommentedMap()
    data["tolerance"] = _node(dict(DEFAULT_TOLERANCE))
    data["models"] = CommentedMap()
    data["extra_models"] = CommentedMap()
    data.yaml_set_start_comment(
        f"{one_line(readme.title or family)} baselines, imported from {one_line(readme.path.name)} by "
        "`vaccbench import-readme`.\n"
        "Re-running it rewrites the README-derived fields; `expected`, `extra_models` and the\n"
        "fields added by hand (weights, tolerance, preprocess overrides, ...) are kept.\n"
        "The comment on a preprocess value says where it came from.")
    return data


class _Entries:
    """Where each model key of the file is (section, the file's spelling), matched up to
    case; kept up to date as models are added (one lookup per README row, not a scan)."""

    def __init__(self, data: CommentedMap) -> None:
        self.where: dict[str, tuple[str, str]] = {}
        for section in reversed(MODEL_SECTIONS):  # `models` wins over `extra_models`
            for key in data.get(section) or {}:
                self.where[str(key).casefold()] = (section, str(key))

    def find(self, key: str) -> tuple[str, str] | None:
        return self.where.get(key.casefold())

    def add(self, section: str, key: str) -> None:
        self.where.setdefault(key.casefold(), (section, key))


def _check_preprocess(data: CommentedMap, readme: Readme, models: list[ImportedModel],
                      result: ImportResult) -> None:
    """Refuse rows whose preprocessing nothing determines, unless the file already has it."""
    missing = []
    entries = _Entries(data)
    for model in models:
        if model.preprocess is not None:
            continue
        found = entries.find(model.key)
        entry = data[found[0]][found[1]] if found else None
        if isinstance(entry, Mapping) and entry.get("preprocess"):
            result.problems.append(Problem(model.line, f"{model.key}: its `preprocess` in "
                                                       f"{result.path} is kept"))
        elif data.get("preprocess") and not readme.recipe.steps and not readme.recipe.prose:
            result.problems.append(Problem(model.line, f"{model.key}: the README states no "
                                                       "preprocessing: the family `preprocess` is kept"))
        else:
            missing.append(f"{model.key} (line {model.line}): {model.undetermined}")
    if missing:
        raise VaccbenchError("the preprocessing of these rows is not determined by the README, the "
                             "table or the source library's defaults:\n  " + "\n  ".join(missing)
                             + f"\nwrite it by hand (`preprocess` of the family or of the model in "
                             f"{result.path}), then import again", readme.path)


def merge_baseline(data: CommentedMap, family: str, readme: Readme, models: list[ImportedModel],
                   result: ImportResult) -> None:
    """Write the README-derived family and model fields into a baseline mapping, in place."""
    family_fields: dict[str, Any] = {"family": family}
    if readme.paper:
        family_fields["paper"] = readme.paper
    else:
        result.problems.append(Problem(None, "no paper title found (a line '<name>: <title>' before the "
                                             "first section): `paper` " + ("left empty, fill it in by hand"
                                                                           if result.created else "kept")))
    _update(data, family_fields, "", result.changed)
    for section in ("preprocess", "models"):
        if data.get(section) is None:
            position = len(family_fields) if section == "preprocess" else len(data)
            data.insert(position, section, CommentedMap())
        if not isinstance(data[section], CommentedMap):
            raise VaccbenchError(f"`{section}` must be a mapping", result.path, _line(data, section))
    _check_preprocess(data, readme, models, result)
    preprocess = family_preprocess(models)
    if preprocess is not None:
        _update(data["preprocess"], dict(preprocess), "preprocess.", result.changed)
    previous = None
    entries = _Entries(data)
    for number, model in enumerate(models):
        found = entries.find(model.key)
        if found is None:
            target = data["models"]
            if previous is not None and previous == next(reversed(target), None):
                target[model.key] = _new_model(model)  # at the end: no insert, which copies the map
            else:
                position = list(target).index(previous) + 1 if previous in target else 0
                target.insert(position, model.key, _new_model(model))
            entries.add("models", model.key)
            result.added.append(model.key)
            previous = model.key
            continue
        section, key = found
        entry = data[section][key]
        if not isinstance(entry, CommentedMap):
            raise VaccbenchError(f"{section}.{key} must be a mapping of fields", result.path,
                                 _line(data[section], key))
        if section != "models":
            result.problems.append(Problem(model.line, f"{key} is a README row but sits in {section}; "
                                                       "updated there"))
        if key != model.key:
            result.problems.append(Problem(model.line, f"{model.key} is {section}.{key} of "
                                                       f"{result.path} (keys match up to case): updated"))
        result.models[number] = key
        _update(entry, model.fields, f"{key}.", result.changed)
        previous = key
    rows = set(result.models)
    for key in data["models"]:
        if key not in rows:
            result.kept.append(key)
            result.problems.append(Problem(_line(data["models"], key),
                                           f"models.{key} is no row of the README: kept (delete it "
                                           "or move it to extra_models by hand)", str(result.path)))


def family_name(readme: Readme, family: str | None, out: Path | None) -> str:
    """--family, else the output file's name, else the README's title (lower-cased)."""
    if family is not None and safe_name(family) != family:
        raise VaccbenchError(f"--family {printable(family)!r} is not a plain name (letters, digits "
                             "and ._+=-, not starting with a dot, no `..`): a family's name is the "
                             "name of its baseline file")
    if family and out is not None and out.stem != family:
        raise VaccbenchError(f"--family {family} does not match the output file name {out.name} "
                             "(a baseline's family is its file name)", out)
    if family:
        return family
    if out is not None:
        return out.stem
    if readme.title:
        return re.sub(r"[^0-9a-z]+", "_", readme.title.lower()).strip("_")
    raise VaccbenchError("no title line to name the family from: give --family NAME or -o FILE",
                         readme.path)


def import_readme(readme_path: Path | str, out: Path | str | None = None, family: str | None = None,
                  check: ArchCheck = installed_arch, baselines_dir: Path | str = "baselines",
                  defaults: LibraryDefaults = library_defaults) -> ImportResult:
    """Write (or update) the baseline file of the family a README describes."""
    readme = read_readme(readme_path)
    out_path = Path(out) if out is not None else None
    name = family_name(readme, family, out_path)
    out_path = out_path or Path(baselines_dir) / f"{name}.yaml"
    models, mapping_problems = map_models(readme, check, defaults)
    result = ImportResult(out_path, name, not out_path.exists(), [m.key for m in models],
                          no_arch=[m.key for m in models if m.fields["arch"] is None],
                          problems=readme.problems + mapping_problems)
    data = _skeleton(readme, name) if result.created else read_yaml(out_path)
    if not isinstance(data, CommentedMap):
        raise VaccbenchError("a baseline file must be a mapping with family, preprocess, models", out_path)
    merge_baseline(data, name, readme, models, result)
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    try:  # what the plugin will read, read back before it replaces anything
        parse_family(buffer.getvalue(), out_path)
    except BaselineError as exc:
        raise VaccbenchError(f"the baseline this import made does not load ({exc}); nothing was "
                             f"written. This is a bug of the importer: please report it with "
                             f"{readme.path}", out_path) from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, buffer.getvalue())
    return result
