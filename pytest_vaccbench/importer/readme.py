"""A README as the importer reads it: head, recipe, model tables, and what it could not read."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import VaccbenchError
from .tables import ModelTable, Problem, TableRow, _head, _tables, family_source
from .transforms import Recipe, read_recipe


@dataclass
class Readme:
    path: Path
    title: str | None
    paper: str | None
    recipe: Recipe
    tables: list[ModelTable]
    problems: list[Problem] = field(default_factory=list)

    @property
    def rows(self) -> list[TableRow]:
        return [row for table in self.tables for row in table.rows]


def parse_readme(text: str, path: Path | str = "README.md") -> Readme:
    """Everything the importer reads from a README; what it cannot read is in `problems`."""
    path = Path(path)
    lines = text.splitlines()
    problems: list[Problem] = []
    title, paper = _head(lines)
    recipe, recipe_problems = read_recipe(text)
    tables = _tables(lines, problems)
    if not tables:
        raise VaccbenchError("no model table found: expected a header line with model (模型) and "
                             "top1 columns (and source (源码), or one source named in the text)", path)
    for number, table in enumerate(tables):
        if table.column("source") is None:
            source, how = family_source(lines)
            if source is None:
                raise VaccbenchError(f"the model table at line {table.line} has no source column and "
                                     f"{how}: add a source column, or the --model_library of the export "
                                     "step", path)
            problems.append(Problem(table.line, f"no source column: every row's source is {source} "
                                                f"(named at {how})"))
            tables[number] = replace(table, rows=tuple(replace(row, sources=(source,))
                                                       for row in table.rows))
    problems = sorted(recipe_problems + problems, key=lambda p: (p.line is None, p.line or 0))
    return Readme(path, title, paper, recipe, tables, problems)


def read_readme(path: Path | str) -> Readme:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VaccbenchError(f"cannot read: {exc.strerror}", path) from None
    except UnicodeDecodeError as exc:
        raise VaccbenchError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    return parse_readme(text, path)
