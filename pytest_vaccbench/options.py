"""Option values checked before collection: a typo is one usage error, not a wall of skips.

`check_options` takes the option values by name (pytest's `dest` names) and raises a
`VaccbenchError` naming the option, the value and the valid values, with the closest valid
name for a misspelt backend, precision or calibration. It knows nothing of pytest.
"""

from __future__ import annotations

import difflib
import shlex
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .backends import available, get_backend
from .dataset import builtin_root
from .errors import VaccbenchError

POSITIVE = ("limit", "threads", "batch_size", "calib_images", "vamp_instances", "vamp_processes",
            "vamp_batch", "opset")
FOLDERS = ("weights_dir", "onnx_dir", "vamp_root", "baselines")


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
    if opt.get("vamp_timeout") is not None and not opt["vamp_timeout"] > 0:
        raise VaccbenchError(f"--vamp-timeout={opt['vamp_timeout']}: must be a positive number of seconds")
    _check_paths(opt)
    for name in COMMAND_LINES:
        if opt.get(name):
            split_command(opt[name], flag(name))
    if opt.get("devices") is not None:
        parse_devices(opt["devices"])


COMMAND_LINES = ("vamp_bin", "vamp_args")  # split like a shell command line


def split_command(value: str, what: str) -> list[str]:
    """`value` split like a shell command line; an unbalanced quote is a VaccbenchError."""
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise VaccbenchError(f"{what}={value}: not a command line ({exc}): close the quote, or "
                             "escape it with a backslash") from None


def _check_paths(opt: Mapping[str, Any]) -> None:
    checks: list[tuple[str, Callable[[Path], bool], str]] = [
        (name, Path.is_dir, "folder") for name in FOLDERS]
    checks.append(("labels", Path.is_file, "file"))
    for name, exists, what in checks:
        value = opt.get(name)
        if value is not None and not exists(Path(value).expanduser()):
            raise VaccbenchError(f"{flag(name)}={value}: no such {what}")
    dataset = opt.get("dataset")
    if dataset is not None and not Path(dataset).expanduser().exists() and not builtin_root(dataset):
        raise VaccbenchError(f"--dataset={dataset}: no such folder or file, and not a built-in "
                             "dataset (skimage-photos)")


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
