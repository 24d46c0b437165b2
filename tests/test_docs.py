"""Every command the README and docs/ show is run, and its shown output must still be printed.

Each Markdown file's ```console blocks run in order in one fresh folder holding a copy of the
project's suites/, baselines/ and tests/ helpers, with `../shared` pointing at the real test
data, the venv's scripts first on PATH and one vaccbench cache for the whole session. A page
that needs another project (stand-in compiled models, say) names its builder in
doc_projects.PROJECTS; its `bin/` comes first on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from doc_commands import Command, blocks, missing_lines
from doc_projects import PROJECTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WITH_COMMANDS = [p for p in DOCS if blocks(p)]
COPIED = ("suites", "baselines", "tests", "benchmarks", "pytest_vaccbench", "docs", "pyproject.toml")


# --- the checker itself -------------------------------------------------------------------------

def test_blocks_parse_commands_output_and_status(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text("text\n```console\n$ echo a \\\n    b\na b\n$ false\n$ echo $?\n1\n"
                   "$ cat <<'END'\n$ x\nEND\nprinted\n```\n```bash\n$ not run\n```\n")
    (block,) = blocks(doc)
    first, second, third = block.commands
    assert (first.line, first.text, first.output) == (3, "echo a b", ["a b"])
    assert (second.text, second.shows_status, second.status, second.output) == ("false", True, 1, [])
    assert (third.text, third.output) == ("cat <<'END'\n$ x\nEND", ["printed"])


def test_missing_lines_ignores_spacing_durations_and_skips() -> None:
    printed = "head\n==== 2 passed in 3.21s ====\nmodel   top1\nx  71.0\ntail\n"
    assert missing_lines(["==== 2 passed in 9.99s ====", "[...]", "x 71.0"], printed) == []
    assert missing_lines(["x 71.1"], printed) == ["x 71.1"]  # a changed number is caught
    assert missing_lines(["x 71.0", "model top1"], printed) == ["model top1"]  # order matters


# --- the documents ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def doc_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("doc-cache")


def _workdir(tmp_path: Path, shared: Path) -> Path:
    work = tmp_path / "project"
    work.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, work / name)
    (tmp_path / "shared").symlink_to(shared.parent)
    return work


def _run(command: Command, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command.text], cwd=work, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("doc", WITH_COMMANDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shown_commands_print_what_the_doc_shows(doc: Path, tmp_path: Path, shared_data: Path,
                                                 doc_cache: Path, request: pytest.FixtureRequest) -> None:
    if doc.name in PROJECTS:
        work = PROJECTS[doc.name](request.getfixturevalue("pytester"))
    else:
        work = _workdir(tmp_path, shared_data)
    path = os.pathsep.join([str(work / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {**os.environ, "PATH": path,
           "VACCBENCH_CACHE": str(doc_cache), "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    env.pop("PYTEST_ADDOPTS", None)
    problems = []
    for block in blocks(doc):
        for command in block.commands:
            done = _run(command, work, env)
            where = f"{doc.relative_to(ROOT)}:{command.line}: $ {command.text}"
            want = command.status if command.shows_status else 0
            if want is not None and done.returncode != want:
                problems.append(f"{where}\n  exit status {done.returncode}, the doc shows {want}")
            missing = missing_lines(command.output, done.stdout)
            if missing:
                problems.append(f"{where}\n  not printed any more:\n    " + "\n    ".join(missing)
                                + "\n  printed:\n    " + "\n    ".join(done.stdout.splitlines()[-60:]))
    assert not problems, "\n\n".join(problems)


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    """The README's ```bash block (install, main job, both test tiers) is what CI runs, word for word."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    ci = (ROOT / ".ci" / "run").read_text()
    assert len(commands) == 4 and all(command in ci for command in commands), (commands, ci)
