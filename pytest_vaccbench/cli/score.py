"""`vaccbench score RESULTS... --model FAMILY/KEY --run BACKEND/PRECISION --dataset-name NAME`:
gate the result files an accelerator host already wrote (result.txt, vamp outputs, this tool's
predictions) as a test of that model and run.

The files are read by `resultfiles.score_case` (as `pytest --results` reads them), judged by
`run.judged`, recorded by the plugin's `update_baselines` and reported by its `write_reports`
and `terminal_lines`, so the verdict, the status, the reports, the history and the exit code
are the test's: 0 measured and within tolerance (or recorded), 1 a failed gate, a refused
update or results that cannot be scored, 2 a baseline file that cannot be read, 4 a usage
error, 5 no baseline to hold the numbers to (they are printed all the same).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import difflib
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from . import command, report_file

USAGE_ERROR = 4  # as pytest's


def _arguments(parser: argparse.ArgumentParser) -> None:
    def usage_error(message: str) -> NoReturn:  # argparse's own exit status is 2
        parser.print_usage(sys.stderr)
        parser.exit(USAGE_ERROR, f"vaccbench score: error: {message}\n")

    parser.error = usage_error  # type: ignore[method-assign]
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="the zoo's result.txt; a vamp output folder and its datalist; this "
                             "tool's predictions .npz; or a folder holding them")
    parser.add_argument("--model", required=True, metavar="FAMILY/KEY",
                        help="the baseline model the results are of, e.g. mobilenet_v2/timm-mobilenetv2_100")
    parser.add_argument("--run", required=True, metavar="BACKEND/PRECISION",
                        help="the run they are, e.g. vamp/int8-percentile: its baseline is "
                             "expected.<dataset-name>.<run>")
    parser.add_argument("--dataset-name", required=True, metavar="NAME",
                        help="the key of these images in the baselines, e.g. imagenet-val")
    parser.add_argument("--labels", default=None, metavar="FILE",
                        help="ground truth `<image> <class index>` per line (val_label.txt, the "
                             "official 50,000-line file); default: the images' class folders")
    parser.add_argument("--subset", action="store_true",
                        help="the results cover part of the --labels images on purpose: score "
                             "them as a sample of it (the gate adds the sampling allowance)")
    parser.add_argument("--baselines", default="baselines", metavar="DIR",
                        help="folder of the baseline files (default: ./baselines)")
    parser.add_argument("--vaccbench-json", type=report_file, default=None, metavar="F",
                        help="write the JSON report")
    parser.add_argument("--vaccbench-html", type=report_file, default=None, metavar="F",
                        help="write the HTML report")
    parser.add_argument("--junitxml", type=report_file, default=None, metavar="F",
                        help="write a JUnit XML file")
    parser.add_argument("--vaccbench-history", type=report_file, default=None, metavar="DB",
                        help="append the result to a SQLite history (see `vaccbench trend`)")
    parser.add_argument("--update-baselines", action="store_true",
                        help="record the numbers in the baseline file instead of gating")
    parser.add_argument("--dry-run", action="store_true",
                        help="--update-baselines: print the diff, write nothing")
    parser.add_argument("--accept-broken", action="store_true",
                        help="--update-baselines: record a result the gate calls a BROKEN BUILD too")
    parser.add_argument("--accept-other-images", action="store_true",
                        help="--update-baselines: replace an entry measured on more images, or on "
                             "other images, than the results (refused by default: it weakens the gate)")
    parser.add_argument("--allow-improvement", action="store_true",
                        help="pass results better than the baseline beyond tolerance")
    parser.add_argument("--confidence", type=float, default=0.95, metavar="P",
                        help="confidence of the sampling allowance and intervals (default 0.95)")
    parser.add_argument("--vaccbench-cache", default=None, metavar="DIR",
                        help="where the predictions are kept, as for pytest (default: "
                             "$VACCBENCH_CACHE, else $XDG_CACHE_HOME/vaccbench, else ~/.cache/vaccbench)")


def _usage(message: str) -> int:
    print(f"vaccbench score: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def _problem(args: argparse.Namespace) -> str | None:
    """The first argument that cannot work, as pytest's startup checks say it."""
    from ..errors import VaccbenchError, printable
    from ..options import check_options

    backend, slash, precision = args.run.partition("/")
    if not slash or not backend or not precision:
        return f"--run={args.run}: expected BACKEND/PRECISION, e.g. vamp/int8-percentile"
    if args.model.count("/") != 1:
        return f"--model={args.model}: expected FAMILY/KEY, e.g. mobilenet_v2/timm-mobilenetv2_100"
    for name in ("dry_run", "accept_broken", "accept_other_images"):
        if getattr(args, name) and not args.update_baselines:
            return f"--{name.replace('_', '-')} applies to --update-baselines only"
    if args.subset and not args.labels:
        return "--subset needs --labels: a subset of which images?"
    if not 0 < args.confidence < 1:
        return f"--confidence must be between 0 and 1, got {args.confidence}"
    missing = [p for p in args.results if not Path(p).exists()]
    if missing:
        return f"no such file or folder: {', '.join(map(printable, missing))}"
    try:
        check_options({"backend": [backend], "precision": [precision], "labels": args.labels,
                       "baselines": args.baselines, "dataset_name": args.dataset_name})
    except VaccbenchError as exc:
        return str(exc).replace("--backend=", "--run backend ").replace("--precision=", "--run precision ")
    return None


