"""The model zoo's own scorer (its eval_topk.py), reproduced quirks and all, so that its number
can be shown beside this tool's, with the reason whenever the two differ.

What it does with a result.txt: it reads the lines in positional groups of 5. For each line,
the ground truth is the name that the line's path's parent folder (a wnid) has in the scorer's
own wnid -> name table, the prediction is the text after the 4th ':' (the class name), and the
line hits when the two are equal. top-1 counts the groups whose first line hits, top-5 those
where any line does; rate = hits / groups * 100. The class index is never read, so:
- class 480 never scores: the zoo's imagenet.txt (which wrote the class name) cuts its name
  short, the scorer's table has it whole;
- 'crane' names two classes (134, the bird; 517, the machine): one predicted for the other hits;
- records a rerun appended are scored again, and a missing, extra or blank line shifts every
  later group (each line is still compared with its own path's class);
- a ':' in a path moves the class name to another field; an empty file divides by zero; a path
  whose parent folder is not a wnid stops it with a KeyError.
The vamp route first decodes the outputs into the same lines, pairing the datalist's line i
with the i-th output file in sorted listing order (`decoded_lines`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np

from .dataset import imagenet_classes

# The zoo's imagenet.txt is the ImageNet class list with one line cut short.
SHORTENED = {480: "cash machine, cash dispenser, automated teller machine, automatic teller "
                  "machine, automated teller"}
CRANES = (134, 517)
GROUP = 5
SHOWN = 3  # examples named in a reason


def label_text(index: int) -> str:
    """Line `index` of the zoo's imagenet.txt: what its scripts write as `class name`."""
    return SHORTENED.get(index, imagenet_classes()[index][1])


@lru_cache(maxsize=1)
def scorer_table() -> dict[str, str]:
    """The scorer's own wnid -> class name table (every name whole)."""
    return {wnid: name for wnid, name in imagenet_classes()}


@dataclass(frozen=True)
class Line:
    """One line as the zoo reads it, and which image and rank this tool read in it."""

    text: str  # without its newline
    where: str  # file:line
    row: int = -1  # this tool's image row; -1: a blank line
    rank: int = -1


@dataclass
class Tally:
    """Groups of one kind: how many, their hits, and the first few (file:line, image row)."""

    groups: int = 0
    hits1: int = 0
    hits5: int = 0
    first: list[tuple[str, int]] = field(default_factory=list)

    def add(self, where: str, row: int, hit1: bool, hit5: bool) -> None:
        self.groups += 1
        self.hits1 += hit1
        self.hits5 += hit5
        if len(self.first) < SHOWN:
            self.first.append((where, row))


@dataclass
class ZooScore:
    """The zoo scorer's counts, and what its groups held: per image, its hits in the first
    group that was that image's ranks 0-4 in order; the groups of images seen before
    (appended records) and those that are no image's ranks 0-4 (shifted), as tallies. What
    it keeps grows with the images, not with the lines."""

    groups: int = 0
    hits1: int = 0
    hits5: int = 0
    stopped: str | None = None  # why the scorer would stop with an exception, if it would
    row_hits: np.ndarray = field(default_factory=lambda: np.full((1024, 2), -1, dtype=np.int8))
    again: Tally = field(default_factory=Tally)
    shifted: Tally = field(default_factory=Tally)

    @property
    def top1(self) -> float | None:
        return None if self.stopped or not self.groups else 100.0 * self.hits1 / self.groups

    @property
    def top5(self) -> float | None:
        return None if self.stopped or not self.groups else 100.0 * self.hits5 / self.groups

    def whole(self, where: str, row: int, hit1: bool, hit5: bool) -> None:
        """A group that is image `row`'s ranks 0-4, in order."""
        if row >= len(self.row_hits):
            grown = np.full((max(row + 1, 2 * len(self.row_hits)), 2), -1, dtype=np.int8)
            grown[:len(self.row_hits)] = self.row_hits
            self.row_hits = grown
        if self.row_hits[row, 0] >= 0:
            self.again.add(where, row, hit1, hit5)
        else:
            self.row_hits[row] = hit1, hit5


class Stopped(Exception):
    """The zoo's script would stop here with an exception: it prints no number."""


