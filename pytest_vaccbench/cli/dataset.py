"""`vaccbench dataset`: how a dataset folder is read."""

from __future__ import annotations

import argparse

from . import command, dataset_args


@command("dataset", "show how a dataset is read: layout, images, classes, fingerprint", dataset_args)
def _dataset_info(args: argparse.Namespace) -> int:
    from ..dataset import limit, resolve

    data = limit(resolve(args.dataset, args.labels), args.limit)
    print(f"name:        {data.name}\nroot:        {data.root}\nlayout:      {data.layout}\n"
          f"images:      {len(data.samples)} of {data.total}\n"
          f"classes:     {len(set(data.labels))}\nfingerprint: {data.fingerprint()}")
    return 0