def _entry(baselines: Path, name: str) -> Any:
    """The model `family/key`; a usage error names the closest ones (a broken file raises)."""
    from ..baselines import load_family

    family, key = name.split("/")
    path = baselines / f"{family}.yaml"
    if not path.is_file():
        families = sorted(p.stem for p in baselines.glob("*.yaml"))
        close = difflib.get_close_matches(family, families, n=1)
        raise LookupError(f"--model={name}: no family {family!r} in {baselines}"
                          f"{'; did you mean ' + close[0] + '?' if close else ''} "
                          f"(families: {', '.join(families)})")
    models = load_family(path).models
    if key not in models:
        close = difflib.get_close_matches(key, list(models), n=1)
        raise LookupError(f"--model={name}: no model {key!r} in {path}"
                          f"{'; did you mean ' + family + '/' + close[0] + '?' if close else ''}")
    return models[key]


def _command(args: argparse.Namespace, *extra: str) -> str:
    """This command with what shapes its numbers (the files, model, run, dataset, labels)."""
    words = ["vaccbench", "score", *args.results, "--model", args.model, "--run", args.run,
             "--dataset-name", args.dataset_name]
    for flag, value in (("--labels", args.labels), ("--baselines", args.baselines)):
        if value is not None and not (flag == "--baselines" and value == "baselines"):
            words += [flag, value]
    return shlex.join([*words, *(["--subset"] if args.subset else []), *extra])


def _no_ladder(args: argparse.Namespace, entry: Any, kind: str) -> str:
    """For a failing fp16, int8 or device run: why it has no loss ladder here, and the
    `vaccbench explain` command that gives it (the result files as its device step)."""
    import os

    from ..ladder import Device, device_backends, elsewhere, explains

    backend, _, precision = args.run.partition("/")
    if not explains(backend, precision, kind):
        return ""
    results = Path(args.results[0] if len(args.results) == 1 else os.path.commonpath(args.results))
    device = Device(backend if backend in device_backends() else None, (results,))
    return "\n" + elsewhere(entry, precision, device.option, "vaccbench score reads result files and runs "
                            "no model", flags={"--labels": args.labels,
                                               "--baselines": None if args.baselines == "baselines"
                                               else args.baselines})


@command("score", "gate result files a device host wrote (result.txt, vamp outputs) as a test "
                  "of the model and run", _arguments)
