"""The plugin's options: their declarations (the one `vaccbench` --help group, each also an
ini key), the usage checks made at startup, and the `RunOptions` the backends read.

`run_options` and `update_command` are plain functions of the option values, testable
without a pytest session; only `check_config` and `device_pool` need the config.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

from .. import triage
from ..backends import RunOptions
from ..dataset import Dataset
from ..devices import DevicePool, check_workers
from ..errors import VaccbenchError
from ..gate import WEAK_LIMIT, WeakLimit
from ..layers import parse_keep
from ..options import check_options, parse_devices, split_names
from . import ini

Getter = Callable[[str], Any]  # config.getoption, or a dict's get in tests


def add_options(parser: pytest.Parser) -> None:
    """Declare the `vaccbench` option group (docgen writes docs/options.md from it)."""
    group = parser.getgroup("vaccbench", "accuracy gates for image classifiers (pytest-vaccbench)")
    group.addoption("--backend", action="append", default=None, metavar="NAME",
                    help="backend(s) to run: reference, onnxruntime, vamp, vsx (repeat or comma-separate; "
                         "default: the suite file's `backends`)")
    group.addoption("--precision", action="append", default=None, metavar="P",
                    help="precision(s): fp32 (default), fp16, int8-<calibration> ...")
    group.addoption("--dataset", default=None, metavar="PATH",
                    help="ImageNet images: flat folder + val_label.txt, wnid class folders, or "
                         "<wnid>_<name>.JPEG files (default: the built-in skimage-photos)")
    group.addoption("--dataset-name", default=None, metavar="NAME",
                    help="key of this dataset in the baselines (default: imagenet-val for the full "
                         "50k set, else the folder name)")
    group.addoption("--labels", default=None, metavar="FILE",
                    help="label file `<image> <class index>` for a flat folder")
    group.addoption("--weights-dir", default=None, metavar="DIR",
                    help="folder of weight files named <source>-<name>.pth (default: $VACCBENCH_WEIGHTS "
                         "or ./weights)")
    group.addoption("--limit", type=int, default=None, metavar="N",
                    help="evaluate a deterministic, class-stratified subset of N images")
    group.addoption("--update-baselines", action="store_true", default=False,
                    help="record measured results in the baseline files instead of gating")
    group.addoption("--allow-improvement", action="store_true", default=False,
                    help="pass results better than the baseline beyond tolerance (by default "
                         "they fail: the baseline is stale)")
    group.addoption("--vaccbench-json", default=None, metavar="PATH",
                    help="write results as JSON, per-image predictions in PATH's stem + .predictions/")
    group.addoption("--vaccbench-html", default=None, metavar="PATH",
                    help="write a self-contained HTML report: table and top1-delta plot")
    group.addoption("--vaccbench-history", default=None, metavar="PATH",
                    help="append this session's results to a SQLite history (see `vaccbench trend`)")
    group.addoption("--baselines", default=None, metavar="DIR",
                    help="folder of baseline YAMLs (default: the suite file's `baselines`)")
    group.addoption("--vaccbench-cache", default=None, metavar="DIR",
                    help="cache of exported models, preprocessed images and predictions (default: "
                         "$VACCBENCH_CACHE, else $XDG_CACHE_HOME/vaccbench, else ~/.cache/vaccbench)")
    group.addoption("--no-image-cache", action="store_true", default=False,
                    help="decode every image again instead of reusing the preprocessed crops kept "
                         "in <vaccbench-cache>/images")
    group.addoption("--confidence", type=float, default=0.95, metavar="P",
                    help="confidence level of the sampling allowance and agreement intervals "
                         "(default 0.95)")
    group.addoption("--batch-size", type=int, default=None, metavar="N",
                    help="inference batch size (default: the backend's fastest, e.g. 8 for reference)")
    group.addoption("--threads", type=int, default=None, metavar="N",
                    help="inference threads (default: all cores, divided among xdist workers)")
    group.addoption("--preprocess", default=None, metavar="vdsp:JSON",
                    help="CPU backends: replace each model's preprocessing by an emulation of the "
                         "accelerator's vdsp_params JSON; recorded as <precision>+vdsp-<name>")
    group.addoption("--vamp-bin", default=None, metavar="CMD",
                    help="the vamp runner, a path or command line (default: vamp on PATH)")
    group.addoption("--vamp-root", default=None, metavar="DIR",
                    help="compiled models named <name>-<int8-percentile|fp16-none>-3_H_W-vacc/<name>")
    group.addoption("--vamp-timeout", type=float, default=3600.0, metavar="S",
                    help="seconds one vamp run may take before it is killed (default: 3600)")
    group.addoption("--vamp-instances", type=int, default=1, metavar="N", help="vamp -i (default 1)")
    group.addoption("--vamp-processes", type=int, default=1, metavar="N", help="vamp -p (default 1)")
    group.addoption("--vamp-batch", type=int, default=1, metavar="N", help="vamp -b (default 1)")
    group.addoption("--vamp-args", default=None, metavar="ARGS",
                    help="more vamp arguments, e.g. '--hwconfig hw.json'")
    group.addoption("--vsx-python", default=None, metavar="CMD",
                    help="the Python that imports vaststreamx, a path or command line (default: "
                         "this one); without the SDK every vsx test is skipped, saying so")
    group.addoption("--vsx-root", default=None, metavar="DIR",
                    help="compiled models for --backend=vsx, laid out as for --vamp-root "
                         "(default: --vamp-root)")
    group.addoption("--vsx-mode", default="sync", choices=("sync", "async"), metavar="MODE",
                    help="vsx: stream.run_sync per batch (default), or run_async with a consumer thread")
    group.addoption("--vsx-batch", type=int, default=1, metavar="N",
                    help="vsx: the batch size the compiled model is loaded with (default 1)")
    group.addoption("--vsx-timeout", type=float, default=300.0, metavar="S",
                    help="vsx: seconds the stream may stay silent (a call that does not return) "
                         "before its process is killed and the test fails (default: 300)")
    group.addoption("--devices", default=None, metavar="IDS",
                    help="accelerator ids for vamp -d and vsx.set_device, e.g. 0,1,2,3: each xdist "
                         "worker (or the one pytest process) holds a free one for the session, "
                         "through a file lock")
    group.addoption("--device-locks", default=None, metavar="DIR",
                    help="folder of the --devices lock files, shared by every session that uses "
                         "the same cards (default: <vaccbench-cache>/device-locks)")
    group.addoption("--ort-provider", default="cpu", metavar="NAME",
                    help="onnxruntime execution provider: cpu (default), cuda, or a full provider name")
    group.addoption("--onnx-dir", default=None, metavar="DIR",
                    help="ready ONNX graphs (<key>.onnx, or the zoo's <arch>_<size>.onnx) for onnxruntime; "
                         "models without one are exported from their weights and cached")
    group.addoption("--opset", type=int, default=11, metavar="N", help="ONNX opset of exports (default 11)")
    group.addoption("--int8-per-tensor", action="store_true", default=False,
                    help="int8: one weight scale per tensor (default: per output channel, as the zoo's builds)")
    group.addoption("--int8-per-channel", action="store_true", default=False,
                    help="deprecated: per-channel weights are the default now")
    group.addoption("--vamc-config", default=None, metavar="FILE",
                    help="int8/fp16: a vamc build config (either layout) whose build the onnxruntime "
                         "emulation mirrors: mode, per-channel, count, float layers, preprocessing")
    group.addoption("--ort-calibrator", action="store_true", default=False,
                    help="int8: onnxruntime's own (slow) calibrators instead of the streaming ones")
    group.addoption("--calib-images", type=int, default=1000, metavar="N",
                    help="int8: calibration images drawn from the dataset, covering its classes "
                         "(default 1000); they are left out of the accuracy count")
    group.addoption("--calib-include", action="store_true", default=False,
                    help="int8: count the calibration images too")
    group.addoption("--results", default=None, metavar="DIR",
                    help="gate result files made elsewhere instead of running the backend: the test "
                         "<family>/<key>[<backend>-<precision>] scores DIR/<family>/<key>/<backend>-"
                         "<precision>/ (the zoo's result.txt, a vamp output folder and its datalist, "
                         "or this tool's predictions .npz); ground truth from --labels or the "
                         "images' class folders; needs --dataset-name (see docs/score.md)")
    group.addoption("--results-subset", action="store_true", default=False,
                    help="--results: the files cover part of the --labels images on purpose; score "
                         "them as a sample of it (the gate adds the sampling allowance)")
    group.addoption("--vaccbench-strict", action="store_true", default=False,
                    help="a gate for CI: every skip of a selected accuracy test (no weights, no "
                         "compiled model, no vamp binary, no baseline) fails with its reason")
    group.addoption("--accept-broken", action="store_true", default=False,
                    help="--update-baselines: record results the gate classifies as a BROKEN "
                         "BUILD too (refused by default)")
    group.addoption("--accept-other-images", action="store_true", default=False,
                    help="--update-baselines: replace entries measured on more images, or on other "
                         "images, than the result (refused by default: it weakens the gate)")
    group.addoption("--max-allowed", default=str(WEAK_LIMIT), metavar="LIMIT",
                    help="a gate that cannot see a drop of this many points (or this multiple "
                         f"of the tolerance, e.g. {WEAK_LIMIT}) is weak: its status says so, and "
                         f"--vaccbench-strict fails it (default {WEAK_LIMIT})")
    group.addoption("--dry-run", action="store_true", default=False,
                    help="--update-baselines: print the diff of every baseline file it would "
                         "change, write nothing")
    group.addoption("--int8-keep-fp32", default=None, metavar="LAYERS",
                    help="onnxruntime int8: leave these layers in fp32, e.g. conv0,conv17,matmul0 "
                         "(ordinals as in vamc's skip_conv_layers); recorded as <precision>+keep-...")
    group.addoption("--vaccbench-store", default=None, metavar="DIR",
                    help="predictions store (a shared folder or CI artifact): --update-baselines "
                         "keeps each recorded run's per-image predictions there, named by digest "
                         "in the baseline entry; runs are then paired with them image by image")
    group.addoption("--vaccbench-sequential", action="store_true", default=False,
                    help="evaluate in a seeded class-stratified order, a chunk at a time, and stop "
                         "when an anytime-valid bound on the difference from the stored predictions "
                         "decides (needs --vaccbench-store; see docs/sequential.md)")
    group.addoption("--no-triage", action="store_true", default=False,
                    help="a failing int8 test does not rank its layers (see docs/triage.md)")
    group.addoption("--triage-budget", type=float, default=triage.DEFAULT_BUDGET, metavar="SECONDS",
                    help="time a failing onnxruntime int8 test may spend ranking its layers "
                         f"(default {triage.DEFAULT_BUDGET:.0f})")
    UPDATE_COMMAND_OPTIONS[:] = [o for o in group.options if o.dest not in NOT_IN_UPDATE_COMMAND]
    ini.register(parser, group)  # every option above is also an ini key (see ini.py)


# Options the printed update command leaves out: it sets these itself, or they do not
# change what is measured (reports, gating modes). Every other option given is repeated.
NOT_IN_UPDATE_COMMAND = {"backend", "precision", "update_baselines", "dry_run", "accept_broken",
                         "accept_other_images", "allow_improvement", "vaccbench_json",
                         "vaccbench_html", "vaccbench_history", "vaccbench_strict", "max_allowed",
                         "confidence", "no_triage", "triage_budget", "vaccbench_sequential"}
UPDATE_COMMAND_OPTIONS: list[Any] = []  # pytest's Argument objects, filled by add_options


def update_command(nodeid: str, backend: str, precision: str, opt: Getter,
                   subset_name: Callable[[], str],
                   declared: Iterable[Any] | None = None) -> str:
    """The command that records a test's result, as it would run: every option of this
    session that shapes the numbers, and a --dataset-name of its own for a subset
    (--update-baselines refuses to record a subset under the whole dataset's name).
    `subset_name` gives the dataset's name, asked only for such a subset."""
    args = ["pytest", nodeid, f"--backend={backend}", f"--precision={precision}"]
    for option in UPDATE_COMMAND_OPTIONS if declared is None else declared:
        value = opt(option.dest)
        if value is None or value == option.default:
            continue
        flag = option.names()[-1]
        args.append(flag if value is True else f"{flag}={value}")
    limit = opt("limit")
    if limit and opt("dataset_name") is None:
        args.append(f"--dataset-name={subset_name()}-limit{limit}")
    return shlex.join([*args, "--update-baselines"])


VAMP_OPTIONS = ("vamp_bin", "vamp_root", "vamp_timeout", "vamp_instances", "vamp_processes",
                "vamp_batch", "vamp_args")
VSX_OPTIONS = ("vsx_python", "vsx_root", "vsx_mode", "vsx_batch", "vsx_timeout")
BACKEND_OPTIONS = ("ort_provider", "onnx_dir", "opset", "int8_per_tensor", "vamc_config",
                   "ort_calibrator", "calib_images", "calib_include", "int8_keep_fp32")


def run_options(opt: Getter, cache: Path, device: str | None = None,
                env: dict[str, str] | None = None, cpus: int | None = None) -> RunOptions:
    """What the backends read, from the option values: --weights-dir (else
    $VACCBENCH_WEIGHTS, else ./weights), --threads (else the cores divided among the xdist
    workers), and the backend options in `extra`."""
    env = os.environ if env is None else env
    weights = opt("weights_dir") or env.get("VACCBENCH_WEIGHTS") or "weights"
    workers = int(env.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    threads = opt("threads") or max(1, (cpus or os.cpu_count() or 1) // workers)
    return RunOptions(weights_dir=Path(weights).expanduser().resolve(), cache_dir=cache,
                      batch_size=opt("batch_size"), threads=threads, workers=threads,
                      extra={**{name: opt(name) for name in (*VAMP_OPTIONS, *VSX_OPTIONS)},
                             "device": device,
                             **{name: opt(name) for name in BACKEND_OPTIONS}},
                      image_cache=not opt("no_image_cache"))


def check_config(config: pytest.Config) -> None:
    """Usage errors at startup: contradicting or malformed options end the session with
    pytest's usage error (exit 4) before anything is collected."""
    opt = config.getoption
    try:
        check_options(vars(config.option))
    except VaccbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    for name in ("dry_run", "accept_broken", "accept_other_images"):
        if opt(name) and not opt("update_baselines"):
            raise pytest.UsageError(f"--{name.replace('_', '-')} applies to --update-baselines only")
    _check_int8_options(config)
    keep = opt("int8_keep_fp32")
    if keep:
        try:
            parse_keep(keep)
        except ValueError as exc:
            raise pytest.UsageError(f"--int8-keep-fp32={keep}: {exc}") from None
    if opt("triage_budget") < 0:
        raise pytest.UsageError(f"--triage-budget must be >= 0 seconds, got {opt('triage_budget')}")
    if opt("update_baselines") and opt("limit") and not opt("dataset_name"):
        raise pytest.UsageError(
            "--update-baselines with --limit would record a subset's figures under the whole "
            "dataset's name; add --dataset-name NAME to record the subset under its own name")
    _check_sequential_options(opt)
    _check_results_options(opt)
    confidence = float(opt("confidence"))
    if not 0 < confidence < 1:
        raise pytest.UsageError(f"--confidence must be between 0 and 1, got {confidence}")
    weak_limit(opt)


def weak_limit(opt: Getter) -> WeakLimit:
    """--max-allowed as a WeakLimit (a usage error when it is neither points nor a multiple)."""
    try:
        return WeakLimit.parse(opt("max_allowed"))
    except ValueError as exc:
        raise pytest.UsageError(f"--max-allowed={opt('max_allowed')}: {exc}") from None


def check_dataset(opt: Getter, dataset: Callable[[], Dataset]) -> None:
    """Usage errors found by reading a --dataset at startup, instead of one failure per test:
    a folder that is not a dataset (no labels, unknown layout, missing images), and an int8
    calibration set (--calib-images, for onnxruntime's int8 precisions) that would take
    every image, leaving none to count."""
    if opt("dataset") is None:
        return  # the built-in photos: read when a test needs them
    try:
        data = dataset()
    except VaccbenchError as exc:
        raise pytest.UsageError(f"--dataset: {exc}") from None
    int8 = [p for p in split_names(opt("precision")) if p.startswith("int8")]
    if not int8 or "onnxruntime" not in split_names(opt("backend")) or opt("calib_include") \
            or opt("vamc_config"):
        return
    count = opt("calib_images")
    if count >= len(data.samples):
        raise pytest.UsageError(
            f"--calib-images={count}: the int8 calibration set would take all "
            f"{len(data.samples)} images of {data.name}, leaving none to count; pass "
            f"--calib-images below {len(data.samples)} (e.g. {max(1, len(data.samples) // 4)}), "
            "or --calib-include to count the calibration images too")


def _check_results_options(opt: Getter) -> None:
    """--results scores files whose images and run are fixed: it needs the dataset's name
    and takes no --dataset or --limit."""
    if opt("results_subset") and not opt("results"):
        raise pytest.UsageError("--results-subset applies to --results only")
    if not opt("results"):
        return
    if not opt("dataset_name"):
        raise pytest.UsageError("--results needs --dataset-name NAME: the key of these images in "
                                "the baselines (e.g. imagenet-val)")
    for name in ("dataset", "limit"):
        if opt(name) is not None:
            raise pytest.UsageError(f"--{name} does not apply to --results: the result files name "
                                    "their images (ground truth: --labels FILE, or their class folders)")


def _check_sequential_options(opt: Getter) -> None:
    """--vaccbench-sequential stops a backend's run early: it needs the stored predictions,
    and neither records (full runs only) nor scores result files (every image is in them)."""
    if not opt("vaccbench_sequential"):
        return
    if opt("update_baselines"):
        raise pytest.UsageError("--vaccbench-sequential stops before the last image; "
                                "--update-baselines records full runs: drop one of them")
    if opt("results"):
        raise pytest.UsageError("--vaccbench-sequential does not apply to --results: the result "
                                "files hold every image's output already, so stopping early saves "
                                "no device time; drop it (--vaccbench-store alone still pairs them "
                                "with the stored run)")
    if not opt("vaccbench_store"):
        raise pytest.UsageError("--vaccbench-sequential needs --vaccbench-store DIR: the "
                                "stored predictions each test is paired with")


def _check_int8_options(config: pytest.Config) -> None:
    """--int8-per-channel is the default now (deprecated); --vamc-config must be readable."""
    if config.getoption("int8_per_channel"):
        if config.getoption("int8_per_tensor"):
            raise pytest.UsageError("--int8-per-channel and --int8-per-tensor contradict each other "
                                    "(per-channel is the default: drop --int8-per-channel)")
        config.issue_config_time_warning(pytest.PytestDeprecationWarning(
            "--int8-per-channel is deprecated: per-channel weights are the default (--int8-per-tensor switches)"), 2)
    if config.getoption("vamc_config"):
        from ..build_config import read_build_config

        try:
            read_build_config(Path(config.getoption("vamc_config")).expanduser())
        except VaccbenchError as exc:
            raise pytest.UsageError(f"--vamc-config: {exc}") from None


def device_pool(config: pytest.Config, cache: Path) -> DevicePool | None:
    """--devices: the process that runs tests holds a free device for the session (an xdist
    controller runs none and holds none); more workers than devices is a usage error. An
    xdist worker that finds no free device fails its tests with the reason (a usage error
    there would reach the terminal as xdist's traceback of a worker that did not start)."""
    value = config.getoption("devices")
    if not value:
        return None
    is_worker = hasattr(config, "workerinput")
    in_controller = not is_worker and config.getoption("numprocesses", None)
    # a worker knows the count from xdist; the controller (or a plain run) from its own -n,
    # never from an environment it may have inherited from an outer xdist run
    workers = (os.environ.get("PYTEST_XDIST_WORKER_COUNT") if is_worker
               else config.getoption("numprocesses", None))
    locks = config.getoption("device_locks")
    try:
        pool = DevicePool(parse_devices(value),
                          Path(locks).expanduser().resolve() if locks else cache / "device-locks")
        check_workers(pool.ids, int(workers or 1))
    except VaccbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not in_controller:
        try:
            pool.acquire()
        except VaccbenchError as exc:
            if not hasattr(config, "workerinput"):
                raise pytest.UsageError(str(exc)) from None
            pool.problem = str(exc)
    return pool
