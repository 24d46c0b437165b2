"""`baselines.update_file`: minimal diffs on the real baseline files, atomic replacement that
survives kill -9, and the keys an update keeps."""

from __future__ import annotations

import difflib
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_vaccbench.baselines import (BaselineError, _plain, atomic_write, load_family,
                                        read_yaml, update_file)

ROOT = Path(__file__).resolve().parents[1]
BASELINES = sorted((ROOT / "baselines").glob("*.yaml"))
VALUES = {"top1": 12.345, "top5": 67.891, "n": 5, "fingerprint": "0123456789abcdef",
          "date": "2026-01-02", "versions": "pytest-vaccbench 0.1.0", "machine": "AMD EPYC",
          "options": {"batch_size": 32, "threads": 2}}


def _changed_lines(old: str, new: str) -> tuple[list[int], list[str]]:
    """0-based old line numbers that were replaced or deleted, and the added lines."""
    matcher = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    removed, added = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            removed += range(i1, i2)
            added += new.splitlines()[j1:j2]
            if i1 == i2:  # pure insertion: it sits before old line i1
                removed.append(i1 - 1)
    return removed, added


def _expected_block(path: Path, key: str) -> range:
    """Old line numbers (0-based) of a model's `expected:` block: from its key to the next key."""
    data = read_yaml(path)
    section = next(s for s in ("models", "extra_models") if key in (data.get(s) or {}))
    model = data[section][key]
    keys = list(model)
    first = model.lc.key("expected")[0]
    following = keys[keys.index("expected") + 1:]
    if following:
        end = model.lc.key(following[0])[0]
    else:  # the last key of the model: up to the next model, or the next section
        models = list(data[section])
        nxt = models[models.index(key) + 1:]
        tops = list(data)
        after = tops[tops.index(section) + 1:]
        end = (data[section].lc.key(nxt[0])[0] if nxt else
               data.lc.key(after[0])[0] if after else len(path.read_text().splitlines()))
    return range(first, end)


def _meaning_without(path: Path, key: str) -> dict:
    """The file's data as plain dicts, with one model left out."""
    data = _plain(read_yaml(path))
    for section in ("models", "extra_models"):
        (data.get(section) or {}).pop(key, None)
    return data


def _cases() -> list[tuple[Path, str]]:
    """The first and the last model of each section of each real baseline file."""
    cases = []
    for path in BASELINES:
        models = list(load_family(path).models.values())
        for section in ("models", "extra_models"):
            keys = [m.key for m in models if m.section == section]
            cases += [(path, k) for k in dict.fromkeys(keys[:1] + keys[-1:])]
    return cases


@pytest.mark.parametrize("source, key", _cases(), ids=lambda v: getattr(v, "name", v))
def test_diff_of_a_new_entry_is_inside_that_models_expected_block(tmp_path, source, key):
    path = tmp_path / source.name
    shutil.copy(source, path)
    old = path.read_text()
    block = _expected_block(path, key)

    assert update_file(path, [(key, "skimage-photos", "onnxruntime/int8-mse", VALUES)]) == \
        [f"{key} skimage-photos onnxruntime/int8-mse"]

    new = path.read_text()
    removed, added = _changed_lines(old, new)
    assert removed and set(removed) <= set(block), (removed, block)
    assert any(line.strip().startswith("onnxruntime/int8-mse: {top1: 12.345, top5: 67.891, n: 5,")
               for line in added), added
    reread = {m.key: m for m in load_family(path).models.values()}
    assert _plain(reread[key].expected["skimage-photos"]["onnxruntime/int8-mse"]) == VALUES
    assert _meaning_without(path, key) == _meaning_without(source, key)  # nothing else changed


def test_replacing_an_entry_changes_exactly_its_line_and_keeps_user_keys(tmp_path):
    path = tmp_path / "mobilenet_v2.yaml"
    shutil.copy(ROOT / "baselines" / "mobilenet_v2.yaml", path)
    key, run = "local-mobilenetv2_100-tvq", "reference/fp32"
    update_file(path, [(key, "imagenet-sample", run, {**VALUES, "tolerance": {"top1": 2.0},
                                                      "broken": True, "source": "old note"})])
    old = path.read_text()
    update_file(path, [(key, "imagenet-sample", run, {**VALUES, "top1": 50.0})])
    diff = [line for line in difflib.unified_diff(old.splitlines(), path.read_text().splitlines(),
                                                  lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(diff) == 2 and diff[0].startswith("-") and diff[1].startswith("+"), diff
    assert "top1: 50.0," in diff[1] and "top1: 12.345" in diff[0]
    entry = read_yaml(path)["extra_models"][key]["expected"]["imagenet-sample"][run]
    # a user's tolerance survives an update; what described the old numbers does not
    assert entry["tolerance"] == {"top1": 2.0}
    assert "broken" not in entry and "source" not in entry


def test_unknown_model_raises_and_leaves_the_file_alone(tmp_path):
    path = tmp_path / "ghostnet.yaml"
    shutil.copy(ROOT / "baselines" / "ghostnet.yaml", path)
    old = path.read_bytes()
    with pytest.raises(BaselineError, match=r"ghostnet.yaml: model 'timm-nope' is not in this file"):
        update_file(path, [("timm-ghostnet_100", "d", "r/fp32", VALUES),
                           ("timm-nope", "d", "r/fp32", VALUES)])
    assert path.read_bytes() == old


def test_atomic_write_keeps_the_mode_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "b.yaml"
    path.write_text("a: 1\n")
    path.chmod(0o664)
    atomic_write(path, "a: 2\n")
    assert path.read_text() == "a: 2\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o664)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, "a: 3\n")
    assert path.read_text() == "a: 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.yaml"]


WRITER = textwrap.dedent("""
    # Updates every baseline file given, round after round, each round with its own numbers.
    # Writes go out in small slow chunks, so that a kill lands in the middle of one.
    import os, sys, time
    from pathlib import Path
    from pytest_vaccbench import baselines

    real_fdopen = os.fdopen

    class Slow:
        def __init__(self, handle):
            self.handle = handle
        def write(self, text):
            for i in range(0, len(text), 512):
                self.handle.write(text[i:i + 512])
                self.handle.flush()
                time.sleep(0.01)
        def __getattr__(self, name):
            return getattr(self.handle, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

    os.fdopen = lambda fd, mode: Slow(real_fdopen(fd, mode))  # every module's os
    key_of = dict(arg.split("=") for arg in sys.argv[2:])
    round_ = int(sys.argv[1])
    print("started", flush=True)
    while True:
        round_ += 1
        for name, key in key_of.items():
            values = {"top1": float(round_), "top5": float(round_), "n": round_}
            baselines.update_file(Path(name), [(key, "killed", "reference/fp32", values)])
""")


@pytest.mark.slow  # six kills at random moments: about 12 s
def test_kill_9_in_the_middle_of_updates_leaves_every_file_old_or_new(tmp_path):
    """A real process updating four real baseline files is SIGKILLed at random moments, six
    times; after each kill every file parses, and each holds the numbers of one whole round."""
    keys = {"mobilenet_v2.yaml": "timm-mobilenetv2_100", "repvgg.yaml": "official-RepVGG-A0",
            "ghostnet.yaml": "timm-ghostnet_100", "inception_v3.yaml": "timm-inception_v3"}
    for name in keys:
        shutil.copy(ROOT / "baselines" / name, tmp_path / name)
    originals = {name: (tmp_path / name).read_text() for name in keys}
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(6)
    rounds_seen: set[int] = set()
    left_behind = 0
    last = 0
    for kill in range(6):
        proc = subprocess.Popen([sys.executable, str(script), str(last), *(f"{n}={k}" for n, k in keys.items())],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "started"
        time.sleep(rng.uniform(0.2, 2.0))  # the writer locks, re-reads and validates each file
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        temps = list(tmp_path.glob(".*.tmp"))
        left_behind += bool(temps)
        for temp in temps:  # a half-written temporary file is the only trace of the kill
            temp.unlink()
        rounds = []
        for name, key in keys.items():
            path = tmp_path / name
            data = read_yaml(path)  # parses
            section = "models"
            entry = (data[section][key].get("expected") or {}).get("killed", {}).get("reference/fp32")
            if entry is None:  # never written: still the original file, byte for byte
                assert path.read_text() == originals[name]
                continue
            assert entry["top1"] == entry["top5"] == entry["n"]  # one round's numbers, whole
            rounds.append(entry["n"])
            assert _meaning_without(path, key) == _meaning_without(ROOT / "baselines" / name, key)
        # files are written in order within a round: no file is ahead of one written before it
        # (a restarted writer resumes at the newest round, so a file may lag by several)
        assert rounds == sorted(rounds, reverse=True)
        rounds_seen.update(rounds)
        last = max(rounds, default=last)
    assert len(rounds_seen) > 1
    assert left_behind >= 1, "no kill landed during a write; the test did not test atomicity"
