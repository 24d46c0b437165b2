"""README model tables -> rows (name, sources, published numbers), and the README's head.

Reads both the GitHub-page text (navigation lines, cells separated by spaces, a cell's
`<br>` turned into a line break) and markdown / plain text with `|`-separated cells. A
table needs a model and a top1 column; without a source column every row takes the one
source the README names elsewhere (`family_source`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping

from ..preprocess import MAX_SIDE


@dataclass(frozen=True)
class Problem:
    """A README line the importer could not read (or read with a guess): shown as a warning."""

    line: int | None
    message: str
    path: str | None = None  # None: the README

    def format(self, readme: object) -> str:
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


# Column headings, matched on the heading lower-cased with its spaces removed.
# Headings are matched without their HTML (`acc<br><sup>top1` is acctop1), spaces and a
# trailing (%) or %.
_ACC = r"(acc(uracy)?\.?|准确率)"
HEADINGS: tuple[tuple[str, str], ...] = (
    ("name", r"模型|模型名称|网络|models?|modelname|name"),
    ("source", r"源码|来源|codebase|sources?|code|repo|framework"),
    ("top1", rf"top-?1{_ACC}?|{_ACC}@?(top-?)?1"),
    ("top5", rf"top-?5{_ACC}?|{_ACC}@?(top-?)?5"),
    ("flops", r"(?P<prefix>[gmb])?flops(@\d+)?(\((?P<unit>[gmb])\))?"),
    ("params", r"params(\(m\))?|#params(\(m\))?|参数量?(\(m\))?"),
    ("input_size", r"input_?size|input|size|size\(pixels\)|resolution|输入尺寸|输入大小|img_?size"),
    ("crop_pct", r"crop_?pct|crop_?ratio"),
)
VALUE_COLUMNS = ("top1", "top5", "flops", "params", "input_size", "crop_pct")
# What a value column's numbers may be (a cell outside is reported, and left null).
RANGES = {
    "top1": (lambda v: v <= 100, "a percentage (0-100)"),
    "top5": (lambda v: v <= 100, "a percentage (0-100)"),
    "flops": (lambda v: True, "a number"),
    "params": (lambda v: True, "a number"),
    "input_size": (lambda v: v == v.to_integral_value() and 0 < v <= MAX_SIDE, f"a size in pixels (1-{MAX_SIDE})"),
    "crop_pct": (lambda v: 0 < v <= 1, "a crop fraction in (0, 1]"),
}
MISSING = {"", "-", "–", "—", "/", "n/a", "na", "none", "null"}
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)%?|(\d+)\s*[x×*]\s*\d+")
_NAV_LINE = re.compile(r"skip to content|latest commit|history|file metadata and controls|readme\.md|"
                       r"raw|blame|\d+ lines \(\d+ loc\) · [\d.]+ \w+", re.I)
_SECTION = re.compile(r"code source|model arch|pre-?processing|model info|deploy|模型性能", re.I)
_TITLE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")
_PAPER = re.compile(r"(?P<label>[A-Za-z][^:：]{0,60}): (?P<title>\S.*)")
_SOURCE_SPLIT = re.compile(r"</?br\s*/?>|[,/、]|\s+", re.I)


_LINK = re.compile(r"!?\[([^\[\]]*)\]\([^()]*\)")  # no nested brackets: linear on `[[[[...`
_TAG = re.compile(r"</?(?!br\b)[a-z][^<>]*>", re.I)


def _plain(line: str) -> str:
    """Markdown links/images -> their text; HTML tags other than <br> and emphasis dropped."""
    line = _TAG.sub("", _LINK.sub(r"\1", line))
    return line.replace("**", "").replace("`", "").strip()


def _heading(label: str) -> Column:
    label = " ".join(re.sub(r"<[^<>]*>", " ", label).split())  # `acc<br><sup>top1`: acc top1
    norm = re.sub(r"(\(%\)|%)$", "", re.sub(r"\s+", "", _plain(label)).lower())
    for kind, pattern in HEADINGS:
        match = re.fullmatch(pattern, norm)
        if match:
            groups = match.groupdict()
            unit = (groups.get("unit") or groups.get("prefix") or "").upper() or None
            return Column(kind, label.strip(), unit)
    return Column("unknown", label.strip())


def _is_table_header(columns: list[Column], markdown: bool = False) -> bool:
    """A model table: model, source and top1 columns; or, without a source column, only
    headings this importer knows (so that a sentence naming "model" and "top1" is none),
    unless it is a `markdown` table (its header is followed by a |---| line): it is one."""
    kinds = {c.kind for c in columns}
    if "source" in kinds or markdown:
        return {"name", "top1"} <= kinds
    return {"name", "top1"} <= kinds and "unknown" not in kinds and len(columns) >= 3


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
    """One row from its cells by column kind; a row without name (or source, in a table with a
    source column) is reported. Without a source column `sources` is empty: the caller fills it."""
    name, sources = " ".join(_plain(cells.get("name", "")).split()), _sources(cells.get("source", ""))
    if not name or (not sources and any(c.kind == "source" for c in columns)):
        problems.append(Problem(line, f"table row without a model {'name' if not name else 'source'}"
                                      f": skipped ({' | '.join(cells.values())})"))
        return None
    label = f"{'/'.join(sources)} {name}".strip()
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
        elif values[column.kind] is not None and not RANGES[column.kind][0](values[column.kind]):
            problems.append(Problem(line, f"{label}: {column.label} {values[column.kind]} is not "
                                          f"{RANGES[column.kind][1]}; left null"))
            values[column.kind] = None
    return TableRow(line, name, sources, values)


def _is_separator(line: str) -> bool:
    """A markdown table's line under its header: |---|:--:|---|."""
    cells = [c for c in _pipe_cells(line) if c]
    return bool(cells) and all(re.fullmatch(r":?-+:?", c) for c in cells)


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
    markdown's <br>), and the remaining cells follow on the last one. A name may hold spaces
    ("inception v4 timm ..."): the last word before the cells on the row's first line is its
    source; without a source column every word before the cells is the name."""
    kinds = [c.kind for c in columns]
    sourced = kinds[:2] == ["name", "source"]
    if not sourced and (kinds[0] != "name" or "source" in kinds):
        problems.append(Problem(start + 1, "a space-separated table must start with the model and "
                                           "source columns: not read"))
        return ModelTable(start + 1, columns, ()), start + 1
    rest = columns[2:] if sourced else columns[1:]
    rows: list[TableRow] = []
    pending: list[tuple[int, str]] = []  # (line, token) of the row being read

    def fits() -> bool:
        tail = pending[len(pending) - len(rest):]
        return len(pending) >= len(rest) + (2 if sourced else 1) and all(
            _is_value(token) for column, (_, token) in zip(rest, tail) if column.kind != "unknown")

    def finish() -> None:
        tokens = [token for _, token in pending]
        if fits():
            cut = len(tokens) - len(rest)
            first = min(cut, sum(1 for line, _ in pending if line == pending[0][0]))
            named = first - 1 if sourced and first > 1 else (1 if sourced else cut)
            cells = {"name": " ".join(tokens[:named]), "source": " ".join(tokens[named:cut]),
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
        more_sources = (sourced and len(tokens) == 1 and not _is_value(tokens[0])
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
        markdown = piped and i + 1 < len(lines) and _is_separator(lines[i + 1])
        header = _is_table_header(columns, markdown)
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


# A family's one source, where the table has no source column: the export step's
# `--model_library`, else the repository its "Code Source" links to.
_LIBRARY_FLAG = re.compile(r"--model_library[ =](\w+)")
_SOURCE_URLS = (
    (re.compile(r"github\.com/(rwightman|huggingface)/pytorch-image-models", re.I), "timm"),
    (re.compile(r"github\.com/pytorch/vision", re.I), "torchvision"),
    (re.compile(r"github\.com/open-mmlab/(mmclassification|mmpretrain)", re.I), "mmcls"),
    (re.compile(r"github\.com/PaddlePaddle/PaddleClas", re.I), "ppcls"),
    (re.compile(r"keras\.io/api/applications|github\.com/keras-team/keras", re.I), "keras"),
    (re.compile(r"github\.com/ultralytics/(yolov5|ultralytics)", re.I), "ultralytics"),
)
# A source named in words: a "code source" label (or heading) and, on its line after a colon
# or on one of the next lines, a library's name (the GitHub-page text keeps a link's text only).
_SOURCE_LABEL = re.compile(r"^\W*(code\s*source|codebase|source\s*code|源码|来源)\s*[:：]?\s*(?P<rest>.*)$", re.I)
_SOURCE_NAMES = {"timm": "timm", "pytorch-image-models": "timm", "torchvision": "torchvision",
                 "mmcls": "mmcls", "mmclassification": "mmcls", "mmpretrain": "mmcls",
                 "ppcls": "ppcls", "paddleclas": "ppcls", "keras": "keras",
                 "ultralytics": "ultralytics", "yolov5": "ultralytics"}
_SOURCE_WORD = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, _SOURCE_NAMES)) + r")(?![\w-])", re.I)
LABEL_REACH = 3  # lines after a "code source" label where the library's name may stand


def _named_sources(lines: list[str]) -> dict[str, int]:
    """Libraries named in words under a "code source" label: source -> line."""
    found: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        label = _SOURCE_LABEL.match(_plain(line))
        if not label:
            continue
        after = [label["rest"], *(_plain(x) for x in lines[number:number + LABEL_REACH])]
        for offset, text in enumerate(after):
            names = {_SOURCE_NAMES[w.lower()] for w in _SOURCE_WORD.findall(text)}
            for name in names:
                found.setdefault(name, number + offset)
            if names or (offset and text):  # the label's first line of words decides
                break
    return found


def family_source(lines: list[str]) -> tuple[str | None, str]:
    """(source, how it was found) for a table without a source column; None and the reason
    when the README names no source, or several."""
    found: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        for match in _LIBRARY_FLAG.finditer(line):
            found.setdefault(match.group(1), number)
        for pattern, source in _SOURCE_URLS:
            if pattern.search(line):
                found.setdefault(source, number)
    for source, number in _named_sources(lines).items():
        found.setdefault(source, number)
    if len(found) == 1:
        (source, number), = found.items()
        return source, f"line {number}"
    if not found:
        return None, ("it names no source (no --model_library in the deploy steps, no link to "
                      "timm, torchvision, mmcls, ppcls, keras or ultralytics, no `Code Source:` "
                      "naming one)")
    return None, "it names several: " + ", ".join(f"{s} (line {n})" for s, n in found.items())
