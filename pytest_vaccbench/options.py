"""Option values checked before collection: a typo is one usage error, not a wall of skips.

`check_options` takes the option values by name (pytest's `dest` names) and raises a
`VaccbenchError` naming the option, the value and the valid values, with the closest valid
name for a misspelt backend, precision or calibration; a report file that cannot be written
(a folder, a file where a folder goes) is refused by the rule every output follows
(safefiles.output_target). It knows nothing of pytest.
"""

from __future__ import annotations

import difflib
import shlex
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .backends import available, get_backend
from .dataset import builtin_root
from .errors import VaccbenchError, control_characters, printable
from .safefiles import output_target

POSITIVE = ("limit", "threads", "batch_size", "calib_images", "vamp_instances", "vamp_processes",
            "vamp_batch", "vsx_batch", "opset")
FOLDERS = ("weights_dir", "onnx_dir", "vamp_root", "vsx_root", "baselines", "results")
SECONDS = ("vamp_timeout", "vsx_timeout")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def split_names(values: Iterable[str] | None) -> tuple[str, ...]:
    """Values of a repeatable, comma-separated option (--backend a,b --backend c), or of
    its ini key (one string)."""
    if isinstance(values, str):
        values = [values]
    return tuple(v.strip() for item in values or () for v in item.split(",") if v.strip())


def _closest(value: str, valid: Iterable[str]) -> str:
    match = difflib.get_close_matches(value, list(valid), n=1, cutoff=0.5)
    return f"did you mean {match[0]}? " if match else ""


def backend_precisions(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The precisions of each named backend that can be imported here."""
    found = {}
    for name in names:
        try:
            found[name] = get_backend(name).precisions
        except ImportError:  # its libraries are not installed: its tests say so
            continue
    return found


def check_options(opt: Mapping[str, Any]) -> None:
    """Raise a VaccbenchError for the first option value that cannot work."""
    backends = split_names(opt.get("backend"))
    registry = sorted(available())
    for name in backends:
        if name not in registry:
            raise VaccbenchError(f"--backend={name}: unknown backend; {_closest(name, registry)}"
                                 f"valid: {', '.join(registry)}")
    precisions = split_names(opt.get("precision"))
    if precisions:
        known = backend_precisions(backends or registry)
        valid = sorted({p for ps in known.values() for p in ps})
        for precision in precisions:
            if precision not in valid:
                what = "calibration" if precision.startswith("int8") else "precision"
                raise VaccbenchError(
                    f"--precision={precision}: unknown {what} of backend(s) "
                    f"{', '.join(known) or '-'}; {_closest(precision, valid)}valid: {', '.join(valid)}")
    for name in POSITIVE:
        value = opt.get(name)
        if value is not None and value <= 0:
            raise VaccbenchError(f"{flag(name)}={value}: must be a positive integer")
    for name in SECONDS:
        if opt.get(name) is not None and not opt[name] > 0:
            raise VaccbenchError(f"{flag(name)}={opt[name]}: must be a positive number of seconds")
    if opt.get("vsx_mode") not in (None, "sync", "async"):  # an ini value skips argparse's choices
        raise VaccbenchError(f"--vsx-mode={opt['vsx_mode']}: must be sync or async")
    _check_paths(opt)
    dataset_name = opt.get("dataset_name")
    if dataset_name and control_characters(dataset_name):
        raise VaccbenchError(f"--dataset-name={printable(dataset_name)}: holds control characters "
                             "(an escape sequence?), which a baseline key cannot; give a plain "
                             "name, e.g. imagenet-val")
    for name, option in REPORT_FILES.items():
        if opt.get(name):
            try:
                output_target(Path(opt[name]), parents=True)
            except VaccbenchError as exc:
                raise VaccbenchError(f"{option}: {exc}") from None
    for name in COMMAND_LINES:
        if opt.get(name):
            split_command(opt[name], flag(name))
    if opt.get("devices") is not None:
        parse_devices(opt["devices"])


# report files, by dest -> option (pytest's own --junitxml too: a folder there fails only as
# the session ends, after every test ran), checked by safefiles.output_target's rule
REPORT_FILES = {"vaccbench_json": "--vaccbench-json", "vaccbench_html": "--vaccbench-html",
                "vaccbench_history": "--vaccbench-history", "xmlpath": "--junitxml"}
COMMAND_LINES = ("vamp_bin", "vamp_args", "vsx_python")  # split like a shell command line


def split_command(value: str, what: str) -> list[str]:
    """`value` split like a shell command line; an unbalanced quote is a VaccbenchError."""
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise VaccbenchError(f"{what}={value}: not a command line ({exc}): close the quote, or "
                             "escape it with a backslash") from None


MAX_NAMES = 5000  # names of a folder compared with a misspelt one (an image folder has 50,000)


def closest_path(value: str) -> str | None:
    """The existing path nearest to `value`, as the user wrote it: from its deepest existing
    folder on, each missing part replaced by the closest name in its folder; None when a
    part has no close name."""
    path = Path(value).expanduser()
    current = Path(path.anchor) if path.is_absolute() else Path(".")
    for part in path.parts[1 if path.is_absolute() else 0:]:
        if (current / part).exists() or part in (".", ".."):
            current = current / part
            continue
        try:
            names = [p.name for _, p in zip(range(MAX_NAMES), current.iterdir())]
        except OSError:
            return None
        match = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
        if not match:
            return None
        current = current / match[0]
    return str(current)


def _missing(name: str, value: str, what: str, note: str = "") -> VaccbenchError:
    near = closest_path(value)
    hint = f"; did you mean {near}?" if near and near != value else ""
    return VaccbenchError(f"{flag(name)}={value}: no such {what}{hint}{note}")


def _check_paths(opt: Mapping[str, Any]) -> None:
    checks: list[tuple[str, Callable[[Path], bool], str]] = [
        (name, Path.is_dir, "folder") for name in FOLDERS]
    checks += [("labels", Path.is_file, "file"), ("vamc_config", Path.is_file, "file")]
    for name, exists, what in checks:
        value = opt.get(name)
        if value is not None and not exists(Path(value).expanduser()):
            found = Path(value).expanduser()
            if found.exists():
                other = "a folder" if found.is_dir() else "a file" if found.is_file() else \
                    "a pipe or device"
                raise VaccbenchError(f"{flag(name)}={value}: is {other}, not a {what}")
            raise _missing(name, value, what)
    dataset = opt.get("dataset")
    if dataset is not None and not Path(dataset).expanduser().exists() and not builtin_root(dataset):
        raise _missing("dataset", dataset, "folder or file", " (built-in datasets: skimage-photos)")


def parse_devices(value: str) -> tuple[int, ...]:
    """--devices: comma-separated accelerator ids, non-negative integers, each once."""
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() for p in parts):
        raise VaccbenchError(f"--devices={value}: must be comma-separated non-negative integers, "
                             "e.g. 0,1,2,3")
    ids = tuple(int(p) for p in parts)
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise VaccbenchError(f"--devices={value}: device {', '.join(map(str, repeated))} given "
                             "more than once")
    return ids
