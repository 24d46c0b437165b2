"""README model names -> baseline keys and the architecture that builds them here.

One normalisation for every name (`normalise`: case, spaces, brackets, '-' -> '_'), used
to look a row up in `ALIASES`, to guess a timm architecture, and to match keys that differ
only in case; keys (`model_key`) are safe identifiers for test ids and file names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from .tables import Problem, TableRow

@dataclass(frozen=True)
class Alias:
    """What builds a README row here. `key_name` is the source library's own model name where
    the README writes another (it names the key); `note` explains the choice in the YAML."""

    library: str | None
    arch: str | None
    key_name: str | None = None
    note: str = ""


def _timm(arch: str, note: str = "", key_name: str | None = None) -> Alias:
    return Alias("timm", arch, key_name, note)


def _none(note: str) -> Alias:
    return Alias(None, None, None, note)


NO_TAG = "architecture only: timm has no pretrained tag for it"
# README row (first matching source, model name) -> architecture. Names are today's
# (timm 1.0.x, torchvision 0.2x); rows of a timm/torchvision source whose name that library
# still builds need no entry.
ALIASES: dict[str, dict[str, Alias]] = {
    "timm": {
        "mobilenetv2": _timm("mobilenetv2_100", key_name="mobilenetv2_100"),
        "inception_v3": _timm("inception_v3.tv_in1k",
                              "timm 0.6's plain inception_v3 = torchvision's weights"),
        "tf_inception_v3": _timm("inception_v3.tf_in1k", "was tf_inception_v3 in timm 0.6"),
        "adv_inception_v3": _timm("inception_v3.tf_adv_in1k", "was adv_inception_v3 in timm 0.6"),
        "gluon_inception_v3": _timm("inception_v3.gluon_in1k", "was gluon_inception_v3 in timm 0.6"),
    },
    "torchvision": {
        "mobilenetv2": Alias("torchvision", "mobilenet_v2", key_name="mobilenet_v2"),
    },
    "mmcls": {
        "mobilenetv2": _timm("mobilenetv2_100", "mmcls MobileNetV2 widen_factor 1.0: same topology"),
    },
    "keras": {
        "mobilenetv2": _timm("mobilenetv2_100", "keras.applications MobileNetV2 alpha 1.0: same topology"),
    },
    "ppcls": {
        "MobileNetV2_x0_25": _none("timm has no width-0.25 MobileNetV2; torchvision's is width 1.0 only"),
        "MobileNetV2_x0_5": _timm("mobilenetv2_050"),
        "MobileNetV2_x0_75": _timm("mobilenetv2_075", NO_TAG),
        "MobileNetV2": _timm("mobilenetv2_100"),
        "MobileNetV2_x1_5": _none("timm has no width-1.5 MobileNetV2; torchvision's is width 1.0 only"),
        "MobileNetV2_x2_0": _none("timm has no width-2.0 MobileNetV2; torchvision's is width 1.0 only"),
        "MobileNetV2_ssld": _timm("mobilenetv2_100", "SSLD-distilled weights, width 1.0 topology"),
        "inception_v3": _timm("inception_v3", "PaddleClas InceptionV3: same topology as timm's"),
        "GhostNet_x0_5": _timm("ghostnet_050", NO_TAG),
        "GhostNet_x1_0": _timm("ghostnet_100"),
        "GhostNet_x1_3": _timm("ghostnet_130", NO_TAG),
        "GhostNet_x1_3_ssld": _timm("ghostnet_130", "SSLD-distilled weights, width 1.3 topology"),
    },
    "official": {
        "RepVGG-A0": _timm("repvgg_a0"),
        "RepVGG-A1": _timm("repvgg_a1"),
        "RepVGG-A2": _timm("repvgg_a2"),
        "RepVGG-B0": _timm("repvgg_b0"),
        "RepVGG-B1": _timm("repvgg_b1"),
        "RepVGG-B1g2": _none("timm registers repvgg_b1g4, b2g4, b3g4 but no g2 variant"),
        "RepVGG-B1g4": _timm("repvgg_b1g4"),
        "RepVGG-B2": _timm("repvgg_b2"),
        "RepVGG-B2g4": _timm("repvgg_b2g4"),
        "RepVGG-B3": _timm("repvgg_b3"),
        "RepVGG-B3g4": _timm("repvgg_b3g4"),
    },
}
BUILD_LIBRARIES = ("timm", "torchvision")

ArchCheck = Callable[[str, str], "bool | None"]


@lru_cache(maxsize=None)
def _library_names(library: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """(architectures, pretrained tags) of an importable library; None when it cannot be imported."""
    try:
        if library == "timm":
            import timm

            return frozenset(timm.list_models()), frozenset(timm.list_pretrained())
        import torchvision.models

        return frozenset(torchvision.models.list_models()), frozenset()
    except (ImportError, OSError):
        return None


def installed_arch(library: str, arch: str) -> bool | None:
    """Does the installed library build `arch` (with its pretrained tag, if it names one)?
    None when the library cannot be imported: the alias table is then taken on trust."""
    names = _library_names(library)
    if names is None:
        return None
    archs, tags = names
    return arch in tags if "." in arch else arch in archs


def normalise(name: str) -> str:
    """`inception v4` -> inception_v4, `GhostNet_x0_5` -> ghostnet_x0_5,
    `ShuffleNetV1 0.5x (group=3)` -> shufflenetv1_0.5x_group_3."""
    return re.sub(r"[^a-z0-9.]+", "_", name.lower()).strip("_")


def safe_name(name: str) -> str:
    """A README name as a key part: letters, digits, '_', '-', '.' only (case kept)."""
    return re.sub(r"_*[^A-Za-z0-9_.\-]+_*", "_", name).strip("_") or "_"


def model_key(source: str, name: str) -> str:
    """`<source>-<name>`: the test id and weight-file name of a row."""
    return f"{safe_name(source)}-{safe_name(name)}"


def _alias(source: str, name: str) -> tuple[str, Alias] | None:
    """(the alias table's spelling, its alias) of a row, matched by the normalised name."""
    wanted = normalise(name)
    return next(((written, alias) for written, alias in ALIASES.get(source, {}).items()
                 if normalise(written) == wanted), None)


def resolve(row: TableRow, check: ArchCheck, problems: list[Problem]) -> tuple[str, Alias]:
    """(key, alias) of one row: the alias table, then the row's own (normalised) name for a
    timm/torchvision row, then (timm importable) the normalised name if timm builds it."""
    label = f"{'/'.join(row.sources)} {row.name}"
    found = next((hit for hit in (_alias(s, row.name) for s in row.sources) if hit), None)
    written, alias = found if found else (row.name, None)
    if alias is None and row.sources[0] in BUILD_LIBRARIES:
        alias = Alias(row.sources[0], normalise(row.name))
    if alias is None:
        guess = normalise(row.name)
        known = check("timm", guess)
        if known:
            alias = _timm(guess, "guessed from the README name: check it is the same network")
            problems.append(Problem(row.line, f"{label}: no alias; guessed timm {guess!r} from the name "
                                              "(add it to importer.names.ALIASES once checked)"))
        else:
            why = f"timm has no {guess!r}" if known is False else "timm is not importable"
            alias = _none("no alias in the importer for this row")
            problems.append(Problem(row.line, f"{label}: no architecture known ({why}; add it to "
                                              "importer.names.ALIASES); library/arch left null"))
    elif alias.arch is not None and check(alias.library, alias.arch) is False:
        problems.append(Problem(row.line, f"{label}: {alias.library} has no architecture {alias.arch!r}; "
                                          "library/arch left null"))
        alias = Alias(None, None, alias.key_name, f"{alias.library} {alias.arch} not found at import")
    return model_key(row.sources[0], alias.key_name or written), alias
