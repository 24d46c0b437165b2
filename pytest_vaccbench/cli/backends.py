"""`vaccbench backends`: the registered backends."""

from __future__ import annotations

import argparse

from . import command


@command("backends", "list the registered backends and their precisions")
def _backends(args: argparse.Namespace) -> int:
    from ..backends import available, get_backend

    for name, target in sorted(available().items()):
        try:
            precisions = ", ".join(get_backend(name).precisions)
        except ImportError as exc:  # e.g. onnxruntime not installed
            precisions = f"(cannot import: {exc})"
        print(f"{name:<12} {target}\n{'':<12} precisions: {precisions}")
    return 0
