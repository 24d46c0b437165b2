"""Baselines: one YAML file per model family (see baselines/SCHEMA.md) -> ModelEntry objects.

Files are read with ruamel.yaml so that errors carry line numbers and so that
`--update-baselines` can rewrite a file keeping its comments, key order and layout.
"""

from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Tuple

from filelock import FileLock, Timeout

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from .baseline_schema import validate
from .errors import BaselineError, VaccbenchError, printable
from .preprocess import PreprocessSpec
from .safefiles import atomic_write

DEFAULT_TOLERANCE = {"top1": 0.5, "top5": 0.5}
MODEL_SECTIONS = ("models", "extra_models")


@dataclass(frozen=True)
class Tolerance:
    top1: float
    top5: float


@dataclass(frozen=True)
class WeightsSpec:
    """Where a model's weights come from; None fields fall back to the naming rule."""

    file: str | None = None  # a file name in --weights-dir, or an absolute path
    package: str | None = None  # an installed Python package that ships the file
    key_map: str = "names"  # names | by-order (tensors in order, names ignored)


@dataclass(frozen=True)
class ModelEntry:
    family: str
    key: str  # <source>-<name>: unique in the family, part of the test id
    name: str
    sources: tuple[str, ...]
    library: str | None
    arch: str | None
    input_size: int
    preprocess: PreprocessSpec
    tolerance: Tolerance
    baseline_path: Path
    line: int
    section: str = "models"
    weights: WeightsSpec = field(default_factory=WeightsSpec)
    num_classes: int = 1000
    batch_size: int | None = None
    deploy: str | None = None  # "reparameterize": evaluate timm's fused deploy form
    precision: str = "fp32"  # the precision the weights are stored in: int8 = already quantized
    float_model: str | None = None  # key of the same network in float, for paired comparisons
    min_agreement: float | None = None  # % top-1 agreement with fp32 a non-fp32 build must keep
    onnx: str | None = None  # a ready ONNX graph (onnxruntime backend): absolute or in --onnx-dir
    published: Mapping[str, Any] | None = None
    vamp: Any = None  # where the compiled model is: read by backends/vamp.py
    expected: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    @property
    def test_name(self) -> str:
        return f"{self.family}/{self.key}"

    @property
    def where(self) -> str:
        return f"{self.baseline_path}:{self.line} ({self.section}.{self.key})"