def _matches(line: Line) -> bool:
    """eval_topk.is_match_class; Stopped where it raises."""
    text = line.text
    if len(text) == 0:
        return False
    parts, fields = text.split("/"), text.split(":")
    if len(parts) < 2:
        raise Stopped(f"its scorer stops with IndexError at {line.where}: the line has no '/', "
                      "so no parent folder to take the ground truth from")
    if len(fields) < 5:
        raise Stopped(f"its scorer stops with IndexError at {line.where}: fewer than five "
                      "':'-separated fields")
    if parts[-2] not in scorer_table():
        raise Stopped(f"its scorer stops with KeyError {parts[-2]!r} at {line.where}: it takes the "
                      "ground truth from each path's parent folder, which must be an ImageNet wnid")
    return scorer_table()[parts[-2]] == fields[4].strip()


class ZooScorer:
    """eval_topk.py over lines fed in file order (several files: as if concatenated)."""

    def __init__(self) -> None:
        self.score = ZooScore()
        self._group: list[Line] = []

    def feed(self, line: Line) -> None:
        if self.score.stopped:
            return
        self._group.append(line)
        if len(self._group) == GROUP:
            self._close()

    def _close(self) -> None:
        group, self._group = self._group, []
        score = self.score
        matches = []
        for line in group:
            try:
                matches.append(_matches(line))
            except Stopped as exc:
                score.stopped = str(exc)
                return
        score.groups += 1
        score.hits1 += matches[0]
        score.hits5 += any(matches)
        row = group[0].row
        if (len(group) == GROUP and row >= 0 and all(line.row == row for line in group)
                and [line.rank for line in group] == list(range(GROUP))):
            score.whole(group[0].where, row, matches[0], any(matches))
        else:
            score.shifted.add(group[0].where, -1, matches[0], any(matches))

    def finish(self) -> ZooScore:
        if self._group:  # the last, partial group counts as a group
            self._close()
        if not self.score.groups and not self.score.stopped:
            self.score.stopped = "its scorer divides by zero: there are no lines to score"
        return self.score


def zoo_top5(probabilities: np.ndarray) -> np.ndarray:
    """The vamp npz decoder's top 5 of one output: `argsort()[-5:][::-1]` over every column
    (a 1001-class output keeps its background column, so its ids are one too high)."""
    return np.asarray(probabilities).argsort()[-GROUP:][::-1]


def decoded_lines(datalist: Sequence[str], listing: Sequence[str],
                  tops: dict[str, tuple[np.ndarray, np.ndarray] | str],
                  rows: dict[str, int], where: str) -> Iterator[Line]:
    """The lines vamp_npz_decode.py writes, `<npz path>: Relay top-k id: ..`: datalist line i
    paired with the i-th file of the sorted listing of the output folder (zip: the shorter
    ends it). `tops` holds each listed file's top-5 (ids, probabilities) as the decoder ranks
    them (`zoo_top5`), or why it cannot be read there: the decoder stops (Stopped)."""
    classes = len(imagenet_classes())
    for i, (path, output) in enumerate(zip(datalist, listing)):
        top = tops[output]
        if isinstance(top, str):
            raise Stopped(f"its npz decoder stops at {output} (paired with {where}:{i + 1}): {top}")
        ids, probabilities = top
        for k, (index, prob) in enumerate(zip(ids.tolist(), probabilities.tolist())):
            if index >= classes:
                raise Stopped(f"its npz decoder stops with IndexError at {output}: class {index} "
                              "(a 1001-class output, background first) has no line in imagenet.txt")
            yield Line(f"{path}: Relay top-{k} id: {index}, prob: {prob:.8f}, class name: "
                       f"{label_text(index)}", f"{where}:{i + 1} + {output}", rows.get(path, -1), k)


@dataclass(frozen=True)
class Decoded:
    """What the zoo's npz decoder did with vamp outputs: its own top 5 of each image's output
    (per row), and the rows it paired with another image's output (sorted listing order)."""

    ranked: dict[int, np.ndarray]
    mispaired: set[int]


@dataclass(frozen=True)
class Reason:
    """Why the zoo's counts differ from this tool's on some images."""

    rule: str
    count: int  # images, or groups of 5 lines
    examples: tuple[str, ...]  # the first few of them
    top1: int  # the zoo's hits minus this tool's, from these
    top5: int
    unit: str = "image(s)"

    def line(self) -> str:
        more = ", ..." if self.count > len(self.examples) else ""
        return (f"  {self.rule}: {self.count} {self.unit} ({', '.join(self.examples)}{more}): "
                f"zoo top1 {self.top1:+d}, top5 {self.top5:+d}")


