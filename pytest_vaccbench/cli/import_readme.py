"""`vaccbench import-readme`: the command line of the README importer (pytest_vaccbench.importer)."""

from __future__ import annotations

import argparse
import sys

from . import command, output_file
from ..importer import import_readme


def _import_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("readme", help="the family's README (markdown, plain text or GitHub-page text)")
    parser.add_argument("-o", "--output", type=output_file, default=None, metavar="FILE",
                        help="baseline file to write or update (default: baselines/<family>.yaml)")
    parser.add_argument("--family", default=None, metavar="NAME",
                        help="family name (default: the output file's name, else the README's title)")


@command("import-readme", "write or update a family's baseline YAML from its model-zoo README",
         _import_args)
def _import_command(args: argparse.Namespace) -> int:
    result = import_readme(args.readme, args.output, args.family)
    for problem in result.problems:
        print(problem.format(args.readme), file=sys.stderr)
    if result.created:
        print(f"wrote {result.path} (family {result.family}): {len(result.added)} models from the "
              "README table")
    else:
        print(f"updated {result.path} (family {result.family}): {len(result.models)} README rows, "
              f"{len(result.added)} added, {len(result.changed)} field(s) changed, "
              f"{len(result.kept)} kept that are no README row")
        for line in result.changed:
            print(f"  changed {line}")
    if result.no_arch:
        print(f"  no architecture (library/arch null): {', '.join(result.no_arch)}")
    return 0
