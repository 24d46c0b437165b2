"""Reading result files (resultfiles.py) and the zoo scorer beside it (zoo_scorer.py), on
generated predictions whose counts are known: both result.txt formats, vamp outputs, this
tool's predictions, each zoo quirk, and each bad input."""

from __future__ import annotations

import hashlib
import os
import re
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import result_files as rf
from pytest_vaccbench.resultfiles import ResultsError, read_predictions, write_result_txt
from pytest_vaccbench.zoo_scorer import (RULE_480, RULE_CRANE, RULE_DUPLICATE, RULE_PAIRING,
                                         RULE_SHIFT, RULE_TIES, label_text)

N = 60


@pytest.fixture
def run() -> tuple[list[str], np.ndarray, np.ndarray]:
    """60 images of 30 classes (none 480 or a crane), shuffled, with their predictions."""
    rng = np.random.default_rng(3)
    names = rf.image_names(N)
    labels = rng.permutation(np.arange(N) % 30 * 7 + 1)  # classes 1, 8, ..., 204
    return names, labels, rf.predictions(labels)


def counts(top5: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    hits = top5 == np.asarray(labels).reshape(-1, 1)
    return int(hits[:, 0].sum()), int(hits.any(axis=1).sum())


def test_both_line_formats_read_the_same_predictions_in_dataset_order(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    relay = rf.result_txt(tmp_path / "relay.txt", names, labels, top5)
    plain = rf.result_txt(tmp_path / "plain.txt", names, labels, top5, relay=False, flat=True)
    by_folder = read_predictions([relay])
    by_labels = read_predictions([plain], labels=rf.label_file(tmp_path / "val.txt", names, labels))
    assert (by_folder.format, by_labels.format) == ("result.txt (Relay top-k lines)",
                                                    "result.txt (top-k lines)")
    # class-folder order (class, then name); flat order (name), as dataset.resolve lists them
    order = sorted(range(N), key=lambda i: (labels[i], names[i]))
    assert list(by_folder.names) == [names[i] for i in order]
    assert np.array_equal(by_folder.top5, top5[order]) and np.array_equal(by_folder.labels, labels[order])
    assert list(by_labels.names) == sorted(names)
    assert (by_folder.correct1, by_folder.correct5) == counts(top5, labels) == \
        (by_labels.correct1, by_labels.correct5)
    assert by_folder.files[0].sha256 == hashlib.sha256(relay.read_bytes()).hexdigest()
    assert (by_folder.files[0].records, by_folder.files[0].images) == (5 * N, N)


def test_the_zoo_number_is_eval_topks_on_every_quirk(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    labels, top5 = labels.copy(), top5.copy()
    labels[:3], top5[:3, 0] = 480, 480  # right by index, never by the zoo's names
    labels[3], top5[3, 0] = 134, 517  # wrong by index, right by the zoo's names
    path = rf.result_txt(tmp_path / "result.txt", names, labels, top5)
    with open(path, "a") as handle:  # a rerun appended a third of the images, and a blank line
        handle.writelines(path.read_text().splitlines(keepends=True)[:5 * 20])
        handle.write("\n")
    scored = read_predictions([path])
    zoo = scored.zoo
    assert zoo is not None and (zoo.top1, zoo.top5, zoo.groups) == pytest.approx(rf.eval_topk(path))
    assert (scored.correct1, scored.correct5) == counts(top5, labels)  # each image once


def test_class_480_never_scores_in_the_zoo(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    labels, top5 = labels.copy(), top5.copy()
    labels[:2], top5[:2, 0] = 480, 480
    scored = read_predictions([rf.result_txt(tmp_path / "r.txt", names, labels, top5)])
    ours1, ours5 = counts(top5, labels)
    assert scored.zoo.hits1 == ours1 - 2 and scored.zoo.hits5 == ours5 - 2
    (reason,) = scored.reasons
    assert reason.rule == RULE_480 and (reason.count, reason.top1) == (2, -2)
    assert set(reason.examples) == set(names[:2])
    text = "\n".join(scored.lines())
    assert f"top1 {100 * ours1 / N:.3f}" in text and f"top1 {100 * (ours1 - 2) / N:.3f}" in text
    assert "class 480 never scores" in text and names[0] in text


def test_crane_for_crane_scores_in_the_zoo(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    labels, top5 = labels.copy(), top5.copy()
    labels[0], top5[0] = 134, [517, 1, 2, 3, 4]  # the bird, predicted as the machine
    labels[1], top5[1] = 517, [134, 5, 6, 7, 8]
    scored = read_predictions([rf.result_txt(tmp_path / "r.txt", names, labels, top5)])
    (reason,) = scored.reasons
    assert reason.rule == RULE_CRANE and (reason.top1, reason.top5) == (2, 2)
    assert scored.zoo.hits1 == scored.correct1 + 2
    assert "'crane' names classes 134" in "\n".join(scored.lines())


def test_appended_duplicates_count_once_here_and_again_in_the_zoo(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = rf.result_txt(tmp_path / "r.txt", names, labels, top5)
    text = path.read_text().splitlines(keepends=True)
    with open(path, "a") as handle:
        handle.writelines(text[:5 * 20])  # the first 20 images again
    scored = read_predictions([path])
    assert (scored.n, scored.correct1) == (N, counts(top5, labels)[0])
    assert scored.zoo.groups == N + 20
    (reason,) = scored.reasons
    assert reason.rule == RULE_DUPLICATE and reason.count == 20 and reason.unit == "group(s)"
    assert reason.examples[0] == f"{names[0]} at {path}:{5 * N + 1}"
    assert reason.top1 == counts(top5[:20], labels[:20])[0]
    (warning,) = scored.warnings
    assert warning.startswith("100 record(s) repeat earlier ones") and f"{path}:{5 * N + 1}" in warning
    assert "each image counted once" in warning


def test_a_missing_line_is_refused_and_shown_shifting_the_zoos_groups(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = rf.result_txt(tmp_path / "r.txt", names, labels, top5)
    lines = path.read_text().splitlines(keepends=True)
    del lines[5 * 10 + 3]  # image 11 loses its top-3 line
    path.write_text("".join(lines))
    with pytest.raises(ResultsError) as raised:
        read_predictions([path])
    message = str(raised.value)
    assert message.startswith(f"1 image(s) have fewer than 5 ranks (a line is missing): {names[10]}; "
                              f"it has only top-0, top-1, top-2, top-4 (from {path}:51)")
    whole1, whole5 = counts(np.delete(top5, 10, 0), np.delete(labels, 10))
    assert f"the {N - 1} images read in full measure top1 {100 * whole1 / (N - 1):.3f}" in message
    zoo1, zoo5, groups = rf.eval_topk(path)
    assert f"the zoo's scorer would print top1 {zoo1:.3f} top5 {zoo5:.3f} over {groups} groups" in message
    assert f"its groups shifted from {path}:51 on" in message


def test_a_blank_line_is_ignored_here_and_shifts_the_zoos_groups(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = rf.result_txt(tmp_path / "r.txt", names, labels, top5)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines[:5 * 30], "\n", *lines[5 * 30:]]))
    scored = read_predictions([path])
    assert (scored.correct1, scored.correct5) == counts(top5, labels)
    assert (scored.zoo.top1, scored.zoo.top5) == pytest.approx(rf.eval_topk(path)[:2])
    assert {r.rule for r in scored.reasons} == {RULE_SHIFT}
    assert any("1 blank line(s) ignored" in w for w in scored.warnings)


# -- vamp ------------------------------------------------------------------------------

def test_vamp_outputs_pair_with_the_datalist_by_number_not_listing_order(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    names, labels, top5 = names[:12], labels[:12], top5[:12]
    # output_0 ... output_11 unpadded: sorted listing puts output_10 and output_11 after output_1
    rf.vamp_outputs(tmp_path / "output", tmp_path / "npz_datalist.txt", names, labels, top5, padding=1)
    scored = read_predictions([tmp_path / "output", tmp_path / "npz_datalist.txt"])
    assert (scored.correct1, scored.correct5) == counts(top5, labels)
    assert scored.format == "vamp output folder + datalist" and len(scored.files) == 2
    zoo = scored.zoo
    assert zoo.groups == 12 and zoo.hits1 < scored.correct1  # 10 of 12 images got another's output
    (reason,) = scored.reasons  # groups are whole, just paired with other images' outputs
    assert reason.rule == RULE_PAIRING and reason.count <= 10
    assert "sorted listing" in "\n".join(scored.lines())
    # the datalist is found beside the output folder when it is not given
    assert read_predictions([tmp_path / "output"]).correct1 == scored.correct1


def test_vamp_missing_or_extra_outputs_are_refused(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    rf.vamp_outputs(tmp_path / "output", tmp_path / "list.txt", names[:8], labels[:8], top5[:8])
    (tmp_path / "output" / "output_000003.npz").unlink()
    with pytest.raises(ResultsError, match=r"vamp wrote no output for 1 of the 8 datalist lines: "
                                           rf"{names[3][:-5]}\.JPEG \(line 4\)"):
        read_predictions([tmp_path / "output", tmp_path / "list.txt"])
    np.savez(tmp_path / "output" / "output_000003.npz", output_0=np.zeros((1, 1000), np.float32))
    np.savez(tmp_path / "output" / "output_000008.npz", output_0=np.zeros((1, 1000), np.float32))
    with pytest.raises(ResultsError, match="1 output file.s. have no datalist line .output_000008.npz"):
        read_predictions([tmp_path / "output", tmp_path / "list.txt"])


def test_vamp_1001_class_outputs_lose_the_background_column(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    rf.vamp_outputs(tmp_path / "out", tmp_path / "list.txt", names[:10], labels[:10], top5[:10],
                    classes=1001)
    scored = read_predictions([tmp_path / "out", tmp_path / "list.txt"])
    assert np.array_equal(scored.top5, top5[:10][np.lexsort((np.array(names[:10]), labels[:10]))])
    assert scored.zoo.hits1 == 0  # the zoo's decoder keeps the column: every id one too high


def test_vamp_ties_are_ranked_by_class_index_the_zoo_by_argsort(tmp_path: Path) -> None:
    scores = np.zeros((1, 1000), np.float32)  # every class ties: here classes 0-4 lead
    zoo_ids = scores[0].argsort()[-5:][::-1].tolist()  # the zoo decoder's pick of the tie
    truth = next(i for i in zoo_ids if i not in range(5))
    folder, name = tmp_path / "out", rf.image_names(1)[0]
    folder.mkdir()
    np.savez(folder / "output_000000.npz", output_0=scores)
    (tmp_path / "list.txt").write_text(f"/npz/{rf.WNIDS[truth]}/{name[:-5]}.npz\n")
    scored = read_predictions([folder, tmp_path / "list.txt"])
    assert scored.top5.tolist() == [[0, 1, 2, 3, 4]] and scored.correct5 == 0
    assert scored.zoo.hits5 == 1
    (reason,) = scored.reasons
    assert reason.rule == RULE_TIES and reason.top5 == 1


# -- this tool's predictions --------------------------------------------------------------

def test_own_predictions_files_are_read_with_their_labels(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = tmp_path / "preds.npz"
    np.savez(path, top5=top5.astype(np.int16), labels=labels.astype(np.int16), files=np.asarray(names))
    scored = read_predictions([path])
    assert (scored.correct1, scored.correct5) == counts(top5, labels)
    assert "reads result.txt" in "\n".join(scored.lines())
    wrong = labels.copy()
    wrong[4] += 1
    with pytest.raises(ResultsError, match=rf"{path}:5: {names[4]} is class {labels[4]} by the "
                                           rf"predictions file, but class {wrong[4]} by the label set"):
        read_predictions([path], labels=rf.label_file(tmp_path / "val.txt", names, wrong))


# -- bad input ---------------------------------------------------------------------------

def write(path: Path, names, labels, top5, **kw) -> Path:
    return rf.result_txt(path, names, labels, top5, **kw)


def test_conflicting_records_of_one_image_are_refused(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = write(tmp_path / "r.txt", names, labels, top5)
    other = top5.copy()
    other[0, 2] = (other[0, 2] + 500) % 1000
    write(tmp_path / "again.txt", names[:1], labels[:1], other[:1])
    path.write_text(path.read_text() + (tmp_path / "again.txt").read_text())
    with pytest.raises(ResultsError, match=rf"{path}:{5 * N + 3}: {names[0]} top-2 is class "
                                           rf"{other[0, 2]} here but class {top5[0, 2]} at {path}:3"):
        read_predictions([path])


def test_images_missing_against_the_label_set(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = write(tmp_path / "r.txt", names[:50], labels[:50], top5[:50])
    val = rf.label_file(tmp_path / "val.txt", names, labels)
    with pytest.raises(ResultsError) as raised:
        read_predictions([path], labels=val)
    message = str(raised.value)
    assert message.startswith(f"10 of the {N} images of the label set {val} have no result "
                              f"({', '.join(names[50:55])}, ...)")
    assert "--subset" in message
    subset = read_predictions([path], labels=val, subset=True)
    assert (subset.n, subset.total) == (50, N)
    assert "n=50 of the 60 in the label set" in "\n".join(subset.lines())


def test_images_outside_the_label_set_are_refused(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = write(tmp_path / "r.txt", names, labels, top5)
    val = rf.label_file(tmp_path / "val.txt", names[1:], labels[1:])
    with pytest.raises(ResultsError, match=rf"{path}:1: {names[0]} is not in the label set"):
        read_predictions([path], labels=val)


@pytest.mark.parametrize("edit, problem", [
    (lambda t: t.replace("top-2 id", "top-7 id", 1), r":3: rank top-7 is not one of top-0 .. top-4"),
    (lambda t: _set_id(t, 1000), r":1: class id 1000 is outside 0..999 \(a 1001-class output"),
    (lambda t: _set_id(t, 999), r":1: class name .* is not class 999's .*the ids and names come from"),
    (lambda t: re.sub(r"prob: [0-9.]+", "prob: nan", t, count=1), r":1: prob is nan"),
    (lambda t: "garbage\n" + t, r":1: not a result.txt line: expected `<path>: Relay top-<k>"),
    (lambda t: t.replace(": Relay top-", ": top-", 6), r":7: this line is result.txt \(Relay top-k "
                                                       r"lines\), earlier lines are result.txt \(top-k"),
])
def test_bad_lines_are_refused_at_their_line(tmp_path: Path, run, edit, problem) -> None:
    names, labels, top5 = run
    path = write(tmp_path / "r.txt", names, labels, top5)
    path.write_text(edit(path.read_text()))
    with pytest.raises(ResultsError, match=rf"^{path}{problem}"):
        read_predictions([path])


def _set_id(text: str, index: int) -> str:
    first, rest = text.split("\n", 1)
    head, tail = first.split(" id: ", 1)
    return f"{head} id: {index}, {tail.split(', ', 1)[1]}\n{rest}"


def test_ids_shifted_by_one_are_named(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = write(tmp_path / "r.txt", names, labels, top5)
    first = path.read_text().split("\n", 1)[0]
    index = int(first.split(" id: ")[1].split(",")[0])
    shifted = first.replace(f" id: {index},", f" id: {index + 1},")
    path.write_text(path.read_text().replace(first, shifted, 1))
    with pytest.raises(ResultsError, match=rf":1: class name .* it is the name of class {index}: "
                                           r"the ids are shifted by \+1"):
        read_predictions([path])


def test_partial_group_at_the_end_is_refused(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = write(tmp_path / "r.txt", names, labels, top5)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-3]))
    with pytest.raises(ResultsError, match=rf"{names[-1]}; it has only top-0, top-1 \(from {path}:{5 * N - 4}\)"):
        read_predictions([path])


def test_a_class_twice_in_one_top5_is_refused(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    top5 = top5.copy()
    top5[0, 3] = top5[0, 1]
    with pytest.raises(ResultsError, match=r"1 image\(s\) name one class at two ranks"):
        read_predictions([write(tmp_path / "r.txt", names, labels, top5)])


def test_mixed_inputs_are_refused(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    txt = write(tmp_path / "r.txt", names, labels, top5)
    plain = write(tmp_path / "p.txt", names, labels, top5, relay=False)
    with pytest.raises(ResultsError, match=rf"^{plain}:1: this line is result.txt \(top-k lines\), "
                                           r"earlier lines are result.txt \(Relay"):
        read_predictions([txt, plain])
    npz = tmp_path / "p.npz"
    np.savez(npz, top5=top5, labels=labels, files=np.asarray(names))
    with pytest.raises(ResultsError, match=r"these inputs mix formats .*r.txt \(result.txt\); .*p.npz "
                                           r"\(predictions\)"):
        read_predictions([txt, npz])


def test_non_utf8_empty_and_unclassed_files_are_refused(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = write(tmp_path / "r.txt", names, labels, top5)
    path.write_bytes(path.read_bytes().replace(b"class name: ", b"class name: \xff", 1))
    with pytest.raises(ResultsError, match=rf"^{path}:1: not UTF-8 text \(byte 0xff at column \d+\)"):
        read_predictions([path])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ResultsError, match=rf"^{empty}: empty: no result lines \(the zoo's scorer "
                                           "divides by zero on it\\)"):
        read_predictions([empty])
    empty.write_text("\n\n")
    with pytest.raises(ResultsError, match=r"empty: no result lines \(2 blank lines\)"):
        read_predictions([empty])
    flat = write(tmp_path / "flat.txt", names, labels, top5, flat=True)
    with pytest.raises(ResultsError, match=rf"^{flat}:1: cannot tell the class of {names[0]}: its "
                                           r"folder '' is not an ImageNet wnid .* pass --labels FILE"):
        read_predictions([flat])


def test_ground_truth_of_folders_and_label_file_must_agree(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    path = write(tmp_path / "r.txt", names, labels, top5)
    wrong = labels.copy()
    wrong[0] = 999
    with pytest.raises(ResultsError, match=rf"^{path}:1: {names[0]} is class {labels[0]} by its class "
                                           r"folder, but class 999 by the label set"):
        read_predictions([path], labels=rf.label_file(tmp_path / "val.txt", names, wrong))


def test_a_huge_file_is_streamed_not_loaded(tmp_path: Path) -> None:
    """A 4 GB file (sparse: no disk used) with no line breaks is refused at its first line,
    having read 64 KiB of it."""
    path = tmp_path / "huge.txt"
    with open(path, "wb") as handle:
        handle.truncate(4 << 30)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ResultsError, match=rf"^{path}:1: line longer than 65536 bytes"):
            read_predictions([path])
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 4 << 20 and time.perf_counter() - start < 5


def test_memory_does_not_grow_with_appended_records(tmp_path: Path, run) -> None:
    """Reading holds one row per image: a file of the same images appended 8 times over takes
    the memory of one copy (the rest streams through)."""
    names, labels, top5 = run
    once = write(tmp_path / "once.txt", names, labels, top5)
    many = tmp_path / "many.txt"
    many.write_text(once.read_text() * 8)

    def peak(path: Path) -> int:
        tracemalloc.start()
        try:
            read_predictions([path])
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(once)  # caches (class tables, regexes) filled before measuring
    assert peak(many) < 1.25 * peak(once) + 64 * 1024


def test_writer_writes_the_zoo_label_text(tmp_path: Path) -> None:
    path = write_result_txt(tmp_path / "r.txt", ["/v/n02977058/x.JPEG"], np.array([[480, 134, 517, 0, 1]]),
                            np.array([[0.9, 0.05, 0.03, 0.01, 0.005]]), relay=False)
    lines = path.read_text().splitlines()
    assert lines[0] == (f"/v/n02977058/x.JPEG: top-0 id: 480, prob: 0.90000000, class name: "
                        f"{label_text(480)}")
    assert label_text(480).endswith("automated teller") and lines[1].endswith("class name: crane")
    assert os.path.getsize(path) == len(path.read_bytes())


def test_a_folder_is_read_as_the_result_files_in_it(tmp_path: Path, run) -> None:
    names, labels, top5 = run
    folder = tmp_path / "vamp-fp16"
    (folder / "logs").mkdir(parents=True)
    write(folder / "result.txt", names, labels, top5)
    assert read_predictions([folder]).correct1 == counts(top5, labels)[0]
    (folder / "result.txt").unlink()
    with pytest.raises(ResultsError, match=rf"^{folder}: no result files in this folder"):
        read_predictions([folder])
