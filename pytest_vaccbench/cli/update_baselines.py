"""`vaccbench update-baselines --from REPORT.json`: record the results of a finished run.

A nightly run (or its shards, merged) writes a `--vaccbench-json` report; this applies its
results to the baseline files through `updates.apply_updates`, the function behind
`pytest --update-baselines`, with the same refusals (a BROKEN BUILD, an entry measured on more
or other images, a sequential run that stopped early), locking and --dry-run; with
`--store`, the predictions files the report holds are kept in a predictions store.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VaccbenchError
from ..store import PredictionsStore
from ..updates import apply_updates, recordings_from_json
from . import command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="report", required=True, metavar="REPORT.json",
                        help="a --vaccbench-json report (e.g. a nightly run merged from shards)")
    parser.add_argument("--baselines", default="baselines", metavar="DIR",
                        help="folder of the baseline files to update, found by the file names "
                             "the report records (default: ./baselines)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the diff of every baseline file it would change, write nothing")
    parser.add_argument("--accept-broken", action="store_true",
                        help="record results the gate classified as a BROKEN BUILD too")
    parser.add_argument("--accept-other-images", action="store_true",
                        help="replace entries measured on more images, or on other images, than "
                             "the result (refused by default: it weakens the gate)")
    parser.add_argument("--store", default=None, metavar="DIR",
                        help="keep each recorded result's per-image predictions (beside the report) "
                             "in this predictions store, named by digest in its entry")


@command("update-baselines", "record the results of a --vaccbench-json report in the baseline files",
         _arguments)
def update_baselines(args: argparse.Namespace) -> int:
    folder = Path(args.baselines)
    if not folder.is_dir():
        raise VaccbenchError("baselines folder does not exist (pass --baselines DIR)", folder)
    recordings = recordings_from_json(Path(args.report))
    done = apply_updates(recordings, accept_broken=args.accept_broken,
                         accept_other_images=args.accept_other_images, dry_run=args.dry_run,
                         baselines_dir=folder,
                         store=PredictionsStore(Path(args.store)) if args.store else None)
    for line in done.lines:
        print(line)
    if not recordings:
        print(f"{args.report}: no measured results to record")
    return 0 if done.ok else 1