def score(args: argparse.Namespace) -> int:
    from ..cache import cache_dir
    from ..errors import BaselineError, VaccbenchError
    from ..gate import expectation_for
    from ..merge import Merged, junit_xml
    from ..plugin.results import terminal_lines, update_baselines, write_reports
    from ..plugin.running import payload_of
    from ..report import MARKER, PROPERTY, Results, not_measured_line, session_info
    from ..resultfiles import score_case
    from ..run import Case, judged, no_baseline
    from ..gate import run_key
    from ..updates import Recording, covers, refusal

    problem = _problem(args)
    if problem:
        return _usage(problem)
    try:
        entry = _entry(Path(args.baselines), args.model)
    except LookupError as exc:
        return _usage(str(exc))
    except BaselineError:
        raise  # exit 2, as a collection error
    backend, _, precision = args.run.partition("/")
    case = Case(entry, backend, precision)
    nodeid = f"score::{case.id}"
    started = _dt.datetime.now()
    results = Results()
    results.select([nodeid])
    command_text = _command(args, "--update-baselines")
    outcome, reason, props, lines, seconds = "passed", "", [], [], 0.0
    cache = cache_dir(args.vaccbench_cache)
    try:
        data, result, scored = score_case(case, args.results, args.labels, args.subset,
                                          args.dataset_name, cache)
    except VaccbenchError as exc:
        outcome, reason = "failed", f"cannot score these results: {exc}"
        lines.append(reason)
    else:
        lines += scored.lines()
        seconds = result.seconds
        if expectation_for(entry, data, backend, precision) is None and not args.update_baselines:
            outcome, reason = "skipped", no_baseline(case, data.name, command_text, result)
        else:
            entry_now = (entry.expected.get(data.name) or {}).get(run_key(backend, precision))
            if not result.excluded:  # the entry it would replace may be a --limit draw of these
                result.covers = covers(entry_now, data, result.fingerprint)
            done = judged(case, data, result, cache, command_text,
                          update=args.update_baselines, confidence=args.confidence,
                          allow_improvement=args.allow_improvement)
            verdict = done.verdict
            props = [(PROPERTY, json.dumps(payload_of(result, done.expected, verdict)))]
            why = (refusal(Recording(nodeid, "passed", result, verdict.kind), args.accept_broken,
                           entry_now, args.accept_other_images)
                   if args.update_baselines else None)
            if why:
                outcome, reason = "failed", (f"not recorded: {verdict.message}\n--update-baselines "
                                             f"refuses this result: {why}")
            elif not verdict.passed and not args.update_baselines:
                outcome, reason = "failed", verdict.message + _no_ladder(args, entry, verdict.kind)
            lines += [reason or verdict.message] if (reason or verdict.message) else []
    results.add(nodeid, "call", outcome, [MARKER], props, reason)
    messages, ok = [], True
    if args.update_baselines and outcome != "skipped":
        messages, ok = update_baselines(results, lambda name: getattr(args, name, None))
    nothing = not_measured_line(results)
    if nothing:
        messages.append(f"ERROR: {nothing}")
    code = {"passed": 0, "failed": 1, "skipped": 5}[outcome] or (0 if ok else 1)
    info = {**session_info([], code, started),
            "command": _command(args, *(["--update-baselines"] if args.update_baselines else []))}
    written, reports_ok = write_reports(list(results), info, lambda name: getattr(args, name, None))
    messages += written
    if args.junitxml:  # the JUnit file merged shard reports get (merge.junit_xml)
        path = Path(args.junitxml)
        ran = {nodeid: {"outcome": outcome, "seconds": seconds, "message": reason}}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            junit_xml(Merged(list(results), [], {"started": info["started"], "ran": ran}), path)
            messages.append(f"JUnit XML: {path}")
        except OSError as exc:
            messages.append(f"ERROR writing JUnit XML {path}: {exc}")
            reports_ok = False
    width = shutil.get_terminal_size().columns
    for line in [*lines, "", *(text for text, _ in terminal_lines(results, messages, width))]:
        print(line)
    return code or (0 if reports_ok else 1)
