"""docs/add-a-family.md: every ```console command runs, in order, in a fresh folder holding
the README it imports, and prints every line the page shows (spacing aside)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "add-a-family.md"


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, shown output lines) of each `$ ` line of the ```console blocks."""
    commands: list[tuple[str, list[str]]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```console"
        elif inside and line.startswith("$ "):
            commands.append((line[2:], []))
        elif inside and commands:
            commands[-1][1].append(line)
    return commands


def _words(line: str) -> list[str]:
    return line.split()


@pytest.mark.slow  # four vaccbench runs, each importing timm
def test_the_commands_of_the_page_print_what_it_shows(tmp_path: Path) -> None:
    commands = console_commands(DOC.read_text())
    assert len(commands) == 6  # the page's examples are all here
    shutil.copytree(ROOT / "tests" / "data" / "readmes", tmp_path / "tests" / "data" / "readmes")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    for command, shown in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        assert done.returncode == 0, f"$ {command}\n{done.stdout}"
        printed = [_words(line) for line in done.stdout.splitlines()]
        at = 0
        for line in shown:  # in the order shown
            found = next((i for i in range(at, len(printed)) if printed[i] == _words(line)), None)
            assert found is not None, f"$ {command}\nnot printed: {line}\nprinted:\n{done.stdout}"
            at = found + 1
