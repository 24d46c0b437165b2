"""The benchmark scripts stay runnable (they are not run for timings here), and the profile
script sorts py-spy samples into the right stages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def test_every_benchmark_is_listed_here() -> None:
    assert set(SCRIPTS) >= {"end_to_end.py", "shared_recipe.py", "inference_overhead.py", "profile_run.py"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_imports_and_explains_itself(script: str) -> None:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True,
                          text=True, cwd=BENCHMARKS.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:") and "--" in proc.stdout


def test_profile_stages_from_a_hand_built_pyspy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from profile_run import OTHER, read_samples

    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join([
        # a decode thread's samples come first in the file: the main thread is found by name
        "thread (7): vaccbench-decode_0;_worker (concurrent/futures/thread.py:81);"
        "fill (pytest_vaccbench/backends/__init__.py:170);load_crop (pytest_vaccbench/preprocess.py:210) 30",
        "thread (7): vaccbench-decode_0;_worker (concurrent/futures/thread.py:81);get (queue.py:171) 5",
        "thread (1): MainThread;<module> (pytest/__main__.py:9);_find_and_load (<frozen importlib._bootstrap>:1165) 4",
        # an import while the model is built is set-up, not a start-up import
        "thread (1): MainThread;evaluate (pytest_vaccbench/run.py:193);build_model (pytest_vaccbench/models.py:127);"
        "_find_and_load (<frozen importlib._bootstrap>:1165) 3",
        "thread (1): MainThread;evaluate (pytest_vaccbench/run.py:193);run_session (x.py:1);"
        "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:406) 20",
        "thread (1): MainThread;evaluate (pytest_vaccbench/run.py:193);Future.result (concurrent/futures/_base.py:451) 2",
        "thread (1) 1",  # no Python frames: interpreter start-up or exit
    ]) + "\n")
    main, others = read_samples(raw)
    assert main == {"imports": 4, "ONNX export, model / session set-up": 3, "inference": 20,
                    "waiting for decoded batches": 2, OTHER: 1}
    assert others == {"decode + resize": 30, "decode thread idle": 5}
