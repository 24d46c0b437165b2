"""Console blocks of the README and docs/: the commands they show and the output they promise.

A ```console block holds commands (`$ ` lines; a trailing backslash continues a command on the
next line; a here-document `<<'END'` runs on to its END line) each followed by the output it
printed. Running a block runs its commands in order
in one folder; a command's shown output must appear in what it really printed, line by line
and in order, with spacing and durations ignored. A shown line `[...]` stands for any number
of lines; `...` inside a shown line stands for any text there (paths and dates of the machine
that ran it). `$ echo $?` shows the exit status of the command before it; a command not followed
by one must exit 0.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

SKIP = "[...]"
_FENCE = re.compile(r"^```(\S*)\s*$")
_HEREDOC = re.compile(r"<<'(\w+)'$")
_DURATION = re.compile(r"\b\d+(\.\d+)?s\b( \(\d+:\d\d:\d\d\))?")


@dataclass
class Command:
    line: int  # 1-based line of the `$ ` in the document
    text: str
    output: list[str] = field(default_factory=list)
    shows_status: bool = False  # followed by `$ echo $?`
    status: int | None = None  # the status that `echo $?` shows


@dataclass
class Block:
    path: Path
    line: int
    commands: list[Command]


def blocks(path: Path) -> list[Block]:
    """The ```console blocks of a Markdown file, in order."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        info, start, i = m.group(1), i + 1, i + 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if info == "console":
            found.append(Block(path, start, _commands(body, start + 1)))
    return found


def _commands(body: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    i = 0
    while i < len(body):
        text = body[i]
        if text.startswith("$ "):
            line, command = first_line + i, text[2:]
            while command.endswith("\\") and i + 1 < len(body):
                i += 1
                command = command[:-1].rstrip() + " " + body[i].strip()
            heredoc = _HEREDOC.search(command)
            if heredoc:  # the here-document's lines are part of the command
                end = body.index(heredoc.group(1), i + 1)
                command = "\n".join([command, *body[i + 1:end + 1]])
                i = end
            if command.strip() == "echo $?" and commands:
                commands[-1].shows_status = True
                status = body[i + 1].strip() if i + 1 < len(body) else ""
                commands[-1].status = int(status) if status.isdigit() else None
                i += 2
                continue
            commands.append(Command(line, command.strip()))
        elif commands:
            commands[-1].output.append(text)
        i += 1
    return commands


def normalise(line: str) -> str:
    """Spacing and durations differ from run to run; nothing else may."""
    return " ".join(_DURATION.sub("<T>", line).split())


def missing_lines(shown: list[str], printed: str) -> list[str]:
    """The shown lines that do not appear, in order, in what was printed (empty: it matches).

    `[...]` skips any number of printed lines; otherwise each shown line must be the next
    printed line that matches it, or a later one (lines the doc leaves out are allowed).
    """
    actual = [normalise(line) for line in printed.splitlines()]
    pos, missing = 0, []
    for want in shown:
        if want.strip() == SKIP or not want.strip():
            continue
        pattern = "*".join(re.sub(r"([\[\]?*])", r"[\1]", part) for part in normalise(want).split("..."))
        found = next((i for i in range(pos, len(actual)) if fnmatch.fnmatchcase(actual[i], pattern)), None)
        if found is None:
            missing.append(want)
        else:
            pos = found + 1
    return missing
