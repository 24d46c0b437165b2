"""docs/int8.md: every ```console block's commands run, and print exactly the lines shown."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "int8.md"
RUN_CLI = "import sys; from pytest_vaccbench.cli import main; sys.exit(main(sys.argv[1:]))"


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ ` line of the console blocks."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
    return found


COMMANDS = console_commands(DOC.read_text())


def test_the_page_shows_commands() -> None:
    assert len(COMMANDS) >= 2 and all(cmd.startswith("vaccbench ") and out for cmd, out in COMMANDS)


@pytest.mark.parametrize("command, expected", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_console_block_output(command: str, expected: list[str]) -> None:
    args = shlex.split(command)[1:]
    done = subprocess.run([sys.executable, "-c", RUN_CLI, *args], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected
