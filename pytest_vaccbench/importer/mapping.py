"""Table rows -> baseline entries: key, architecture, published numbers, and the row's own
preprocessing (`transforms.derive`), written only where it differs from the family's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .names import ArchCheck, installed_arch, resolve
from .readme import Readme
from .tables import Problem
from .transforms import Undetermined, Value, derive, library_defaults

LibraryDefaults = Callable[[str, str, "int | None", "float | None"], "dict[str, Value] | None"]


@dataclass(frozen=True)
class ImportedModel:
    key: str
    line: int  # the README row
    fields: dict[str, Any]  # the README-derived fields, in baseline order
    note: str = ""  # why this architecture: a comment on `arch` in a new entry
    preprocess: Mapping[str, Value] | None = None  # the row's whole preprocessing; None: undetermined
    undetermined: str = ""  # what no source determines, when preprocess is None


def family_preprocess(models: list[ImportedModel]) -> Mapping[str, Value] | None:
    """The family block: the first row's preprocessing (rows that differ carry their own)."""
    return next((m.preprocess for m in models if m.preprocess is not None), None)


def map_models(readme: Readme, check: ArchCheck = installed_arch,
               defaults: LibraryDefaults = library_defaults) -> tuple[list[ImportedModel], list[Problem]]:
    """Each table row -> its baseline key and README-derived fields, in table order."""
    problems: list[Problem] = []
    models: dict[str, ImportedModel] = {}
    folded: dict[str, str] = {}  # key up to case -> its first spelling
    unsized: set[int] = set()  # tables already reported without an input size column
    for table in readme.tables:
        flops, sized = table.column("flops"), table.column("input_size") is not None
        for row in table.rows:
            key, alias = resolve(row, check, problems)
            first = folded.get(key.casefold())
            if first is not None:
                problems.append(Problem(row.line, f"a second row for {key} (first at line "
                                                  f"{models[first].line}, {first}); skipped"))
                continue
            size = row.cells.get("input_size")
            size = None if size is None else int(size)
            own_library = row.sources[0] == alias.library and alias.arch  # a timm or torchvision row
            top1 = row.cells.get("top1")
            try:
                library = (defaults(str(alias.library), str(alias.arch), size,
                                    None if top1 is None else float(top1)) if own_library else None)
                pct = row.cells.get("crop_pct")
                pct = None if pct is None else Value(float(pct), f"the table's crop_pct (line {row.line})")
                preprocess, why = derive(readme.recipe, size, library, pct), ""
            except (Undetermined, ValueError) as exc:
                preprocess, why = None, str(exc)  # refused (or kept from the file) by the writer
            if not sized and preprocess is not None:
                size = preprocess["crop"].value or preprocess["resize"].value
                if table.line not in unsized:
                    unsized.add(table.line)
                    problems.append(Problem(table.line, f"no input size column: input_size is the crop, "
                                                        f"{size}"))
            source = row.sources[0] if len(row.sources) == 1 else list(row.sources)
            fields: dict[str, Any] = {"name": row.name, "source": source,
                                      "library": alias.library, "arch": alias.arch}
            if sized or size is not None:
                fields["input_size"] = size
            if flops:
                value = row.cells["flops"]
                fields["flops"] = None if value is None else {"value": value, "unit": flops.unit}
            if "params" in row.cells:
                fields["params_m"] = row.cells["params"]
            fields["published"] = {k: row.cells[k] for k in ("top1", "top5") if k in row.cells}
            models[key] = ImportedModel(key, row.line, fields, alias.note, preprocess, why)
            folded[key.casefold()] = key
        if flops and flops.unit is None:
            problems.append(Problem(table.line, f"the {flops.label!r} heading gives no unit (G, M or B); "
                                                "flops.unit left null"))
    family = family_preprocess(list(models.values()))
    for model in models.values():
        if model.preprocess is None or family is None:
            continue
        own = {k: v for k, v in model.preprocess.items() if k not in family or family[k].value != v.value}
        if "pixel_scale" in family and "pixel_scale" not in model.preprocess:
            own["pixel_scale"] = Value(255.0, "mean/std are on the 0-1 scale")
        if own:  # right after input_size
            items = list(model.fields.items())
            at = next(i for i, (k, _) in enumerate(items) if k in ("flops", "params_m", "published"))
            model.fields.clear()
            model.fields.update(items[:at] + [("preprocess", own)] + items[at:])
    return list(models.values()), problems
