"""The plugin's options read from the ini file too (`[tool.pytest.ini_options]`, pytest.ini).

Every option of the `vaccbench` group gets an ini key: its dest, prefixed `vaccbench_` unless
it already is (`--dataset` -> `vaccbench_dataset`, `--vaccbench-json` -> `vaccbench_json`).
The command line (with PYTEST_ADDOPTS and `addopts`) wins, then the ini file, then the
option's default. A relative path in the ini file that exists beside the ini file is taken
from there, as pytest does with its own paths.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

NOT_IN_INI = frozenset({"update_baselines"})  # an action per run, not a setting
PATH_METAVARS = frozenset({"PATH", "DIR", "FILE", "CMD"})


@dataclass(frozen=True)
class IniOption:
    dest: str
    names: tuple[str, ...]
    default: Any
    convert: Callable[[str], Any] | None
    metavar: str | None

    @property
    def ini(self) -> str:
        return self.dest if self.dest.startswith("vaccbench_") else f"vaccbench_{self.dest}"


_OPTIONS: list[IniOption] = []


def register(parser: pytest.Parser, group: pytest.OptionGroup) -> list[IniOption]:
    """An ini key for each option of `group` (but NOT_IN_INI)."""
    _OPTIONS.clear()
    for option in group.options:
        if option.dest in NOT_IN_INI:
            continue
        spec = IniOption(option.dest, tuple(option.names()), option.default,
                         getattr(option, "type", None), option.attrs().get("metavar"))
        parser.addini(spec.ini, f"default for {spec.names[-1]}",
                      type="bool" if isinstance(spec.default, bool) else "string", default=None)
        _OPTIONS.append(spec)
    return list(_OPTIONS)


def registered() -> list[IniOption]:
    """The options `register` gave an ini key, in the order of the option group."""
    return list(_OPTIONS)


def _given(config: pytest.Config) -> set[str]:
    """Option names on the command line, in PYTEST_ADDOPTS or in `addopts`."""
    args = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
            *config.getini("addopts")]
    return {str(a).split("=", 1)[0] for a in args if str(a).startswith("--")}


def resolve(config: pytest.Config) -> None:
    """Fill the options the command line left unset from the ini file."""
    given = _given(config)
    folder = config.inipath.parent if config.inipath else Path.cwd()
    for spec in _OPTIONS:
        raw = config.getini(spec.ini)
        if raw is None or raw == "" or given & set(spec.names):
            continue
        if isinstance(raw, str) and spec.convert is not None:
            try:
                raw = spec.convert(raw)
            except ValueError:
                raise pytest.UsageError(f"{config.inipath}: {spec.ini} = {raw!r} is not a valid "
                                        f"{spec.names[-1]} value") from None
        if isinstance(raw, str) and spec.metavar in PATH_METAVARS and (folder / raw).exists():
            raw = str(folder / raw)
        setattr(config.option, spec.dest, raw)
