"""`vaccbench models`: the models of a baselines folder and the runs recorded for each, per
dataset with their n: what a test id can name, and which numbers the gate has to hold to."""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..baselines import Family, load_families
from . import command


def _run(run: str, entry: Mapping[str, Any]) -> str:
    n = entry.get("n")
    notes = [f"n={n:,}" if isinstance(n, int) else "n not recorded"]
    if entry.get("broken"):
        notes.append("broken")
    return f"{run} ({', '.join(notes)})"


def model_lines(families: Iterable[Family], patterns: list[str], dataset: str | None) -> list[str]:
    """Per family its file, per model its key (and README figures), per dataset its runs;
    with `dataset`, only the models with runs recorded on it."""
    lines = []
    for family in families:
        models = [m for m in family.models.values()
                  if not patterns or any(fnmatch.fnmatchcase(m.key, p) or
                                         fnmatch.fnmatchcase(m.test_name, p) for p in patterns)]
        shown = []
        for model in models:
            runs = {name: entries for name, entries in model.expected.items()
                    if dataset in (None, name)}
            if dataset and not runs:
                continue
            published = model.published or {}
            figures = " / ".join("-" if published.get(k) is None else f"{published[k]:g}"
                                 for k in ("top1", "top5"))
            shown.append(f"  {model.key}" + (f"  (published top1 / top5: {figures})"
                                             if any(v is not None for v in published.values())
                                             else ""))
            shown += [f"    {name}: " + ", ".join(_run(run, entry or {})
                                                  for run, entry in entries.items())
                      for name, entries in runs.items()] or ["    no runs recorded"]
        if shown:
            lines += [f"{family.name} ({family.path})", *shown]
    return lines


def _models_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("patterns", nargs="*", metavar="PATTERN",
                        help="globs over model keys or family/key (default: every model)")
    parser.add_argument("--baselines", type=Path, default=Path("baselines"), metavar="DIR",
                        help="folder of baseline YAMLs (default: ./baselines)")
    parser.add_argument("--dataset", default=None, metavar="NAME",
                        help="only the runs recorded on this dataset")


@command("models", "list the baseline models: family, model key and the runs recorded per "
         "dataset, with n", _models_args)
def _models(args: argparse.Namespace) -> int:
    from ..options import check_options

    check_options({"baselines": str(args.baselines)})  # a missing folder gets the closest name
    lines = model_lines(load_families(args.baselines), args.patterns, args.dataset)
    if not lines:
        print("no model matches")
        return 1
    for line in lines:
        print(line)
    return 0