@dataclass(frozen=True)
class Family:
    name: str
    path: Path
    paper: str
    preprocess: PreprocessSpec
    models: dict[str, ModelEntry]


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: keeps comments, order and flow style
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(  # write `null`, as people do, not an empty value
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return yaml


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error names the file and the line."""
    return parse_yaml(_read_text(path), path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"cannot read: {exc.strerror}", path) from None
    except UnicodeDecodeError as exc:
        raise BaselineError(f"not UTF-8 text (offset {exc.start}); save it as UTF-8", path) from None


def parse_yaml(text: str, path: Path) -> Any:
    """Parse YAML text read from `path` (named in errors, with the line).

    Aliases (`*name`, and `<<: *name` merges) are refused before anything is built: each
    level of them multiplies the data, so a 1 KB file can expand to gigabytes."""
    from ruamel.yaml.events import AliasEvent

    try:
        for event in _yaml().parse(text):
            if isinstance(event, AliasEvent):
                raise BaselineError(f"YAML alias *{event.anchor} refused: baseline files may not "
                                    "use anchors (&name) and aliases (*name); write the values out",
                                    path, event.start_mark.line + 1)
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise BaselineError(f"YAML syntax error: {exc.problem or exc.context}", path, line) from None
    except ReaderError as exc:  # a control character (an escape sequence written raw)
        raise BaselineError(f"character {printable(chr(exc.character)) if isinstance(exc.character, int) else '?'} "
                            "is not allowed in YAML text (write it escaped, or leave it out)", path,
                            text.count("\n", 0, exc.position) + 1) from None


def _line(node: Any, key: str | None = None, default: int = 1) -> int:
    if isinstance(node, CommentedMap):
        try:
            return (node.lc.key(key)[0] if key is not None else node.lc.line) + 1
        except (KeyError, TypeError):
            return node.lc.line + 1
    return default


def _tolerance(raw: Any, base: Mapping[str, float]) -> Tolerance:
    merged = {**base, **(raw or {})}
    return Tolerance(float(merged["top1"]), float(merged["top5"]))


def _weights(raw: Any) -> WeightsSpec:
    if raw is None:
        return WeightsSpec()
    if isinstance(raw, str):
        return WeightsSpec(file=raw)
    return WeightsSpec(file=raw.get("file"), package=raw.get("package"),
                       key_map=raw.get("key_map", "names"))


def _model(family: str, section: str, key: str, raw: Any, defaults: Mapping[str, Any],
           path: Path) -> ModelEntry:
    """An entry of a file that `baseline_schema.validate` accepted."""
    line = _line(raw)
    library = raw["library"]
    sources = raw["source"]
    sources = tuple(sources) if isinstance(sources, list) else (str(sources),)
    try:
        spec: PreprocessSpec = defaults["preprocess"]
        if raw.get("preprocess"):
            spec = spec.with_overrides(raw["preprocess"])
    except VaccbenchError as exc:
        raise BaselineError(f"model {key!r}: {exc}", path, _line(raw, "preprocess", line)) from None
    precision = str(raw.get("precision", "fp32"))
    min_agreement = raw.get("min_agreement")
    # dataset names are strings: a hand-written `2012:` is the dataset named "2012"
    expected = {str(k): v for k, v in (raw.get("expected") or {}).items()}
    return ModelEntry(
        family=family, key=str(key), name=str(raw["name"]), sources=sources, library=library,
        arch=raw["arch"], input_size=int(raw["input_size"]), preprocess=spec,
        tolerance=_tolerance(raw.get("tolerance"), defaults["tolerance"]),
        baseline_path=path, line=line, section=section,
        weights=_weights(raw.get("weights")),
        num_classes=int(raw.get("num_classes", 1000)), batch_size=raw.get("batch_size"),
        deploy=raw.get("deploy", defaults.get("deploy")), precision=precision,
        float_model=None if raw.get("float_model") is None else str(raw["float_model"]),
        min_agreement=None if min_agreement is None else float(min_agreement),
        published=raw.get("published"), vamp=raw.get("vamp"), onnx=raw.get("onnx"), expected=expected)


def _deep_line(text: str, limit: int = 50) -> int | None:
    """The line where flow brackets nest deeper than `limit` (no baseline field nests more
    than a few levels; the YAML parser would recurse once per level)."""
    depth, number = 0, 1
    for match in re.finditer(r"[\[\]{}\n]", text):  # a pass over brackets and line ends only
        char = match.group()
        if char == "\n":
            number += 1
            continue
        depth += 1 if char in "[{" else -1
        if depth > limit:
            return number
    return None


def parse_family(text: str, path: Path, registry: bool = True) -> Any:
    """A baseline file's text (read from, or to be written to, `path`) parsed and validated
    field by field (baseline_schema): what load_family reads, and what a writer checks its
    text against before it replaces a file (without `registry`: run names are not checked
    against the backends registered in this process, which may be fewer than a session's)."""
    too_deep = BaselineError("lists or mappings nested too deeply to be a baseline file (see "
                             "baselines/SCHEMA.md)", path, _deep_line(text))
    if too_deep.line is not None:  # found before the parser recurses into it
        raise too_deep
    try:
        data = parse_yaml(text, path)
        validate(data, path, registry)
    except RecursionError:  # nested by indentation
        raise too_deep from None
    return data


def load_family(path: str | Path) -> Family:
    """A baseline file, validated field by field (baseline_schema) before anything reads it."""
    path = Path(path)
    data = parse_family(_read_text(path), path)
    family = str(data["family"])
    try:
        spec = PreprocessSpec.from_mapping(data["preprocess"])
    except (VaccbenchError, TypeError) as exc:
        raise BaselineError(f"preprocess: {exc}", path, _line(data, "preprocess")) from None
    defaults = {"preprocess": spec, "deploy": data.get("deploy"),
                "tolerance": {**DEFAULT_TOLERANCE, **(data.get("tolerance") or {})}}
    models: dict[str, ModelEntry] = {}
    for section in MODEL_SECTIONS:
        raw_models = data.get(section) or {}
        if not isinstance(raw_models, Mapping):
            raise BaselineError(f"`{section}` must map model keys to fields", path, _line(data, section))
        for key, raw in raw_models.items():
            if key in models:
                raise BaselineError(f"model {key!r} appears twice", path, _line(raw))
            models[str(key)] = _model(family, section, str(key), raw, defaults, path)
    for entry in models.values():
        if entry.float_model is not None and entry.float_model not in models:
            raise BaselineError(f"model {entry.key!r}: float_model {entry.float_model!r} is not a "
                                f"model of this file", path, entry.line)
    return Family(family, path, str(data.get("paper", "")), spec, models)


def load_families(directory: str | Path, names: Iterable[str] | None = None) -> list[Family]:
    """All `*.yaml` baselines in a folder (or the named ones), sorted by family name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BaselineError("baselines folder does not exist", directory)
    files = sorted(directory.glob("*.yaml"))
    if names is not None:
        wanted = list(names)
        by_stem = {f.stem: f for f in files}
        unknown = [n for n in wanted if n not in by_stem]
        if unknown:
            raise BaselineError(f"no baseline file for famil{'y' if len(unknown) == 1 else 'ies'} "
                                f"{unknown}; available: {sorted(by_stem)}", directory)
        files = [by_stem[n] for n in wanted]
    return [load_family(f) for f in files]


# Keys of an `expected` entry that describe one measurement: an update replaces them all.
# Any other key (a per-entry `tolerance`, gate settings, notes) is kept as the user wrote it.
MEASUREMENT_KEYS = ("top1", "top5", "n", "fingerprint", "date", "versions", "machine", "options",
                    "source", "broken", "calibration_excluded", "predictions")


# An update that would change none of these leaves the entry as it is, byte for byte: a new
# date or version string alone is not a new measurement (no churn in `git diff`).
QUIET_KEYS = ("top1", "top5", "n", "fingerprint")
# ...nor any of these that it carries: a reference to stored predictions (`--vaccbench-store`)
# the entry does not name is new information, and the entry is then written whole, so that
# its provenance describes the run it names; an update without one leaves the entry's alone.
REFERENCE_KEYS = ("predictions",)

LOCK_TIMEOUT = 600.0  # seconds an update waits for another session's update of the same file
Results = Iterable[Tuple[str, str, str, Mapping[str, Any]]]
# (model key, dataset, "backend/precision") -> the entry the file holds now (plain values)
Lookup = Callable[[str, str, str], Optional[Mapping[str, Any]]]
# given the file's entries now, the results to write (those it refuses left out)
Screen = Callable[[Lookup], Results]


def lock_path(path: Path) -> Path:
    """The lock file that serialises updates of one baseline file (kept beside it, hidden)."""
    return path.with_name(f".{path.name}.lock")


def update_file(path: Path, results: Results, screen: Screen | None = None) -> list[str]:
    """Write measured results into one baseline file, atomically, under an exclusive lock.

    `results` holds (model key, dataset name, "backend/precision", values). The file is read
    again under the lock and the entries are applied to what it holds now, so two sessions
    updating different entries of one file at the same time both keep theirs; `screen`, when
    given, is shown those entries under the lock and returns the results to write instead
    (what may replace an entry is decided on what the file holds, not on an older read).
    Only those entries change, and only when a number, n or the fingerprint does
    (QUIET_KEYS), or the stored predictions they name (REFERENCE_KEYS): the text of every
    other line is kept byte for byte (comments, key order, `null` spellings, number
    formats), so `git diff` shows the changed entries and nothing else; a file with nothing
    to change is not rewritten. The new text goes to a temporary file in the same folder,
    which then replaces the old one: a reader, a crash or a kill -9 sees the old file or the
    new one, never half. Returns "model dataset backend/precision" for each entry changed.
    """
    try:
        with FileLock(lock_path(path), timeout=LOCK_TIMEOUT):
            old_text = _read_text(path)
            new_text, changed = updated_text(path, old_text, results, screen)
            if new_text != old_text:
                atomic_write(path, new_text)
    except Timeout:
        raise BaselineError(f"another update has held {lock_path(path)} for {LOCK_TIMEOUT:g} s; "
                            "if no other session runs, delete that file", path) from None
    return changed


def update_diff(path: Path, results: Results, screen: Screen | None = None) -> tuple[str, list[str]]:
    """The unified diff `update_file` would make to `path` now (--dry-run), and the entries it
    would change: nothing is written."""
    old_text = _read_text(path)
    new_text, changed = updated_text(path, old_text, results, screen)
    return "".join(difflib.unified_diff(old_text.splitlines(keepends=True),
                                        new_text.splitlines(keepends=True),
                                        f"a/{path.name}", f"b/{path.name}")), changed


def _model_node(data: Any, key: str, path: Path) -> tuple[str, Any]:
    section = next((s for s in MODEL_SECTIONS if key in (data.get(s) or {})), None)
    if section is None:
        raise BaselineError(f"model {key!r} is not in this file any more", path)
    return section, data[section][key]


def _lookup(data: Any, path: Path) -> Lookup:
    def entry(key: str, dataset: str, run: str) -> Mapping[str, Any] | None:
        _, model = _model_node(data, key, path)
        found = ((model.get("expected") or {}).get(dataset) or {}).get(run)
        return None if found is None else _plain(found)
    return entry


def _unchanged(old: Mapping[str, Any] | None, values: Mapping[str, Any]) -> bool:
    return old is not None and all(_plain(old.get(k)) == values.get(k) for k in QUIET_KEYS) \
        and all(_plain(old.get(k)) == values[k] for k in REFERENCE_KEYS if k in values)


def updated_text(path: Path, old_text: str, results: Results,
                 screen: Screen | None = None) -> tuple[str, list[str]]:
    """`old_text` (of `path`) with the results written in (those `screen` keeps, when given,
    and only those that change a number, n, the fingerprint or a predictions digest), and
    what changed. The new text is read back through the schema (`parse_family`): an update
    never writes a file the next run refuses."""
    data = parse_yaml(old_text, path)
    current = _lookup(data, path)
    results = [r for r in (screen(current) if screen else results)
               if not _unchanged(current(*r[:3]), r[3])]
    if not results:
        return old_text, []
    spans = {}  # the lines each touched model's block has now, before any change
    for key, *_ in results:
        section, model = _model_node(data, key, path)
        keys: tuple[str, ...] = (section, key)
        if "expected" in model and not model.fa.flow_style():
            keys += ("expected",)  # the smallest block that holds the entry
        spans[keys] = _span(data, keys, old_text)
    changed = []
    for key, dataset, run, values in results:
        _, model = _model_node(data, key, path)
        if model.get("expected") is None:
            model["expected"] = CommentedMap()
        written = next((k for k in model["expected"] if str(k) == dataset), dataset)  # `2012:` too
        per_dataset = model["expected"].setdefault(written, CommentedMap())
        old = per_dataset.get(run)
        kept = {k: v for k, v in (old or {}).items() if k not in MEASUREMENT_KEYS}
        entry = CommentedMap({**values, **kept})
        entry.fa.set_flow_style()
        per_dataset[run] = entry
        changed.append(f"{key} {dataset} {run}")
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    new_text = _splice(old_text, buffer.getvalue(), spans)
    try:
        parse_family(new_text, path, registry=False)
    except BaselineError as exc:
        raise BaselineError(f"the update would make a file that cannot be read back ({exc})",
                            path) from None
    return new_text, changed


def _span(doc: Any, keys: tuple[str, ...], text: str) -> tuple[int, int]:
    """0-based [first, end) lines of `text` (which `doc` was loaded from) holding the value
    at `keys`. A key's lines run from its own line to the line of the next key of the same
    mapping, or to the end of its parent's span: comments between two keys go with the first
    one, as ruamel.yaml attaches them."""
    node, first, end = doc, 0, len(text.splitlines())
    for key in keys:
        order = list(node)
        i = order.index(key)
        first = node.lc.key(key)[0]
        if i + 1 < len(order):
            end = node.lc.key(order[i + 1])[0]
        node = node[key]
    return first, end


def _splice(old_text: str, new_text: str,
            old_spans: Mapping[tuple[str, ...], tuple[int, int]]) -> str:
    """`old_text` with only the given blocks taken from `new_text` (ruamel's dump of the
    changed data).

    The full dump is faithful in meaning but not in every spelling (an explicit `null` comes
    back empty); splicing keeps the untouched lines as they were. The result must load to
    the same data as the full dump, else the full dump is used.
    """
    old_lines, new_lines = old_text.splitlines(keepends=True), new_text.splitlines(keepends=True)
    new_doc = _yaml().load(new_text)
    lines = list(old_lines)
    for keys, (o_first, o_end) in sorted(old_spans.items(), key=lambda kv: kv[1], reverse=True):
        n_first, n_end = _span(new_doc, keys, new_text)
        lines[o_first:o_end] = new_lines[n_first:n_end]
    spliced = "".join(lines)
    return spliced if _plain(_yaml().load(spliced)) == _plain(new_doc) else new_text


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists, for comparing meaning."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def unread_entries(read: Iterable[tuple[str, str, str, str]]) -> list[tuple[ModelEntry, str, list[str]]]:
    """The entries nobody read, of the models that were read: from (baseline file, model key,
    dataset, "backend/precision") of every entry a test read, per model and dataset the other
    runs recorded under `expected.<dataset>` (the files as they are now; one that cannot be
    read is left out: its tests said why)."""
    read = set(read)
    found = []
    for path, key, dataset in dict.fromkeys((p, k, d) for p, k, d, _ in sorted(read)):
        try:
            entry = load_family(path).models.get(key)
        except (OSError, VaccbenchError):
            continue
        recorded = (entry.expected.get(dataset) or {}) if entry else {}
        runs = [run for run in recorded if (path, key, dataset, run) not in read]
        if runs:
            found.append((entry, dataset, runs))
    return found


def find_entry(name: str, baselines: Path) -> ModelEntry:
    """The baseline model named `family/key` or `key` (which must be unique) in a folder."""
    family, _, key = name.rpartition("/")
    found = [e for f in load_families(baselines, [family] if family else None)
             for e in f.models.values() if e.key == key]
    if len(found) != 1:
        raise VaccbenchError(f"{'no' if not found else len(found)} baseline model(s) named {key!r}"
                             f"{' in family ' + family if family else ''}", baselines)
    return found[0]
