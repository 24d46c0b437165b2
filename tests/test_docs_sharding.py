"""docs/sharding.md: the GitHub Actions and Kubernetes recipes run here as written, on one
machine, against the vamp test double (`vamp` on PATH is the stand-in; the paths in each
recipe's `env` point at a zoo of stand-in compiled models). Install and upload steps
(`uses:`, `pip install`) are the CI system's and are not run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).parent))
import colour_zoo  # noqa: E402
import vamp_standin  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "sharding.md"
pytest.importorskip("onnxruntime")
pytest.importorskip("xdist")
pytest.importorskip("pytest_split")


def yaml_blocks() -> list[Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return [doc for block in blocks for doc in YAML(typ="safe").load_all(block)]


def merged_outcomes(path: Path) -> dict[str, str]:
    return {t: r["outcome"] for t, r in json.loads(path.read_text())["session"]["ran"].items()}


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, str]:
    """A zoo to run in, `vamp` on PATH, and the values of the recipes' env on this machine."""
    root = colour_zoo.build(tmp_path / "project")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vamp").write_text(f"#!/bin/sh\nexec {vamp_standin.stub_command()} \"$@\"\n")
    (bin_dir / "vamp").chmod(0o755)
    (tmp_path / "results").mkdir()
    return {"PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent),
                                     os.environ["PATH"]]),
            "PYTHONPATH": str(ROOT), "ROOT": str(root), "TMP": str(tmp_path),
            "IMAGENET_VAL": str(root / "colours" / "images"), "VAMP_MODELS": str(root / "models"),
            "DEVICES": "0,1", "WORKERS": "0",  # -n 0: no xdist workers to start, faster
            "RESULTS": str(tmp_path / "results")}


def bash(script: str, env: dict[str, str], cwd: str, cache: str) -> subprocess.CompletedProcess:
    assert "${{" not in script, script
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env, "VACCBENCH_CACHE": cache}, timeout=300)


def runs_here(step: dict[str, Any]) -> bool:
    return "run" in step and not step["run"].lstrip().startswith("pip ")


@pytest.mark.slow
def test_the_recipes_run_as_written(machine: dict[str, str]) -> None:
    env, root, tmp = machine, machine["ROOT"], Path(machine["TMP"])
    docs = yaml_blocks()
    workflow = next(d for d in docs if "jobs" in d)
    shard, merge = workflow["jobs"]["shard"], workflow["jobs"]["merge"]
    assert set(shard["env"]) <= set(env), "a recipe env variable the test does not set"
    groups = shard["strategy"]["matrix"]["group"]
    assert groups == [1, 2, 3]
    for group in groups:  # night 1: no .test_durations yet, split by count
        for step in filter(runs_here, shard["steps"]):
            done = bash(step["run"].replace("${{ matrix.group }}", str(group)), env, root,
                        str(tmp / f"cache-gh-{group}"))
            assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: the broken model
            assert "No test durations found" in done.stdout
    outputs = [bash(step["run"], env, root, str(tmp / "cache-gh-merge"))
               for step in filter(runs_here, merge["steps"])]
    assert [o.returncode for o in outputs] == [1, 0], [o.stderr for o in outputs]  # red; durations
    shown = re.search(r"It prints what it merged:\n\n((?:    .+\n)+)", DOC.read_text())[1]
    for line in shown.splitlines():
        assert line.strip() in outputs[0].stdout, (line, outputs[0].stdout)
    gh = merged_outcomes(Path(root) / "nightly.json")
    assert len(gh) == 7 and list(gh.values()).count("failed") == 1
    suite = next(ET.parse(Path(root) / "nightly.xml").iter("testsuite"))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "1", "1")
    durations = json.loads((Path(root) / ".test_durations").read_text())
    assert set(durations) == set(gh)

    # Kubernetes, the next night: the durations the GitHub recipe stored
    shutil.copy(Path(root) / ".test_durations", Path(env["RESULTS"]) / ".test_durations")
    indexed = next(d for d in docs if d.get("kind") == "Job" and "completionMode" in d["spec"])
    merge_job = next(d for d in docs if d.get("kind") == "Job" and d is not indexed)
    spec = indexed["spec"]
    assert spec["completionMode"] == "Indexed" and spec["backoffLimitPerIndex"] >= 1
    container = spec["template"]["spec"]["containers"][0]
    assert {e["name"] for e in container["env"]} <= set(env)
    script = container["args"][0]
    assert "JOB_COMPLETION_INDEX" in script
    for index in range(spec["completions"]):
        done = bash(script, {**env, "JOB_COMPLETION_INDEX": str(index)}, root,
                    str(tmp / f"cache-k8s-{index}"))
        assert done.returncode in (0, 1), done.stdout + done.stderr
        assert "No test durations found" not in done.stdout  # pytest-split read them
    merger = merge_job["spec"]["template"]["spec"]["containers"][0]
    done = bash(merger["args"][0], env, root, str(tmp / "cache-k8s-merge"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "merged 3 shard report(s): 7 tests run of 7 selected" in done.stdout
    results = Path(env["RESULTS"])
    assert merged_outcomes(results / "nightly.json") == gh
    assert (results / "history.db").is_file() and (results / "nightly.html").is_file()
    assert set(json.loads((results / ".test_durations").read_text())) == set(gh)