RULE_480 = ("class 480 never scores in the zoo: its result.txt lines name it from the zoo's "
            "imagenet.txt, cut short after 'automated teller', its scorer's table in full "
            "('..., automatic teller, ATM')")
RULE_CRANE = ("'crane' names classes 134 (the bird) and 517 (the machine) in the zoo: one "
              "predicted for the other scores there")
RULE_COLON = "':' in the path: the zoo takes the text after the 4th ':' of the line, not the class name"
RULE_DUPLICATE = ("records appended again (a rerun): the zoo scores every group, this tool each "
                  "image once")
RULE_SHIFT = ("5-line groups that are not one image's ranks 0-4 (a missing, extra or blank line "
              "shifts every later group): the zoo compares each line with its own path's class")
RULE_PAIRING = ("scored with another image's output: the zoo's decoder pairs datalist line i with "
                "the i-th output file in sorted listing order, this tool with output_<i>")
RULE_TIES = ("tied scores ranked otherwise: the zoo's decoder takes argsort()[-5:][::-1], this "
             "tool the lower class index first")
RULE_OTHER = "the zoo's hits differ from this tool's"


def compare(zoo: ZooScore, names: Sequence[str], paths: Sequence[str], labels: np.ndarray,
            top5: np.ndarray, decoder: Decoded | None = None) -> list[Reason]:
    """Why the zoo's hits differ from this tool's: per rule, the images (or groups) and the
    difference each rule makes. `names`, `paths`, `labels`, `top5`: this tool's rows, as the
    zoo's groups name them; `decoder`: what the zoo's npz decoder did with vamp outputs."""
    hits = top5 == labels.reshape(-1, 1)
    ours = np.stack([hits[:, 0], hits.any(axis=1)], axis=1).astype(np.int64)
    theirs = np.full((len(names), 2), -1, dtype=np.int64)
    known = min(len(names), len(zoo.row_hits))
    theirs[:known] = zoo.row_hits[:known]
    found: dict[str, list[tuple[str, int, int]]] = {}
    for row in np.flatnonzero((theirs != ours).any(axis=1)).tolist():
        if theirs[row, 0] < 0:  # never one whole group in the zoo's reading
            if ours[row].any():
                found.setdefault(RULE_SHIFT, []).append((names[row], -int(ours[row, 0]), -int(ours[row, 1])))
            continue
        d1, d5 = (theirs[row] - ours[row]).tolist()
        found.setdefault(_rule(row, paths, labels, top5, decoder), []).append((names[row], d1, d5))
    reasons = []
    for tally, rule, describe in ((zoo.again, RULE_DUPLICATE, lambda w, r: f"{names[r]} at {w}"),
                                  (zoo.shifted, RULE_SHIFT, lambda w, r: f"group at {w}")):
        if tally.groups:
            lost = found.pop(rule, []) if rule == RULE_SHIFT else []
            reasons.append(Reason(rule, tally.groups + len(lost),
                                  tuple(describe(w, r) for w, r in tally.first[:SHOWN]),
                                  tally.hits1 + sum(d for _, d, _ in lost),
                                  tally.hits5 + sum(d for _, _, d in lost), "group(s) or image(s)"
                                  if lost else "group(s)"))
    reasons += [Reason(rule, len(rows), tuple(n for n, _, _ in rows[:SHOWN]), sum(d for _, d, _ in rows),
                       sum(d for _, _, d in rows)) for rule, rows in found.items()]
    return reasons


def _rule(row: int, paths: Sequence[str], labels: np.ndarray, top5: np.ndarray,
          decoder: Decoded | None) -> str:
    truth = int(labels[row])
    if decoder is not None and row in decoder.mispaired:
        return RULE_PAIRING
    if decoder is not None and row in decoder.ranked and \
            sorted(decoder.ranked[row].tolist()) != sorted(top5[row].tolist()):
        return RULE_TIES
    if ":" in paths[row]:
        return RULE_COLON
    if truth == 480:
        return RULE_480
    if truth in CRANES and set(CRANES) & set(top5[row].tolist()):
        return RULE_CRANE
    return RULE_OTHER
