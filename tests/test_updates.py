"""`updates.apply_updates`, the one function behind every recording path, on hand-made results:
an entry measured on more images, or on other images, is never replaced without
--accept-other-images (the file byte-identical); images that include the entry's are more of
the same; the same numbers leave the entry as it is, unless it brings stored predictions the
entry does not name; a sequential run that stopped early is never recorded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.baselines import read_yaml
from pytest_vaccbench.dataset import Dataset, Sample, limit
from pytest_vaccbench.run import Result
from pytest_vaccbench.store import PredictionsStore
from pytest_vaccbench.updates import Recording, apply_updates, covers, recordings_from_json

FILE = """\
family: fam
preprocess: {resize: 2, crop: 2}
models:
  m:   # a comment that stays
    name: m
    source: x
    library: null
    arch: null
    input_size: 2
    expected:
      val:
        reference/fp32: {top1: 80.0, top5: 95.077, n: 650, fingerprint: aaaa, date: '2020-01-01'}
"""


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    path = tmp_path / "fam.yaml"
    path.write_text(FILE)
    return path


def recording(path: Path, n: int, correct1: int, fingerprint: str, covered: dict | None = None,
              correct5: int | None = None) -> Recording:
    result = Result("fam", "m", "reference", "fp32", "val", fingerprint, n, correct1,
                    correct5 if correct5 is not None else correct1, 1.0, "", str(path),
                    date="2030-01-01", covers=covered or {})
    return Recording(f"s.yaml::fam/m[reference-fp32]-{n}", "passed", result, "passed")


def entry(path: Path) -> dict:
    return dict(read_yaml(path)["models"]["m"]["expected"]["val"]["reference/fp32"])


def test_fewer_images_are_refused_with_both_counts_and_fingerprints(baseline: Path) -> None:
    before = baseline.read_bytes()
    done = apply_updates([recording(baseline, 50, 46, "bbbb")])
    assert not done.ok and done.refused == ["s.yaml::fam/m[reference-fp32]-50"]
    assert done.lines == [
        "REFUSED m val reference/fp32: it would replace an entry measured on more images "
        "(n=650, fingerprint aaaa) with one measured on fewer (n=50, fingerprint bbbb): every "
        "later run would be held to a baseline that cannot see as small a drop. Measure at least "
        "650 images, or pass --accept-other-images to record it deliberately"]
    assert baseline.read_bytes() == before
    assert apply_updates([recording(baseline, 50, 46, "bbbb")], dry_run=True).refused
    assert baseline.read_bytes() == before

    done = apply_updates([recording(baseline, 50, 46, "bbbb")], accept_other_images=True)
    assert done.ok and done.lines == ["updated fam.yaml: m val reference/fp32"]
    assert (entry(baseline)["n"], entry(baseline)["top1"]) == (50, 92.0)
    assert "# a comment that stays" in baseline.read_text()


def test_other_images_are_refused_unless_they_include_the_entrys(baseline: Path) -> None:
    before = baseline.read_bytes()
    done = apply_updates([recording(baseline, 650, 520, "cccc")])
    assert done.lines[0].startswith("REFUSED m val reference/fp32: it was measured on other images "
                                    "than the entry it would replace (entry: n=650, fingerprint "
                                    "aaaa; this result: n=650, fingerprint cccc)")
    assert "--accept-other-images" in done.lines[0] and baseline.read_bytes() == before
    # 1000 images of which the entry's 650 are a --limit draw: more of the same
    done = apply_updates([recording(baseline, 1000, 800, "dddd", {"aaaa": 650})])
    assert done.ok and entry(baseline)["n"] == 1000
    # the same images: always recordable
    assert apply_updates([recording(baseline, 1000, 700, "dddd")]).ok and entry(baseline)["top1"] == 70.0


def test_an_entry_without_n_or_fingerprint_cannot_be_weakened(tmp_path: Path) -> None:
    path = tmp_path / "fam.yaml"
    path.write_text(FILE.replace("n: 650, fingerprint: aaaa, ", ""))
    assert apply_updates([recording(path, 5, 4, "eeee")]).ok  # nothing known to compare with
    path.write_text(FILE.replace("fingerprint: aaaa, ", ""))
    assert not apply_updates([recording(path, 5, 4, "eeee")]).ok  # n alone: fewer is fewer
    assert apply_updates([recording(path, 650, 500, "eeee")]).ok


def test_the_same_numbers_on_the_same_images_leave_the_file_untouched(baseline: Path) -> None:
    before = baseline.read_bytes()
    mtime = baseline.stat().st_mtime_ns
    done = apply_updates([recording(baseline, 650, 520, "aaaa", correct5=618)])  # 95.077
    assert done.ok and not done.written and done.unchanged == {"s.yaml::fam/m[reference-fp32]-650"}
    assert done.lines == ["unchanged fam.yaml: m val reference/fp32 (same top1, top5, n and fingerprint)"]
    assert baseline.read_bytes() == before and baseline.stat().st_mtime_ns == mtime  # not rewritten
    dry = apply_updates([recording(baseline, 650, 520, "aaaa", correct5=618)], dry_run=True)
    assert dry.lines[:2] == ["fam.yaml: no change", dry.lines[1]] and dry.lines[1].startswith("unchanged")


def test_a_store_reference_the_entry_lacks_is_recorded_with_the_same_numbers(baseline: Path,
                                                                             tmp_path: Path) -> None:
    """A predictions digest the entry does not name is new: the entry is written whole (its
    provenance is the run it names); the same digest, or no store, leaves it byte-identical."""
    labels = np.arange(650) % 1000
    top5 = (labels[:, None] + np.arange(5)) % 1000
    saved = tmp_path / "predictions.npz"
    np.savez(saved, top5=top5, labels=labels)
    store = PredictionsStore(tmp_path / "store")
    rec = recording(baseline, 650, 520, "aaaa", correct5=618)  # the entry's numbers
    rec.result.predictions = str(saved)
    done = apply_updates([rec], store=store)
    assert done.ok and done.written == {rec.nodeid}
    digest = entry(baseline)["predictions"]
    assert entry(baseline)["date"] == "2030-01-01" and store.get(digest).n == 650
    before = baseline.read_bytes()
    again = apply_updates([rec], store=store)
    assert again.unchanged == {rec.nodeid} and baseline.read_bytes() == before
    assert again.lines == ["unchanged fam.yaml: m val reference/fp32 (same top1, top5, n, "
                           "fingerprint and predictions)"]
    assert apply_updates([rec]).unchanged == {rec.nodeid} and baseline.read_bytes() == before
    np.savez(saved, top5=np.roll(top5, 1, axis=1), labels=labels)  # other predictions
    assert apply_updates([rec], store=store).written == {rec.nodeid}
    assert entry(baseline)["predictions"] not in (None, digest)


def test_a_sequential_run_that_stopped_early_is_refused_whatever_is_accepted(baseline: Path) -> None:
    before = baseline.read_bytes()
    rec = replace(recording(baseline, 650, 520, "aaaa"), partial=True)
    done = apply_updates([rec], accept_other_images=True, accept_broken=True)
    assert done.refused == [rec.nodeid] and "a sequential run measured 650 images and stopped" in done.lines[0]
    assert baseline.read_bytes() == before


def test_results_travel_with_what_they_cover_through_a_json_report(baseline: Path, tmp_path: Path) -> None:
    from dataclasses import asdict

    rec = recording(baseline, 1000, 800, "dddd", {"aaaa": 650})
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"tests": [{"nodeid": rec.nodeid, "outcome": "passed",
                                             "gate": {"verdict": "passed"}, **asdict(rec.result),
                                             "top1": rec.result.top1, "top5": rec.result.top5}]}))
    (read,) = recordings_from_json(report)
    assert read.result.covers == {"aaaa": 650}
    assert apply_updates([read]).ok and entry(baseline)["n"] == 1000


def test_covers_recognises_a_limit_draw_of_the_measured_images(tmp_path: Path) -> None:
    samples = []
    for i in range(40):
        image = tmp_path / f"img{i:02d}.png"
        image.write_bytes(b"x" * (i + 1))
        samples.append(Sample(image, i % 8))
    images = Dataset("val", tmp_path, "flat", tuple(samples), 40)
    sub = limit(images, 12)
    assert covers({"n": 12, "fingerprint": sub.fingerprint()}, images, images.fingerprint()) == \
        {sub.fingerprint(): 12}
    # not a draw of these images, the same images, no fingerprint: nothing covered
    assert covers({"n": 12, "fingerprint": "ffff"}, images, images.fingerprint()) == {}
    assert covers({"n": 40, "fingerprint": images.fingerprint()}, images, images.fingerprint()) == {}
    assert covers({"n": 12}, images, images.fingerprint()) == {}
    assert covers(None, images, images.fingerprint()) == {}


def test_an_update_that_would_make_an_unreadable_file_writes_nothing(baseline: Path) -> None:
    """Every written baseline is read back through the schema first: a dataset key with an
    escape sequence (from a caller that did not check it) leaves the file as it was."""
    before = baseline.read_bytes()
    rec = recording(baseline, 650, 520, "aaaa")
    rec = replace(rec, result=replace(rec.result, dataset="\x1b[2Jval"))
    for dry_run in (True, False):
        done = apply_updates([rec], dry_run=dry_run)
        assert not done.ok and done.failed_files == [str(baseline)]
        assert "the update would make a file that cannot be read back" in done.lines[0]
        assert "holds control characters" in done.lines[0] and "\x1b" not in done.lines[0]
    assert baseline.read_bytes() == before
