"""`vaccbench durations` and `vaccbench merge`: the command lines around sharded runs."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from . import command, output_file
from ..errors import VaccbenchError


def _durations_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path,
                        help="a JSON report (--vaccbench-json, or merge's) or a history database "
                             "(--vaccbench-history)")


@command("durations", "print the .test_durations JSON pytest-split reads, from a previous run's "
         "measured seconds per test", _durations_args)
def _durations(args: argparse.Namespace) -> int:
    from ..merge import durations

    found = durations(args.source)
    if not found:
        raise VaccbenchError("no test with measured seconds in it", args.source)
    json.dump(found, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


def _merge_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", type=Path, help="the shards' --vaccbench-json reports")
    parser.add_argument("-o", "--output", type=output_file, required=True, metavar="JSON",
                        help="the merged JSON report (per-image predictions beside it)")
    parser.add_argument("--html", type=output_file, default=None, metavar="FILE",
                        help="also an HTML report")
    parser.add_argument("--junitxml", type=output_file, default=None, metavar="FILE",
                        help="also one JUnit XML file of every shard's tests")
    parser.add_argument("--history", type=output_file, default=None, metavar="DB",
                        help="append the merged session to this history database, as one run")


@command("merge", "merge the JSON reports of pytest-split shards into one report (exit 1: a "
         "test failed or no shard ran it)", _merge_args)
def _merge(args: argparse.Namespace) -> int:
    from ..history import append_run
    from ..merge import junit_xml, load_shard, merge, summary, write_merged_json
    from ..report_html import write_html

    shards = [load_shard(path) for path in args.shards]
    options = [(flag, value) for flag, value in (("-o", args.output), ("--html", args.html),
               ("--junitxml", args.junitxml), ("--history", args.history)) if value is not None]
    merged = merge(shards, shlex.join(["vaccbench", "merge", *map(str, args.shards),
                                       *(str(part) for option in options for part in option)]))
    lost = write_merged_json(merged, args.output)
    written = [f"JSON report: {args.output}"]
    if lost:
        written.append(f"note: {len(lost)} test(s) without their per-image predictions (copy each "
                       "shard's <report>.predictions/ folder with its report), e.g. " + lost[0])
    if args.html:
        write_html(merged.rows, args.html, merged.session)
        written.append(f"HTML report: {args.html}")
    if args.junitxml:
        junit_xml(merged, args.junitxml)
        written.append(f"JUnit XML: {args.junitxml}")
    if args.history:
        append_run(args.history, merged.rows, merged.session)
        written.append(f"history: {args.history}")
    for line in [*summary(merged, shards), *written]:
        print(line)
    return 0 if merged.green else 1
