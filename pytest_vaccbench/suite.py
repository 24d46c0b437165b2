"""Suite files: what to run. `suites/*.yaml` select families, models, backends and precisions.

```yaml
baselines: ../baselines          # folder of baseline YAMLs, relative to this file
families: all                    # or [mobilenet_v2, repvgg]
models: ["*"]                    # glob patterns over model keys, e.g. ["timm-*"]
backends: [reference]            # default when --backend is not given
precisions: [fp32]               # default when --precision is not given
strict: true                     # a skip of any of its tests fails (as --vaccbench-strict)
```
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .baselines import BaselineError, Family, ModelEntry, load_families, read_yaml

KNOWN_KEYS = {"baselines", "families", "models", "backends", "precisions", "description", "strict"}


def is_suite_file(path: Path) -> bool:
    """A suite file: a YAML file in a folder named `suites` (the plugin collects these)."""
    return path.suffix in (".yaml", ".yml") and path.parent.name == "suites"


@dataclass(frozen=True)
class Suite:
    path: Path
    baselines: Path
    families: tuple[str, ...] | None  # None = every file in the folder
    models: tuple[str, ...]
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    strict: bool = False  # every skip of its tests is a failure


def _names(value: Any, path: Path, key: str) -> tuple[str, ...] | None:
    if value in (None, "all"):
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BaselineError(f"`{key}` must be `all` or a list of names", path)


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise BaselineError("a suite file must be a mapping (baselines, families, models, ...)", path)
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise BaselineError(f"unknown suite keys {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}", path)
    return Suite(
        path=path,
        baselines=(path.parent / data.get("baselines", "../baselines")).resolve(),
        families=_names(data.get("families"), path, "families"),
        models=_names(data.get("models"), path, "models") or ("*",),
        backends=_names(data.get("backends"), path, "backends") or ("reference",),
        precisions=_names(data.get("precisions"), path, "precisions") or ("fp32",),
        strict=_flag(data.get("strict", False), path, "strict"),
    )


def _flag(value: Any, path: Path, key: str) -> bool:
    if not isinstance(value, bool):
        raise BaselineError(f"`{key}` must be true or false, got {value!r}", path)
    return value


def select_models(suite: Suite, baselines_dir: Path | None = None) -> list[ModelEntry]:
    """Models of the suite, in family then table order."""
    families: list[Family] = load_families(baselines_dir or suite.baselines, suite.families)
    return [entry for family in families for entry in family.models.values()
            if any(fnmatch.fnmatchcase(entry.key, pattern) for pattern in suite.models)]


KEYWORD_WORDS = frozenset({"and", "or", "not"})


def closest_models(expression: str, entries: Iterable[ModelEntry], n: int = 3) -> list[ModelEntry]:
    """The models whose key (or family, or a part of the key) is nearest to the names in a
    `-k` expression that selected none of them, best first."""
    words = [w for w in re.findall(r"[\w.+-]+", expression) if w.lower() not in KEYWORD_WORDS]
    scored: dict[str, tuple[float, ModelEntry]] = {}
    for entry in entries:
        names = {entry.key, entry.family, *re.split(r"[-_]", entry.key), entry.key.split("-", 1)[-1]}
        score = max((difflib.SequenceMatcher(None, w.lower(), name.lower()).ratio()
                     for w in words for name in names if name), default=0.0)
        if score >= 0.6 and score > scored.get(entry.test_name, (0.0,))[0]:
            scored[entry.test_name] = (score, entry)
    ranked = sorted(scored.values(), key=lambda item: (-item[0], item[1].test_name))
    return [entry for _, entry in ranked[:n]]

