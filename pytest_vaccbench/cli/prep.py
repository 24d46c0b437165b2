"""`vaccbench prep`: lay a dataset out for the accelerator (see prep.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..prep import class_folders, find_images, write_datalist, write_npz
from . import command, count, output_file, output_folder

def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="prep_command", required=True)
    folders = sub.add_parser("folders", help="flat val folder + val_label.txt -> wnid class folders",
                             description=class_folders.__doc__)
    folders.add_argument("dataset", help="flat folder of images (val_label.txt beside it or above)")
    folders.add_argument("target", type=output_folder, help="folder to create <wnid>/<image> in")
    folders.add_argument("--labels", default=None, help="label file `<image> <class index>`")
    folders.add_argument("--copy", action="store_true", help="copy instead of hard-linking")
    folders.set_defaults(prep_handler=_folders)
    npz = sub.add_parser("npz", help="images -> vamp npz inputs + datalist (the zoo's image2npz)",
                         description=write_npz.__doc__)
    npz.add_argument("dataset", help="folder of images, walked recursively")
    npz.add_argument("target", type=output_folder, help="folder for <parent folder>/<stem>.npz")
    npz.add_argument("--datalist", type=output_file, default=None,
                     help="datalist file to write (default: <target>/npz_datalist.txt)")
    npz.add_argument("--workers", type=count, default=os.cpu_count() or 1, help="decoding threads")
    npz.set_defaults(prep_handler=_npz)


@command("prep", "prepare data for the accelerator: class folders, vamp npz inputs", _configure)
def _prep(args: argparse.Namespace) -> int:
    return args.prep_handler(args)


def _folders(args: argparse.Namespace) -> int:
    result = class_folders(args.dataset, args.target, args.labels, args.copy)
    print(f"{args.target}: {result.linked} hard-linked, {result.copied} copied, "
          f"{result.present} already there")
    return 0


def _npz(args: argparse.Namespace) -> int:
    images = find_images(Path(args.dataset))
    target = args.target
    result = write_npz(images, target, args.workers)
    datalist = args.datalist or target / "npz_datalist.txt"
    write_datalist(result.paths, datalist)
    print(f"{target}: {result.written} npz written, {len(images) - result.written} already there; "
          f"datalist {datalist} ({len(images)} lines)")
    return 0
