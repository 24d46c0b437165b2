"""Safe names, contained paths and leftovers of killed runs (pytest_vaccbench.safefiles)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vaccbench.errors import VaccbenchError
from pytest_vaccbench.safefiles import inside, owner_tag, remove_orphans, safe_name


@pytest.mark.parametrize("name", ["timm-mobilenetv2_100", "fp32+vdsp-x", "imagenet-val", "a.b=c"])
def test_plain_names_are_kept(name: str) -> None:
    assert safe_name(name) == name


@pytest.mark.parametrize("name", ["..", "../../x", "/etc/passwd", ".hidden", "a/b", "a\\b", "", "x" * 200,
                                  "a..b", "name with spaces", "\0"])
def test_other_names_become_one_safe_component(name: str, tmp_path: Path) -> None:
    safe = safe_name(name)
    assert "/" not in safe and "\\" not in safe and ".." not in safe and not safe.startswith(".")
    assert 0 < len(safe) <= 80 and safe != name
    assert (tmp_path / safe).resolve().parent == tmp_path.resolve()


def test_distinct_names_stay_distinct() -> None:
    names = ["a/b", "a\\b", "a b", "a_b-x", "../a_b", "a/b/"]
    assert len({safe_name(n) for n in names}) == len(names)


def test_inside_refuses_paths_that_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / "sub").mkdir(parents=True)
    assert inside(root, root / "sub" / "f.npz") == root / "sub" / "f.npz"
    for bad in (root / ".." / "x", Path("/etc/x")):
        with pytest.raises(VaccbenchError, match="outside"):
            inside(root, bad)
    (root / "link").symlink_to(tmp_path)  # a planted link out of the cache
    with pytest.raises(VaccbenchError, match="outside"):
        inside(root, root / "link" / "x")


def test_leftovers_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()
    gone = tmp_path / f".m.onnx.{host}-{dead}.tmp"
    running = tmp_path / f".m.onnx.{owner_tag()}.tmp"
    other_host = tmp_path / f".m.onnx.elsewhere-{dead}.tmp"
    untagged = tmp_path / ".m.onnx.tmp"
    for path in (gone, running, other_host, untagged):
        path.write_text("x")
    assert remove_orphans(tmp_path, ".m.onnx.*tmp") == [gone]
    assert running.exists() and other_host.exists() and untagged.exists()
    assert owner_tag().endswith(f"-{os.getpid()}")
