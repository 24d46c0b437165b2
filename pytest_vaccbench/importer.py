"""Import a model-zoo README into a baseline file (`vaccbench import-readme`).

Three steps, each a plain function:
- `parse_readme`: README text -> `Readme` (title, paper, the `torchvision.transforms` list as a
  `PreprocessSpec`, the model tables, and a `Problem` for every line it could not read).
  It reads both the GitHub-page text (navigation lines, cells separated by spaces, a cell's
  `<br>` turned into a line break) and markdown / plain text with `|`-separated cells.
- `map_models`: table rows -> `ImportedModel` (key, library, arch) through `ALIASES`, checked
  against the installed timm/torchvision when they can be imported.
- `merge_baseline`: write the README-derived fields into a baseline mapping read with ruamel,
  keeping everything else (`expected`, `extra_models`, extra per-model fields, comments).
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .baselines import DEFAULT_TOLERANCE, MODEL_SECTIONS, _line, _yaml, atomic_write, read_yaml
from .cli import command
from .errors import VaccbenchError
from .preprocess import INTERPOLATIONS, PreprocessSpec

# ---------------------------------------------------------------------------------------------
# Parsed README


@dataclass(frozen=True)
class Problem:
    """A README line the importer could not read (or read with a guess): shown as a warning."""

    line: int | None
    message: str
    path: str | None = None  # None: the README

    def format(self, readme: Path | str) -> str:
        path = self.path or readme
        where = f"{path}:{self.line}" if self.line else str(path)
        return f"{where}: warning: {self.message}"


@dataclass(frozen=True)
class Column:
    kind: str  # a HEADINGS kind, or "unknown"
    label: str  # the heading as written
    unit: str | None = None  # flops: G | M | B


@dataclass(frozen=True)
class TableRow:
    line: int
    name: str
    sources: tuple[str, ...]
    cells: Mapping[str, Decimal | None]  # value column kind -> number (None: cell missing)


@dataclass(frozen=True)
class ModelTable:
    line: int  # the header line
    columns: tuple[Column, ...]
    rows: tuple[TableRow, ...]

    def column(self, kind: str) -> Column | None:
        return next((c for c in self.columns if c.kind == kind), None)


@dataclass
class Readme:
    path: Path
    title: str | None
    paper: str | None
    preprocess: PreprocessSpec | None
    tables: list[ModelTable]
    problems: list[Problem] = field(default_factory=list)

    @property
    def rows(self) -> list[TableRow]:
        return [row for table in self.tables for row in table.rows]


# Column headings, matched on the heading lower-cased with its spaces removed.
HEADINGS: tuple[tuple[str, str], ...] = (
    ("name", r"模型|模型名称|网络|models?|modelname|name"),
    ("source", r"源码|来源|codebase|sources?|code|repo|framework"),
    ("top1", r"top-?1(acc)?(\(%\))?|acc@1"),
    ("top5", r"top-?5(acc)?(\(%\))?|acc@5"),
    ("flops", r"(?P<prefix>[gmb])?flops(\((?P<unit>[gmb])\))?"),
    ("params", r"params(\(m\))?|#params|参数量?(\(m\))?"),
    ("input_size", r"input_?size|input|size|resolution|输入尺寸|输入大小|img_?size"),
)
VALUE_COLUMNS = ("top1", "top5", "flops", "params", "input_size")
MISSING = {"", "-", "–", "—", "/", "n/a", "na", "none", "null"}
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)%?|(\d+)\s*[x×*]\s*\d+")
_NAV_LINE = re.compile(r"skip to content|latest commit|history|file metadata and controls|readme\.md|"
                       r"raw|blame|\d+ lines \(\d+ loc\) · [\d.]+ \w+", re.I)
_SECTION = re.compile(r"code source|model arch|pre-?processing|model info|deploy|模型性能", re.I)
_TITLE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")
_PAPER = re.compile(r"(?P<label>[A-Za-z][^:：]{0,60}): (?P<title>\S.*)")
_SOURCE_SPLIT = re.compile(r"</?br\s*/?>|[,/、]|\s+", re.I)


def _plain(line: str) -> str:
    """Markdown links/images -> their text; HTML tags other than <br> and emphasis dropped."""
    line = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line)
    line = re.sub(r"</?(?!br\b)[a-z][^>]*>", "", line, flags=re.I)
    return line.replace("**", "").replace("`", "").strip()


def _heading(label: str) -> Column:
    norm = re.sub(r"\s+", "", _plain(label)).lower()
    for kind, pattern in HEADINGS:
        match = re.fullmatch(pattern, norm)
        if match:
            groups = match.groupdict()
            unit = (groups.get("unit") or groups.get("prefix") or "").upper() or None
            return Column(kind, label.strip(), unit)
    return Column("unknown", label.strip())


def _is_table_header(columns: list[Column]) -> bool:
    kinds = {c.kind for c in columns}
    return {"name", "source", "top1"} <= kinds


def _space_header(tokens: list[str]) -> list[Column]:
    """Headings of a space-separated header; a heading may span tokens ("input size", "FLOPs (B)")."""
    columns, i = [], 0
    while i < len(tokens):
        for width in (3, 2, 1):
            column = _heading(" ".join(tokens[i:i + width])) if i + width <= len(tokens) else None
            if column is not None and column.kind != "unknown":
                columns.append(column)
                i += width
                break
        else:
            columns.append(Column("unknown", tokens[i]))
            i += 1
    return columns


def _pipe_cells(line: str) -> list[str]:
    cells = line.strip().split("|")
    if line.strip().startswith("|"):
        cells = cells[1:]
    if line.strip().endswith("|"):
        cells = cells[:-1]
    return [c.strip() for c in cells]


def _value(text: str) -> Decimal | None:
    """A numeric cell: '72.41', '72.41%', '224x224' (-> 224); None for a missing-value mark."""
    text = _plain(text)
    if text.lower() in MISSING:
        return None
    match = _NUMBER.fullmatch(text)
    if not match:
        raise ValueError(text)
    return Decimal(match.group(1) or match.group(2))


def _is_value(token: str) -> bool:
    try:
        _value(token)
    except ValueError:
        return False
    return True


def _sources(text: str) -> tuple[str, ...]:
    return tuple(s for s in _SOURCE_SPLIT.split(_plain(text)) if s)


def _row(columns: tuple[Column, ...], cells: Mapping[str, str], line: int,
         problems: list[Problem]) -> TableRow | None:
    """One row from its cells by column kind; a row without name or source is reported."""
    name, sources = _plain(cells.get("name", "")), _sources(cells.get("source", ""))
    if not name or not sources:
        problems.append(Problem(line, f"table row without a model {'name' if not name else 'source'}"
                                      f": skipped ({' | '.join(cells.values())})"))
        return None
    label = f"{'/'.join(sources)} {name}"
    values: dict[str, Decimal | None] = {}
    for column in columns:
        if column.kind not in VALUE_COLUMNS:
            continue
        raw = cells.get(column.kind)  # None: a short markdown row, reported by the caller
        try:
            values[column.kind] = None if raw is None else _value(raw)
        except ValueError:
            problems.append(Problem(line, f"{label}: {column.label} {raw!r} is not a number; left null"))
            values[column.kind] = None
            continue
        if raw is not None and values[column.kind] is None:
            problems.append(Problem(line, f"{label}: no {column.label} value; left null"))
    return TableRow(line, name, sources, values)


def _pipe_table(lines: list[str], start: int, columns: tuple[Column, ...],
                problems: list[Problem]) -> tuple[ModelTable, int]:
    rows, i = [], start + 1
    while i < len(lines) and "|" in lines[i]:
        cells = _pipe_cells(lines[i])
        if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
            i += 1
            continue
        if len(cells) < len(columns):
            missing = ", ".join(c.label for c in columns[len(cells):])
            problems.append(Problem(i + 1, f"table row has {len(cells)} cells for {len(columns)} columns: "
                                           f"read as markdown does, the last ones ({missing}) empty"))
        elif len(cells) > len(columns):
            problems.append(Problem(i + 1, f"table row has {len(cells)} cells for {len(columns)} columns: "
                                           "the extra cells are ignored"))
        by_kind = {c.kind: cell for c, cell in zip(columns, cells) if c.kind != "unknown"}
        row = _row(columns, by_kind, i + 1, problems)
        if row:
            rows.append(row)
        i += 1
    return ModelTable(start + 1, columns, tuple(rows)), i


def _space_table(lines: list[str], start: int, columns: tuple[Column, ...],
                 problems: list[Problem]) -> tuple[ModelTable, int]:
    """Rows of GitHub-page text: `name source... cell...`, one token per cell after the sources.
    A row may spread over lines: a cell with several sources puts each on its own line (the
    markdown's <br>), and the remaining cells follow on the last one."""
    if [c.kind for c in columns[:2]] != ["name", "source"]:
        problems.append(Problem(start + 1, "a space-separated table must start with the model and "
                                           "source columns: not read"))
        return ModelTable(start + 1, columns, ()), start + 1
    rest = columns[2:]
    rows: list[TableRow] = []
    pending: list[tuple[int, str]] = []  # (line, token) of the row being read

    def fits() -> bool:
        tail = pending[len(pending) - len(rest):]
        return len(pending) >= len(rest) + 2 and all(
            _is_value(token) for column, (_, token) in zip(rest, tail) if column.kind != "unknown")

    def finish() -> None:
        tokens = [token for _, token in pending]
        if fits():
            cut = len(tokens) - len(rest)
            cells = {"name": tokens[0], "source": " ".join(tokens[1:cut]),
                     **{c.kind: token for c, token in zip(rest, tokens[cut:])}}
            row = _row(columns, cells, pending[0][0], problems)
            rows.extend([row] if row else [])
        else:
            problems.append(Problem(pending[0][0], f"cannot read table row {' '.join(tokens)!r}: expected "
                                                   f"{' | '.join(c.label for c in columns)} (numbers where "
                                                   "numbers go, a cell missing?); skipped"))
        pending.clear()

    i = start + 1
    while i < len(lines) and _plain(lines[i]):
        tokens = _plain(lines[i]).split()
        more_sources = (len(tokens) == 1 and not _is_value(tokens[0])
                        and not any(_is_value(token) for _, token in pending[1:]))
        if pending and (fits() or not (more_sources or _is_value(tokens[0]))):
            finish()
        pending.extend((i + 1, token) for token in tokens)
        i += 1
    if pending:
        finish()
    return ModelTable(start + 1, columns, tuple(rows)), i


def _tables(lines: list[str], problems: list[Problem]) -> list[ModelTable]:
    tables, i = [], 0
    while i < len(lines):
        text = _plain(lines[i])
        piped = "|" in text
        columns = [_heading(c) for c in _pipe_cells(text)] if piped else _space_header(text.split())
        unknown = [c.label for c in columns if c.kind == "unknown"]
        header = _is_table_header(columns)
        if header and not piped and (len(unknown) > 2 or len(columns) - len(unknown) < 4):
            problems.append(Problem(i + 1, f"looks like a model-table header, but {unknown} are no "
                                           "headings this importer knows: not read as a table"))
        elif header:
            if unknown:
                problems.append(Problem(i + 1, f"table column(s) {unknown} unknown: their values are "
                                               "ignored"))
            reader = _pipe_table if piped else _space_table
            table, i = reader(lines, i, tuple(columns), problems)
            tables.append(table)
            continue
        i += 1
    return tables


def _head(lines: list[str]) -> tuple[str | None, str | None]:
    """Title and paper from the lines before the first section (navigation lines skipped).

    A paper line reads "<label>: <paper title>"; a label with an underscore ("inception_v3:
    Rethinking the Inception ...") is the README's model name, not part of the paper title.
    """
    title = paper = None
    for raw in lines:
        text = _plain(raw).lstrip("#>*-•· ").strip()
        if not text or _NAV_LINE.fullmatch(text):
            continue
        if _SECTION.fullmatch(text) or text.startswith("[") or "transforms." in text \
                or _is_table_header(_space_header(text.split())):
            break
        if title is None and paper is None and _TITLE.fullmatch(text):
            title = text
        elif paper is None and (match := _PAPER.fullmatch(text)) and match["label"].isascii():
            paper = match["title"] if "_" in match["label"] else text
    return title, paper


# --- the torchvision.transforms list ---------------------------------------------------------

_TRANSFORM = re.compile(r"\b(?:torchvision\.)?transforms\.(\w+)\s*\(")
_PIL_CODES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_IGNORED_TRANSFORMS = {"ToTensor", "PILToTensor", "ConvertImageDtype", "Compose"}


def _call_args(text: str, open_paren: int) -> str | None:
    depth = 0
    for j in range(open_paren, len(text)):
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[open_paren:j + 1]
    return None


def _interpolation(node: ast.expr) -> str:
    """InterpolationMode.BICUBIC, Image.BICUBIC, BICUBIC, 3 or 'bicubic' -> 'bicubic'."""
    if isinstance(node, ast.Attribute):
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    else:
        value = _literal(node)
        name = _PIL_CODES.get(value, str(value)) if isinstance(value, int) else str(value)
    name = name.lower()
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation {name!r} is not one of {INTERPOLATIONS}")
    return name


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{ast.unparse(node)} is not a literal value") from None


def _square(value: Any, what: str) -> int:
    """Resize/CenterCrop size: an int, or (h, w) with h == w."""
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return int(value[0])
    raise ValueError(f"{what} {value!r}: only a square size is supported")


def parse_transforms(text: str) -> tuple[PreprocessSpec | None, list[Problem]]:
    """The README's `torchvision.transforms` list -> PreprocessSpec (PIL, as torchvision runs it).

    Resize(int) resizes the short side, Resize((h, w)) squares; interpolation defaults to
    torchvision's bilinear. A step that appears twice keeps its first value.
    """
    problems: list[Problem] = []
    found: dict[str, Any] = {}
    seen_at: dict[str, int] = {}
    for match in _TRANSFORM.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        name = match.group(1)
        if name in _IGNORED_TRANSFORMS:
            continue
        args_src = _call_args(text, match.end() - 1)
        try:
            call = ast.parse(f"f{args_src}", mode="eval").body if args_src else None
            if not isinstance(call, ast.Call):
                raise ValueError("unbalanced parentheses")
            args = list(call.args)
            kwargs = {k.arg: k.value for k in call.keywords}
            if name == "Resize":
                size = _literal(kwargs.get("size") or args[0])
                short_side = isinstance(size, int) or len(size) == 1  # torchvision: [n] is short-side
                step = {"resize": _square(size, "Resize size"),
                        "resize_mode": "short-side" if short_side else "square"}
                interp = kwargs.get("interpolation") or (args[1] if len(args) > 1 else None)
                if interp is not None:
                    step["interpolation"] = _interpolation(interp)
            elif name == "CenterCrop":
                step = {"crop": _square(_literal(kwargs.get("size") or args[0]), "CenterCrop size")}
            elif name == "Normalize":
                mean = _literal(kwargs.get("mean") or args[0])
                std = _literal(kwargs.get("std") or args[1])
                step = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
            else:
                problems.append(Problem(line, f"transforms.{name} is not a step of the evaluation "
                                              "preprocessing this importer knows; ignored"))
                continue
        except (SyntaxError, ValueError, IndexError, TypeError) as exc:
            detail = f": {exc}" if isinstance(exc, ValueError) else ""
            problems.append(Problem(line, f"cannot read transforms.{name}{(args_src or '(')[:60]}{detail}; "
                                          "ignored"))
            continue
        if name in seen_at:
            problems.append(Problem(line, f"a second transforms.{name}; the one at line {seen_at[name]} "
                                          "is used"))
            continue
        seen_at[name] = line
        found.update(step)
    if not found:
        return None, problems
    if "resize" not in found:
        problems.append(Problem(min(seen_at.values()), "the transforms list has no Resize: "
                                                       "preprocessing not imported"))
        return None, problems
    return PreprocessSpec.from_mapping(found), problems


def parse_readme(text: str, path: Path | str = "README.md") -> Readme:
    """Everything the importer reads from a README; what it cannot read is in `problems`."""
    path = Path(path)
    lines = text.splitlines()
    problems: list[Problem] = []
    title, paper = _head(lines)
    preprocess, transform_problems = parse_transforms(text)
    tables = _tables(lines, problems)
    problems = sorted(transform_problems + problems, key=lambda p: (p.line is None, p.line or 0))
    if not tables:
        raise VaccbenchError("no model table found: expected a header line with model (模型), "
                             "source (源码) and top1 columns", path)
    return Readme(path, title, paper, preprocess, tables, problems)


def read_readme(path: Path | str) -> Readme:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VaccbenchError(f"cannot read: {exc.strerror}", path) from None
    except UnicodeDecodeError as exc:
        raise VaccbenchError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    return parse_readme(text, path)


# ---------------------------------------------------------------------------------------------
# Rows -> architectures


@dataclass(frozen=True)
class Alias:
    """What builds a README row here. `key_name` is the source library's own model name where
    the README writes another (it names the key); `note` explains the choice in the YAML."""

    library: str | None
    arch: str | None
    key_name: str | None = None
    note: str = ""


def _timm(arch: str, note: str = "", key_name: str | None = None) -> Alias:
    return Alias("timm", arch, key_name, note)


def _none(note: str) -> Alias:
    return Alias(None, None, None, note)


NO_TAG = "architecture only: timm has no pretrained tag for it"
# README row (first matching source, model name) -> architecture. Names are today's
# (timm 1.0.x, torchvision 0.2x); rows of a timm/torchvision source whose name that library
# still builds need no entry.
ALIASES: dict[str, dict[str, Alias]] = {
    "timm": {
        "mobilenetv2": _timm("mobilenetv2_100", key_name="mobilenetv2_100"),
        "inception_v3": _timm("inception_v3.tv_in1k",
                              "timm 0.6's plain inception_v3 = torchvision's weights"),
        "tf_inception_v3": _timm("inception_v3.tf_in1k", "was tf_inception_v3 in timm 0.6"),
        "adv_inception_v3": _timm("inception_v3.tf_adv_in1k", "was adv_inception_v3 in timm 0.6"),
        "gluon_inception_v3": _timm("inception_v3.gluon_in1k", "was gluon_inception_v3 in timm 0.6"),
    },
    "torchvision": {
        "mobilenetv2": Alias("torchvision", "mobilenet_v2", key_name="mobilenet_v2"),
    },
    "mmcls": {
        "mobilenetv2": _timm("mobilenetv2_100", "mmcls MobileNetV2 widen_factor 1.0: same topology"),
    },
    "keras": {
        "mobilenetv2": _timm("mobilenetv2_100", "keras.applications MobileNetV2 alpha 1.0: same topology"),
    },
    "ppcls": {
        "MobileNetV2_x0_25": _none("timm has no width-0.25 MobileNetV2; torchvision's is width 1.0 only"),
        "MobileNetV2_x0_5": _timm("mobilenetv2_050"),
        "MobileNetV2_x0_75": _timm("mobilenetv2_075", NO_TAG),
        "MobileNetV2": _timm("mobilenetv2_100"),
        "MobileNetV2_x1_5": _none("timm has no width-1.5 MobileNetV2; torchvision's is width 1.0 only"),
        "MobileNetV2_x2_0": _none("timm has no width-2.0 MobileNetV2; torchvision's is width 1.0 only"),
        "MobileNetV2_ssld": _timm("mobilenetv2_100", "SSLD-distilled weights, width 1.0 topology"),
        "inception_v3": _timm("inception_v3", "PaddleClas InceptionV3: same topology as timm's"),
        "GhostNet_x0_5": _timm("ghostnet_050", NO_TAG),
        "GhostNet_x1_0": _timm("ghostnet_100"),
        "GhostNet_x1_3": _timm("ghostnet_130", NO_TAG),
        "GhostNet_x1_3_ssld": _timm("ghostnet_130", "SSLD-distilled weights, width 1.3 topology"),
    },
    "official": {
        "RepVGG-A0": _timm("repvgg_a0"),
        "RepVGG-A1": _timm("repvgg_a1"),
        "RepVGG-A2": _timm("repvgg_a2"),
        "RepVGG-B0": _timm("repvgg_b0"),
        "RepVGG-B1": _timm("repvgg_b1"),
        "RepVGG-B1g2": _none("timm registers repvgg_b1g4, b2g4, b3g4 but no g2 variant"),
        "RepVGG-B1g4": _timm("repvgg_b1g4"),
        "RepVGG-B2": _timm("repvgg_b2"),
        "RepVGG-B2g4": _timm("repvgg_b2g4"),
        "RepVGG-B3": _timm("repvgg_b3"),
        "RepVGG-B3g4": _timm("repvgg_b3g4"),
    },
}
BUILD_LIBRARIES = ("timm", "torchvision")

ArchCheck = Callable[[str, str], "bool | None"]


@lru_cache(maxsize=None)
def _library_names(library: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """(architectures, pretrained tags) of an importable library; None when it cannot be imported."""
    try:
        if library == "timm":
            import timm

            return frozenset(timm.list_models()), frozenset(timm.list_pretrained())
        import torchvision.models

        return frozenset(torchvision.models.list_models()), frozenset()
    except (ImportError, OSError):
        return None


def installed_arch(library: str, arch: str) -> bool | None:
    """Does the installed library build `arch` (with its pretrained tag, if it names one)?
    None when the library cannot be imported: the alias table is then taken on trust."""
    names = _library_names(library)
    if names is None:
        return None
    archs, tags = names
    return arch in tags if "." in arch else arch in archs


@dataclass(frozen=True)
class ImportedModel:
    key: str
    line: int  # the README row
    fields: dict[str, Any]  # the README-derived fields, in baseline order
    note: str = ""  # why this architecture: a comment on `arch` in a new entry


def _resolve(row: TableRow, check: ArchCheck, problems: list[Problem]) -> tuple[str, Alias]:
    """(key, alias) of one row: alias table, then the row's own name for a timm/torchvision
    row, then (timm importable) the name lower-cased with '-' -> '_' if timm builds it."""
    label = f"{'/'.join(row.sources)} {row.name}"
    alias = next((ALIASES[s][row.name] for s in row.sources if row.name in ALIASES.get(s, {})), None)
    if alias is None and row.sources[0] in BUILD_LIBRARIES:
        alias = Alias(row.sources[0], row.name)
    if alias is None:
        guess = row.name.lower().replace("-", "_")
        known = check("timm", guess)
        if known:
            alias = _timm(guess, "guessed from the README name: check it is the same network")
            problems.append(Problem(row.line, f"{label}: no alias; guessed timm {guess!r} from the name "
                                              "(add it to importer.ALIASES once checked)"))
        else:
            why = f"timm has no {guess!r}" if known is False else "timm is not importable"
            alias = _none("no alias in the importer for this row")
            problems.append(Problem(row.line, f"{label}: no architecture known ({why}; add it to "
                                              "importer.ALIASES); library/arch left null"))
    elif alias.arch is not None and check(alias.library, alias.arch) is False:
        problems.append(Problem(row.line, f"{label}: {alias.library} has no architecture {alias.arch!r}; "
                                          "library/arch left null"))
        alias = Alias(None, None, alias.key_name, f"{alias.library} {alias.arch} not found at import")
    return f"{row.sources[0]}-{alias.key_name or row.name}", alias


def map_models(readme: Readme,
               check: ArchCheck = installed_arch) -> tuple[list[ImportedModel], list[Problem]]:
    """Each table row -> its baseline key and README-derived fields, in table order."""
    problems: list[Problem] = []
    models: dict[str, ImportedModel] = {}
    crop = readme.preprocess.output_size if readme.preprocess else None
    for table in readme.tables:
        flops, sized = table.column("flops"), table.column("input_size") is not None
        if not sized and crop:
            problems.append(Problem(table.line, f"no input size column: input_size is the crop, {crop}"))
        for row in table.rows:
            key, alias = _resolve(row, check, problems)
            if key in models:
                problems.append(Problem(row.line, f"a second row for {key} (first at line "
                                                  f"{models[key].line}); skipped"))
                continue
            source = row.sources[0] if len(row.sources) == 1 else list(row.sources)
            fields: dict[str, Any] = {"name": row.name, "source": source,
                                      "library": alias.library, "arch": alias.arch}
            if sized or crop:
                size = row.cells["input_size"] if sized else crop
                fields["input_size"] = None if size is None else int(size)
            if flops:
                value = row.cells["flops"]
                fields["flops"] = None if value is None else {"value": value, "unit": flops.unit}
            if "params" in row.cells:
                fields["params_m"] = row.cells["params"]
            fields["published"] = {k: row.cells[k] for k in ("top1", "top5") if k in row.cells}
            models[key] = ImportedModel(key, row.line, fields, alias.note)
        if flops and flops.unit is None:
            problems.append(Problem(table.line, f"the {flops.label!r} heading gives no unit (G, M or B); "
                                                "flops.unit left null"))
    return list(models.values()), problems


# ---------------------------------------------------------------------------------------------
# Merge into a baseline file


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


def _node(value: Any) -> Any:
    """A plain value -> what ruamel writes back as the README wrote it (327.650 stays 327.650)."""
    if isinstance(value, Decimal):
        return _yaml().load(str(value))
    if isinstance(value, dict):
        node = CommentedMap((k, _node(v)) for k, v in value.items())
        node.fa.set_flow_style()
        return node
    if isinstance(value, list):
        seq = CommentedSeq(_node(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    return value


def _same(old: Any, new: Any) -> bool:
    """Equal as data: 3.5 == 3.500, a quoted string == the plain one."""
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
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _update(target: CommentedMap, fields: Mapping[str, Any], where: str, changed: list[str]) -> None:
    """Set `fields` in `target` in place: an equal value is left untouched (its formatting and
    comment kept), a mapping is updated key by key, a missing key is inserted after the field
    before it. Keys of `target` not in `fields` are kept."""
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
        previous = key


def _new_model(model: ImportedModel) -> CommentedMap:
    entry = CommentedMap((k, _node(v)) for k, v in model.fields.items())
    entry["expected"] = CommentedMap()
    if model.note:
        entry.yaml_add_eol_comment(model.note, "arch", column=38)
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
        f"{readme.title or family} baselines, imported from {readme.path.name} by "
        "`vaccbench import-readme`.\n"
        "Re-running it rewrites the README-derived fields; `expected`, `extra_models` and the\n"
        "fields added by hand (weights, tolerance, preprocess overrides, ...) are kept.")
    return data


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
    if readme.preprocess is not None:
        _update(data["preprocess"], readme.preprocess.to_mapping(), "preprocess.", result.changed)
    elif not data["preprocess"]:
        unread = [str(p.line) for p in readme.problems if "transforms." in p.message]
        raise VaccbenchError("no torchvision.transforms list with a Resize the importer can read"
                             + (f" (lines {', '.join(unread)} are not literal values)" if unread else "")
                             + f", and no `preprocess` in {result.path}: write the family's preprocess "
                             "block by hand, then import again", readme.path)
    else:
        result.problems.append(Problem(None, "no preprocessing read from the README: `preprocess` kept"))
    previous = None
    for model in models:
        section = next((s for s in MODEL_SECTIONS if model.key in (data.get(s) or {})), None)
        if section is None:
            target = data["models"]
            position = list(target).index(previous) + 1 if previous in target else 0
            target.insert(position, model.key, _new_model(model))
            result.added.append(model.key)
        else:
            entry = data[section][model.key]
            if not isinstance(entry, CommentedMap):
                raise VaccbenchError(f"{section}.{model.key} must be a mapping of fields", result.path,
                                     _line(data[section], model.key))
            if section != "models":
                result.problems.append(Problem(model.line, f"{model.key} is a README row but sits in "
                                                           f"{section}; updated there"))
            _update(entry, model.fields, f"{model.key}.", result.changed)
        previous = model.key
    for key in data["models"]:
        if key not in result.models:
            result.kept.append(key)
            result.problems.append(Problem(_line(data["models"], key),
                                           f"models.{key} is no row of the README: kept (delete it "
                                           "or move it to extra_models by hand)", str(result.path)))


def family_name(readme: Readme, family: str | None, out: Path | None) -> str:
    """--family, else the output file's name, else the README's title (lower-cased)."""
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
                  check: ArchCheck = installed_arch,
                  baselines_dir: Path | str = "baselines") -> ImportResult:
    """Write (or update) the baseline file of the family a README describes."""
    readme = read_readme(readme_path)
    out_path = Path(out) if out is not None else None
    name = family_name(readme, family, out_path)
    out_path = out_path or Path(baselines_dir) / f"{name}.yaml"
    models, mapping_problems = map_models(readme, check)
    result = ImportResult(out_path, name, not out_path.exists(), [m.key for m in models],
                          no_arch=[m.key for m in models if m.fields["arch"] is None],
                          problems=readme.problems + mapping_problems)
    data = _skeleton(readme, name) if result.created else read_yaml(out_path)
    if not isinstance(data, CommentedMap):
        raise VaccbenchError("a baseline file must be a mapping with family, preprocess, models", out_path)
    merge_baseline(data, name, readme, models, result)
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, buffer.getvalue())
    return result


# ---------------------------------------------------------------------------------------------
# vaccbench import-readme


def _import_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("readme", help="the family's README (markdown, plain text or GitHub-page text)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="baseline file to write or update (default: baselines/<family>.yaml)")
    parser.add_argument("--family", default=None, metavar="NAME",
                        help="family name (default: the output file's name, else the README's title)")


@command("import-readme", "write or update a family's baseline YAML from its model-zoo README",
         _import_args)
def _import_command(args: argparse.Namespace) -> int:
    result = import_readme(args.readme, args.output, args.family)
    for problem in result.problems:
        print(problem.format(args.readme), file=sys.stderr)
    if result.created:
        print(f"wrote {result.path} (family {result.family}): {len(result.added)} models from the "
              "README table")
    else:
        print(f"updated {result.path} (family {result.family}): {len(result.models)} README rows, "
              f"{len(result.added)} added, {len(result.changed)} field(s) changed, "
              f"{len(result.kept)} kept that are no README row")
        for line in result.changed:
            print(f"  changed {line}")
    if result.no_arch:
        print(f"  no architecture (library/arch null): {', '.join(result.no_arch)}")
    return 0
