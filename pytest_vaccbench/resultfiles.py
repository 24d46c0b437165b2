"""Result files: what accelerator hosts already write, read into per-image predictions.

Inputs (several may be given; a folder is read as the files and output folders in it):
- result.txt, as the model zoo's accuracy scripts write it: five lines per image, best first,
  `<path>: Relay top-<k> id: <class index>, prob: <score>, class name: <label text>`, or the
  same without `Relay ` (one format per file);
- a vamp output folder (`output_000000.npz` ..., `output_0` = one image's class scores) with
  the datalist vamp read (one npz path per line): output i is datalist line i by the number
  in its name, never by listing order;
- this tool's own predictions files (`.npz` with `top5`, `labels`, `files`: a
  --vaccbench-json report's `<stem>.predictions/`, or the cache's `predictions/`).
Ground truth: the images' class folders in the paths (`.../<wnid>/<image>`), or a label file
(`<image> <class index>` per line: val_label.txt, or the official 50,000-line file), matched
by file name without its extension (the vamp route names its inputs `<image stem>.npz`).

`read_predictions` streams every file (a result.txt of several GB is never held in memory;
what it keeps is one row per image), refuses what cannot be scored honestly with the file and
line, and returns the predictions in dataset order, with each file's sha256 and the zoo
scorer's own number beside them (zoo_scorer.py). `score_case` turns them into the `Result` a
backend run gives, so that the gate, the reports and the updates treat both alike.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import __version__
from .dataset import Dataset, Sample, imagenet_classes, read_label_file, wnid_index
from .errors import VaccbenchError
from .metrics import topk
from .prep import npz_header
from .run import Case, Result, kept_predictions
from .safefiles import inside, safe_name
from .zoo_scorer import (GROUP, Decoded, Line, Reason, Stopped, ZooScore, ZooScorer, compare,
                         decoded_lines, label_text, zoo_top5)

MAX_LINE = 64 * 1024  # bytes: a longer "line" is not a result.txt
RESULT_LINE = re.compile(r"^(?P<path>.*): (?P<relay>Relay )?top-(?P<k>\d+) id: (?P<id>[-+]?\d+), "
                         r"prob: (?P<prob>[^,]*), class name: (?P<name>.*)$")
OUTPUT_NAME = re.compile(r"^output_(\d+)\.npz$")
RELAY, PLAIN = "result.txt (Relay top-k lines)", "result.txt (top-k lines)"
VAMP, PREDICTIONS = "vamp output folder + datalist", "vaccbench predictions"
SHOWN = 5  # names listed in a message


class ResultsError(VaccbenchError):
    """A results file that cannot be scored honestly (the message names file:line)."""


def _error(message: str, where: str) -> ResultsError:
    """A ResultsError located at `where` (`file:line`)."""
    path, _, line = where.rpartition(":")
    return ResultsError(message, path, int(line)) if line.isdigit() else ResultsError(message, where)


@dataclass(frozen=True)
class ResultsFile:
    """Provenance of one input: what it is, its sha256, its size, what was read in it."""

    path: str
    format: str
    sha256: str
    bytes: int
    records: int  # lines, outputs or rows read
    images: int  # distinct images in it


@dataclass(frozen=True)
class LabelSet:
    """`--labels FILE`: the images a run should have scored and their classes, by name."""

    path: Path
    names: tuple[str, ...]  # sorted by name: the order of a flat dataset
    labels: np.ndarray

    @classmethod
    def read(cls, path: Path) -> "LabelSet":
        found = read_label_file(path)
        names = tuple(sorted(found))
        return cls(path, names, np.asarray([found[n] for n in names], dtype=np.int16))


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def _image_name(name: str) -> str:
    """The image a file stands for: image2npz writes `<image stem>.npz` of `*.JPEG` images."""
    return f"{name[:-4]}.JPEG" if name.endswith(".npz") else name


@lru_cache(maxsize=1)
def _wnids() -> dict[str, int]:
    return wnid_index()


def _base(path: str) -> tuple[str, str]:
    """(parent folder name, file name) of a path as a result file writes it (/ or \\)."""
    path = path.replace("\\", "/")
    end = path.rfind("/")
    return (path[path.rfind("/", 0, end) + 1:end] if end > 0 else ""), path[end + 1:]


def _folder_class(path: str) -> int | None:
    """The class index of `.../<wnid>/<image>`, or None when the parent is not a wnid."""
    return _wnids().get(_base(path)[0])


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")


class _Images:
    """Every image read so far: a row each with its true class, its top 5 by rank, and where
    each rank was read (file, line). With a label set the rows are its images, fixed."""

    def __init__(self, labels: LabelSet | None) -> None:
        self.labels = labels
        self.files: list[str] = []
        if labels is not None:
            self.names = list(labels.names)
            self.truth = labels.labels.astype(np.int16)
            stems = [_stem(n) for n in self.names]
            self.row_of = {s: i for i, s in enumerate(stems)}
            if len(self.row_of) != len(stems):
                twice = sorted({s for s in stems if stems.count(s) > 1})
                raise ResultsError(f"the label file names {_shown(twice)} twice with different "
                                   "extensions: which image is which?", labels.path)
            size = len(self.names)
        else:
            self.names, self.row_of, size = [], {}, 1024
            self.truth = np.zeros(size, dtype=np.int16)
        self.paths: list[str | None] = [None] * len(self.names)
        self.top5 = np.full((size, GROUP), -1, dtype=np.int16)
        self.file_of = np.zeros((size, GROUP), dtype=np.int16)
        self.line_of = np.zeros((size, GROUP), dtype=np.int64)
        self.notes: list[str] = []  # what was counted once, or left aside, and why
        self.duplicates = 0
        self.first_duplicate: tuple[int, int, int, int] | None = None  # file, line, row, rank

    def where(self, file: int, line: int) -> str:
        return f"{self.files[file]}:{line}"

    def row(self, name: str, path: str | None, truth: int | None, why: str, where: str) -> int:
        """The row of image `name`, added when new; `truth`: its class by `why` (its folder,
        or the predictions file), checked against the label set."""
        stem = _stem(name)
        row = self.row_of.get(stem)
        if row is None:
            if self.labels is not None:
                raise _error(f"{name} is not in the label set {self.labels.path} (its "
                             f"{len(self.names)} images): these results are of other images; "
                             "pass the label file of the images that were run", where)
            if truth is None:
                parent = _base(str(path))[0]
                raise _error(f"cannot tell the class of {name}: its folder {parent!r} is not an "
                             "ImageNet wnid (<wnid>/<image> paths); pass --labels FILE (`<image> "
                             "<class index>` per line, e.g. val_label.txt)", where)
            row = len(self.names)
            if row == len(self.truth):
                self._grow()
            self.row_of[stem] = row
            self.names.append(name)
            self.paths.append(path)
            self.truth[row] = truth
            return row
        if truth is not None and truth != self.truth[row]:
            source = f"the label set {self.labels.path}" if self.labels is not None else "an earlier record"
            raise _error(f"{name} is class {truth} by {why}, but class {self.truth[row]} by "
                         f"{source}: the ground truth disagrees", where)
        if self.paths[row] is None:
            self.paths[row] = path
        return row

    def _grow(self) -> None:
        size = 2 * len(self.truth)
        self.truth = np.resize(self.truth, size)
        for name in ("top5", "file_of", "line_of"):
            old = getattr(self, name)
            new = np.full((size, GROUP), -1 if name == "top5" else 0, dtype=old.dtype)
            new[:len(old)] = old
            setattr(self, name, new)

    def record(self, row: int, rank: int, index: int, file: int, line: int) -> None:
        """Rank `rank` of image `row` is class `index`: a repeat of the same is counted once
        (noted); another class for the same rank is refused."""
        before = self.top5[row, rank]
        if before < 0:
            self.top5[row, rank] = index
            self.file_of[row, rank], self.line_of[row, rank] = file, line
        elif before == index:
            self.duplicates += 1
            if self.first_duplicate is None:
                self.first_duplicate = (file, line, row, rank)
        else:
            first = self.where(int(self.file_of[row, rank]), int(self.line_of[row, rank]))
            raise _error(f"{self.names[row]} top-{rank} is class {index} here but class {before} "
                         f"at {first}: two different runs of this image (keep one run per file; "
                         "a rerun appends to result.txt)", self.where(file, line))


@dataclass
class Scored:
    """Per-image predictions read from result files, in dataset order, with their provenance."""

    names: tuple[str, ...]  # image file names
    paths: tuple[str | None, ...]  # the image as the results name it (None: not named)
    labels: np.ndarray  # (n,) true class indices
    top5: np.ndarray  # (n, 5) predicted class indices, best first
    total: int  # images of the label set (n, unless a subset of it was scored on purpose)
    format: str
    truth: str  # where the labels came from
    files: tuple[ResultsFile, ...]
    warnings: tuple[str, ...] = ()
    zoo: ZooScore | None = None
    zoo_note: str = ""  # what the zoo's number is of, or why there is none
    reasons: tuple[Reason, ...] = ()
    label_dir: Path | None = None  # the label file's folder: where the images may be

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def correct1(self) -> int:
        return int((self.top5[:, 0] == self.labels).sum())

    @property
    def correct5(self) -> int:
        return int((self.top5 == self.labels.reshape(-1, 1)).any(axis=1).sum())

    def samples(self) -> tuple[Sample, ...]:
        """The images as dataset samples. The fingerprint takes each image's size, as a run of
        the same images does, from the image where it is here: the path the results name, or
        beside the label file (its folder, `images/` or `val/` in it, as a flat dataset's);
        an image found nowhere is known by its name alone (size -1)."""
        folders = [] if self.label_dir is None else [self.label_dir, self.label_dir / "images",
                                                     self.label_dir / "val"]
        nowhere = Path(os.devnull)  # a path under a file: never exists

        def found(name: str, path: str | None) -> Path:
            named = [Path(path)] if path and not path.endswith(".npz") else []
            return next((p for p in (*named, *(f / name for f in folders)) if p.is_file()),
                        nowhere / name)

        return tuple(Sample(found(n, p), int(label))
                     for n, p, label in zip(self.names, self.paths, self.labels.tolist()))

    def dataset(self, name: str) -> Dataset:
        return Dataset(name, Path(os.path.commonpath([f.path for f in self.files])), "results",
                       self.samples(), self.total)

    def zoo_lines(self) -> list[str]:
        """The zoo scorer's number beside this tool's, and why they differ."""
        zoo = self.zoo
        head = "zoo scorer (eval_topk.py" + (f", {self.zoo_note}" if zoo and self.zoo_note else "") + "):"
        if zoo is None or zoo.top1 is None or zoo.top5 is None:
            return [f"{head} no number: {zoo.stopped if zoo else self.zoo_note}"]
        numbers = f"{head} top1 {zoo.top1:.3f} top5 {zoo.top5:.3f} ({zoo.groups} groups of 5 lines)"
        if (zoo.hits1, zoo.hits5, zoo.groups) == (self.correct1, self.correct5, self.n):
            return [f"{numbers}: the same"]
        return [f"{numbers}: differs, because", *(r.line() for r in self.reasons)]

    def lines(self) -> list[str]:
        """What a person reads: the files, the numbers, the zoo's, the warnings."""
        out = [f"{f.path}: {f.format}, {f.records} records, {f.images} images, sha256 {f.sha256[:16]}"
               for f in self.files]
        top1, top5 = 100.0 * self.correct1 / self.n, 100.0 * self.correct5 / self.n
        subset = f" of the {self.total} in the label set" if self.total != self.n else ""
        out.append(f"measured: top1 {top1:.3f} top5 {top5:.3f} (n={self.n}{subset}, by class "
                   f"index; ground truth: {self.truth})")
        return [*out, *self.zoo_lines(), *(f"warning: {w}" for w in self.warnings)]

    def provenance(self, claim: dict[str, str]) -> dict[str, Any]:
        """For the JSON report: the run these files are claimed to be, and each file's sha256."""
        zoo = self.zoo
        return {"claim": claim, "format": self.format, "ground_truth": self.truth,
                "label_set": self.total, "files": [vars(f) for f in self.files],
                "warnings": list(self.warnings),
                "zoo_scorer": None if zoo is None or zoo.top1 is None else {
                    "top1": round(zoo.top1, 3), "top5": round(zoo.top5 or 0.0, 3),
                    "groups": zoo.groups, "hits1": zoo.hits1, "hits5": zoo.hits5,
                    "reasons": [{"rule": r.rule, "count": r.count, "unit": r.unit,
                                 "examples": list(r.examples), "top1": r.top1, "top5": r.top5}
                                for r in self.reasons]},
                "zoo_scorer_note": self.zoo_note if zoo is None else zoo.stopped}


# -- finding the inputs -------------------------------------------------------------------

@dataclass(frozen=True)
class _Input:
    path: Path
    kind: str  # result.txt | datalist | vamp | predictions


def _first_line(path: Path) -> bytes:
    with open(path, "rb") as handle:
        for raw in iter(lambda: handle.readline(MAX_LINE), b""):
            if raw.strip():
                return raw.strip()
    return b""


def _kind(path: Path) -> str:
    if path.is_dir():
        return "vamp" if any(OUTPUT_NAME.match(p.name) for p in path.iterdir()) else "folder"
    if not path.is_file():  # reading a pipe would wait for a writer, a device may never end
        raise ResultsError("not a regular file (a pipe, socket or device?): give result files",
                           path)
    if path.suffix == ".npz":
        return "predictions"
    first = _first_line(path)
    if first.endswith(b".npz") and b": " not in first:
        return "datalist"
    return "result.txt"


def _inputs(paths: Sequence[Path]) -> list[_Input]:
    """Each given path classified; a folder that is no vamp output folder is read as the files
    and output folders in it (hidden ones aside)."""
    found: list[_Input] = []
    for path in paths:
        if not path.exists():
            raise ResultsError("no such file or folder", path)
        kind = _kind(path)
        if kind != "folder":
            found.append(_Input(path, kind))
            continue
        inner = [_Input(p, k) for p in sorted(path.iterdir())
                 if not p.name.startswith(".") and (k := _kind(p)) != "folder"]
        if not inner:
            raise ResultsError("no result files in this folder (result.txt, a vamp output folder "
                               "and its datalist, or predictions .npz)", path)
        found += inner
    return found


def _one_format(inputs: list[_Input]) -> str:
    kinds = {i.kind for i in inputs} - {"datalist"}
    if len(kinds) > 1:
        listed = "; ".join(f"{i.path} ({i.kind})" for i in inputs)
        raise ResultsError(f"these inputs mix formats ({listed}): score one run, in one format, at "
                           "a time")
    if not kinds:
        raise ResultsError("only a vamp datalist was given: add the output folder vamp wrote "
                           "(--path_output)", inputs[0].path)
    return kinds.pop()


# -- result.txt ------------------------------------------------------------------------

def _lines(path: Path, digest: Any) -> Iterator[tuple[int, str]]:
    """(line number, text without its newline) of a text file, read a line at a time into
    `digest`; a line over MAX_LINE bytes or not UTF-8 is refused at its line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE + 1), b""), 1):
            digest.update(raw)
            if len(raw) > MAX_LINE:
                raise ResultsError(f"line longer than {MAX_LINE} bytes: not a text file of result "
                                   "lines (a binary file?)", path, number)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ResultsError(f"not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                                   f"{exc.start + 1}); save the file as UTF-8", path, number) from None
            yield number, text[:-1] if text.endswith("\n") else text


@lru_cache(maxsize=1)
def _class_names() -> tuple[tuple[str, ...], ...]:
    """Per class index, the names a result line may give it: the class list's, and the zoo's
    imagenet.txt line where that differs."""
    return tuple(tuple(dict.fromkeys((name, label_text(i))))
                 for i, (_, name) in enumerate(imagenet_classes()))


def _check_line(m: re.Match[str]) -> tuple[int, int]:
    """(rank, class index) of a parsed line; ValueError with the problem."""
    rank, index, names = int(m["k"]), int(m["id"]), _class_names()
    if not 0 <= rank < GROUP:
        raise ValueError(f"rank top-{rank} is not one of top-0 .. top-4")
    if not 0 <= index < len(names):
        hint = (" (a 1001-class output with its background class first, not shifted by -1?)"
                if index == len(names) else "")
        raise ValueError(f"class id {index} is outside 0..{len(names) - 1}{hint}")
    try:
        prob = float(m["prob"])
    except ValueError:
        raise ValueError(f"prob {m['prob']!r} is not a number") from None
    if not math.isfinite(prob):
        raise ValueError(f"prob is {m['prob']}: the model or runtime returned NaN or infinite "
                         "scores, which rank nothing")
    name = m["name"].strip()
    if name not in names[index]:
        shifted = [d for d in (-1, 1) if 0 <= index + d < len(names) and name in names[index + d]]
        hint = (f"; it is the name of class {index + shifted[0]}: the ids are shifted by "
                f"{-shifted[0]:+d} against the class list (a 1001-class output with background "
                "first?)" if shifted else
                "; the ids and names come from different class lists")
        raise ValueError(f"class name {name[:60]!r} is not class {index}'s "
                         f"({label_text(index)[:60]!r}){hint}")
    return rank, index


def _read_result_txt(path: Path, images: _Images, zoo: ZooScorer, style: list[str]) -> ResultsFile:
    """One result.txt, streamed; `style` holds the line format of the files read before."""
    file = len(images.files)
    images.files.append(str(path))
    digest, records, blank, rows = hashlib.sha256(), 0, 0, set()
    last = ("", -1)
    for number, text in _lines(path, digest):
        where = f"{path}:{number}"
        if not text.strip():
            blank += 1
            zoo.feed(Line(text, where))
            continue
        m = RESULT_LINE.match(text)
        if m is None:
            raise ResultsError(f"not a result.txt line: expected `<path>: Relay top-<k> id: <class "
                               f"index>, prob: <score>, class name: <name>` (or without `Relay `), "
                               f"got {text[:100]!r}", path, number)
        fmt = RELAY if m["relay"] else PLAIN
        if not style:
            style.append(fmt)
        elif fmt != style[0]:
            raise ResultsError(f"this line is {fmt}, earlier lines are {style[0]}: a mix of "
                               "formats (two scripts' output in one run?); score one script's "
                               "output", path, number)
        try:
            rank, index = _check_line(m)
        except ValueError as exc:
            raise ResultsError(str(exc), path, number) from None
        image = m["path"]
        if image != last[0]:
            name = _image_name(_base(image)[1])
            last = (image, images.row(name, image, _folder_class(image), "its class folder", where))
        row = last[1]
        rows.add(row)
        images.record(row, rank, index, file, number)
        zoo.feed(Line(text, where, row, rank))
        records += 1
    if not records:
        raise ResultsError("empty: no result lines" + (f" ({blank} blank lines)" if blank else "")
                           + " (the zoo's scorer divides by zero on it)", path)
    if blank:
        images.notes.append(f"{path}: {blank} blank line(s) ignored (the zoo's scorer counts them "
                            "in its 5-line groups)")
    return ResultsFile(str(path), style[0], digest.hexdigest(), path.stat().st_size, records, len(rows))


# -- vamp ------------------------------------------------------------------------------

def _datalist(path: Path, digest: Any) -> list[str]:
    entries: list[tuple[int, str]] = [(n, t.strip()) for n, t in _lines(path, digest)]
    while entries and not entries[-1][1]:
        entries.pop()
    for number, text in entries:
        if not text:
            raise ResultsError("blank line inside the datalist: vamp numbers its outputs by "
                               "datalist line, so which output is which?", path, number)
        if not text.endswith(".npz"):
            raise ResultsError(f"a datalist line is one npz path, got {text[:100]!r}", path, number)
    if not entries:
        raise ResultsError("empty datalist", path)
    return [text for _, text in entries]


def _output_scores(path: Path) -> np.ndarray:
    """`output_0` of one vamp output file as float32 (classes,). Its shape and type are
    checked from the npy header first (prep.npz_header): an output that would inflate to
    gigabytes is refused before it is read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "output_0" not in data.files:
                raise ResultsError(f"no `output_0` in this vamp output (keys: {data.files})", path)
            shape, dtype = npz_header(path, "output_0")
            if shape[-1:] not in ((1000,), (1001,)) or shape[:-1] not in ((), (1,)):
                raise ResultsError(f"output_0 has shape {shape}: one image's scores over 1000 "
                                   "classes (or 1001, background first) per output file", path)
            if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
                raise ResultsError(f"output_0 holds {dtype}, not class scores (numbers)", path)
            scores = np.asarray(data["output_0"], dtype=np.float32).reshape(-1)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ResultsError(f"cannot read this vamp output ({exc or 'empty file'}): not an npz "
                           "file as vamp writes them", path) from None
    if not np.isfinite(scores).all():
        raise ResultsError("output_0 holds NaN or infinite scores: the model or runtime is broken",
                           path)
    return scores


def _read_vamp(folder: Path, datalist_path: Path, images: _Images,
               zoo: ZooScorer) -> tuple[list[ResultsFile], Decoded]:
    """Output i <-> datalist line i + 1, by the number in the output's name."""
    file = len(images.files)
    images.files.append(str(datalist_path))
    list_digest = hashlib.sha256()
    datalist = _datalist(datalist_path, list_digest)
    listing = sorted(os.listdir(folder))
    outputs = {int(m.group(1)): name for name in listing if (m := OUTPUT_NAME.match(name))}
    extra = sorted(name for i, name in outputs.items() if i >= len(datalist))
    if extra:
        raise ResultsError(f"{len(extra)} output file(s) have no datalist line ({_shown(extra)}; "
                           f"{datalist_path} has {len(datalist)} lines): another run's outputs, "
                           "or another datalist", folder)
    missing = [i for i in range(len(datalist)) if i not in outputs]
    if missing:
        names = [f"{_image_name(_base(datalist[i])[1])} (line {i + 1})" for i in missing]
        raise ResultsError(f"vamp wrote no output for {len(missing)} of the {len(datalist)} datalist "
                           f"lines: {_shown(names)}; the run did not finish: rerun it", folder)
    rows: dict[str, int] = {}
    for number, path in enumerate(datalist, 1):
        name = _image_name(_base(path)[1])
        rows[path] = images.row(name, path, _folder_class(path), "its class folder",
                                f"{datalist_path}:{number}")
    folder_digest, size = hashlib.sha256(), 0
    tops: dict[str, tuple[np.ndarray, np.ndarray] | str] = {}
    ranked: dict[int, np.ndarray] = {}
    for i, path in enumerate(datalist):
        out = folder / outputs[i]
        data = out.read_bytes()
        folder_digest.update(outputs[i].encode() + b"\0" + data)
        size += len(data)
        scores = _output_scores(out)
        row = rows[path]
        classes = scores[1:] if scores.shape[0] == 1001 else scores  # background column first
        for rank, index in enumerate(topk(classes[None], GROUP)[0].tolist()):
            images.record(row, rank, index, file, i + 1)
        ids = zoo_top5(scores)
        tops[outputs[i]] = (ids, scores[ids])
        ranked[row] = ids
    for name in listing:
        tops.setdefault(name, "not a vamp output file (np.load fails or it has no output_0)")
    try:
        for line in decoded_lines(datalist, listing, tops, rows, str(datalist_path)):
            zoo.feed(line)
    except Stopped as exc:
        zoo.score.stopped = str(exc)
    mispaired = {rows[path] for i, (path, output) in enumerate(zip(datalist, listing))
                 if outputs[i] != output}  # the decoder's sorted-listing pairing
    count = len(set(rows.values()))
    return [ResultsFile(str(folder), "vamp outputs", folder_digest.hexdigest(), size, len(datalist),
                        count),
            ResultsFile(str(datalist_path), "vamp datalist", list_digest.hexdigest(),
                        datalist_path.stat().st_size, len(datalist), count)], Decoded(ranked, mispaired)


def _pair_vamp(inputs: list[_Input]) -> tuple[Path, Path]:
    folders = [i.path for i in inputs if i.kind == "vamp"]
    lists = [i.path for i in inputs if i.kind == "datalist"]
    if len(folders) != 1 or len(lists) > 1:
        raise ResultsError(f"give one vamp output folder and its datalist (got {len(folders)} "
                           f"output folder(s) and {len(lists)} datalist(s))", folders[0])
    folder = folders[0]
    if not lists:  # the datalist beside the output folder, when there is exactly one
        lists = [p for p in sorted(folder.parent.glob("*.txt")) if _kind(p) == "datalist"]
        if len(lists) != 1:
            raise ResultsError("which datalist did vamp read for this output folder? give it too "
                               "(the file vamp's --datalist named: one npz path per line)", folder)
    return folder, lists[0]


# -- this tool's predictions -------------------------------------------------------------

def _read_own(path: Path, images: _Images) -> ResultsFile:
    file = len(images.files)
    images.files.append(str(path))
    try:
        data = path.read_bytes()
        with np.load(path, allow_pickle=False) as saved:
            top5, labels, files = saved["top5"], saved["labels"], saved["files"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ResultsError(f"not a predictions file of this tool (an .npz with top5, labels and "
                           f"files): {exc}", path) from None
    n = len(files)
    if top5.ndim != 2 or top5.shape != (n, GROUP) or labels.shape != (n,) or files.ndim != 1 or not n:
        raise ResultsError(f"inconsistent predictions file: top5 {top5.shape}, labels "
                           f"{labels.shape}, files {files.shape}", path)
    bad = np.flatnonzero(((top5 < 0) | (top5 >= 1000)).any(axis=1) | (labels < 0) | (labels >= 1000))
    if bad.size:
        raise ResultsError(f"class ids outside 0..999 in row {bad[0] + 1}", path)
    for i, (name, label) in enumerate(zip(files.tolist(), labels.tolist())):
        row = images.row(str(name), None, int(label), "the predictions file", f"{path}:{i + 1}")
        for rank, index in enumerate(top5[i].tolist()):
            images.record(row, rank, int(index), file, i + 1)
    return ResultsFile(str(path), PREDICTIONS, hashlib.sha256(data).hexdigest(), len(data), n,
                       len(set(map(str, files.tolist()))))


# -- the whole read -------------------------------------------------------------------------

def read_predictions(results: Sequence[Path | str], labels: Path | str | None = None,
                     subset: bool = False) -> Scored:
    """Result files -> per-image top-5 predictions in dataset order, checked and with their
    provenance. `labels`: the label file (else the class folders in the paths, or the
    predictions files' own labels). Images of the label set without a result are refused,
    unless `subset` says they were left out on purpose. This is the one way result files
    are read: the `score` command and `pytest --results` both come here."""
    try:
        return _read(results, labels, subset)
    except OSError as exc:  # unreadable, vanished meanwhile: the file and why
        raise ResultsError(f"cannot read: {exc.strerror or exc}", exc.filename) from None


def _read(results: Sequence[Path | str], labels: Path | str | None, subset: bool) -> Scored:
    label_set = LabelSet.read(Path(labels)) if labels else None
    inputs = _inputs([Path(p) for p in results])
    fmt = _one_format(inputs)
    images, scorer = _Images(label_set), ZooScorer()
    files: list[ResultsFile] = []
    decoded: Decoded | None = None
    if fmt == "result.txt":
        style: list[str] = []
        files += [_read_result_txt(item.path, images, scorer, style) for item in inputs]
        fmt = style[0]
        zoo_note = "the files concatenated, as `cat` would" if len(files) > 1 else ""
    elif fmt == "vamp":
        read, decoded = _read_vamp(*_pair_vamp(inputs), images, scorer)
        files += read
        fmt = VAMP
        zoo_note = "after its npz decoder pairs outputs and datalist by sorted listing"
    else:
        files += [_read_own(item.path, images) for item in inputs]
        fmt = PREDICTIONS
        zoo_note = "the zoo's scorer reads result.txt, not this tool's predictions files"
    zoo = None if fmt == PREDICTIONS else scorer.finish()
    try:
        scored = _finish(images, label_set, subset, fmt, files)
    except ResultsError as exc:
        raise ResultsError(f"{exc}{_beside(images, zoo)}") from None
    scored.zoo, scored.zoo_note = zoo, zoo_note
    if zoo is not None and zoo.top1 is not None:
        scored.reasons = tuple(compare(zoo, *_rows_of(images), decoded))
    return scored


def _beside(images: _Images, zoo: ZooScore | None) -> str:
    """For a refusal: what the images that are whole measure, and what the zoo's scorer would
    print for these files, so that a damaged file's effect is seen."""
    count = len(images.names)
    top5, truth = images.top5[:count], images.truth[:count]
    whole = (top5 >= 0).all(axis=1)
    if not whole.any():
        return ""
    hits = top5[whole] == truth[whole].reshape(-1, 1)
    n = int(whole.sum())
    text = (f"\n(for comparison only: the {n} images read in full measure top1 "
            f"{100.0 * hits[:, 0].sum() / n:.3f} top5 {100.0 * hits.any(axis=1).sum() / n:.3f}")
    if zoo is None:
        return text + ")"
    if zoo.top1 is None:
        return f"{text}; the zoo's scorer gives no number: {zoo.stopped})"
    shifted = zoo.shifted.first[0][0] if zoo.shifted.first else None
    return (f"{text}; the zoo's scorer would print top1 {zoo.top1:.3f} top5 {zoo.top5:.3f} over "
            f"{zoo.groups} groups of 5 lines" + (f", its groups shifted from {shifted} on: it "
            "compares each line with its own path's class, whatever image the group began with"
            if shifted else "") + ")")


def _rows_of(images: _Images) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Names, paths, labels and top 5 in the order of the reader's rows (the zoo's groups
    name rows), for zoo_scorer.compare."""
    count = len(images.names)
    return (images.names, [p or "" for p in images.paths], images.truth[:count],
            images.top5[:count].astype(np.int64))


def _finish(images: _Images, label_set: LabelSet | None, subset: bool, fmt: str,
            files: list[ResultsFile]) -> Scored:
    count = len(images.names)
    top5 = images.top5[:count]
    have = top5 >= 0
    partial = np.flatnonzero(have.any(axis=1) & ~have.all(axis=1))
    if partial.size:
        row = int(partial[0])
        ranks = np.flatnonzero(have[row]).tolist()
        first = images.where(int(images.file_of[row, ranks[0]]), int(images.line_of[row, ranks[0]]))
        raise ResultsError(
            f"{partial.size} image(s) have fewer than 5 ranks (a line is missing): "
            f"{_shown([images.names[int(r)] for r in partial])}; "
            f"{'it' if partial.size == 1 else 'the first'} has only top-{', top-'.join(map(str, ranks))} "
            f"(from {first}). The file is cut or damaged: rerun the script that wrote it")
    ordered = np.sort(top5, axis=1)
    twice = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1) & have.all(axis=1))
    if twice.size:
        row = int(twice[0])
        raise ResultsError(f"{twice.size} image(s) name one class at two ranks, e.g. "
                           f"{images.names[row]}: {top5[row].tolist()}; a top 5 has five classes",
                           images.files[int(images.file_of[row, 0])])
    done = have.all(axis=1)
    missing = np.flatnonzero(~done)
    notes = list(images.notes)
    if missing.size:
        assert label_set is not None  # without one, every row has a record
        names = [images.names[int(r)] for r in missing]
        text = (f"{missing.size} of the {count} images of the label set {label_set.path} have no "
                f"result ({_shown(names)})")
        if not subset:
            raise ResultsError(f"{text}. Score all of them, or pass the label file of the images "
                               "that were run; to score a subset on purpose, say so (--subset, or "
                               "pytest --results-subset): the gate then adds the sampling allowance")
        notes.append(f"{text}: scored as a subset (--subset)")
    if images.duplicates:
        file, line, row, rank = images.first_duplicate  # type: ignore[misc]
        notes.append(f"{images.duplicates} record(s) repeat earlier ones (first: {images.names[row]} "
                     f"top-{rank} at {images.where(file, line)}; a rerun appended to the file?): "
                     "each image counted once")
    rows = np.flatnonzero(done)
    if label_set is None:  # class-folder order: by class, then by name
        rows = rows[np.lexsort((np.asarray(images.names, dtype=object)[rows].astype(str),
                                images.truth[rows]))]
    return Scored(tuple(images.names[int(r)] for r in rows),
                  tuple(images.paths[int(r)] for r in rows),
                  images.truth[rows].astype(np.int16), top5[rows].astype(np.int16),
                  count if label_set is not None else int(rows.size), fmt,
                  f"--labels {label_set.path}" if label_set is not None else
                  ("the predictions files' own labels" if fmt == PREDICTIONS else
                   "the class folders in the paths"),
                  tuple(files), tuple(notes),
                  label_dir=label_set.path.parent if label_set is not None else None)


# -- as a run of the suite -----------------------------------------------------------------

def score_case(case: Case, results: Sequence[Path | str], labels: Path | str | None, subset: bool,
               dataset_name: str, cache_dir: Path) -> tuple[Dataset, Result, Scored]:
    """Read `results` as the run `case` and keep its predictions where a backend run keeps
    them (so paired comparisons and reports find them): the dataset they measured, the
    `Result`, and what was read."""
    start = time.perf_counter()
    scored = read_predictions(results, labels, subset)
    data = scored.dataset(dataset_name)
    acc, fingerprint, out = kept_predictions(case, data, scored.top5, cache_dir)
    digest = hashlib.sha256("".join(f.sha256 for f in scored.files).encode()).hexdigest()[:16]
    claim = {"model": case.entry.test_name, "run": f"{case.backend}/{case.run_precision}",
             "dataset": dataset_name}
    result = Result(case.entry.family, case.entry.key, case.backend, case.run_precision, data.name,
                    fingerprint, acc.n, acc.correct1, acc.correct5,
                    round(time.perf_counter() - start, 3), str(out), str(case.entry.baseline_path),
                    date=time.strftime("%Y-%m-%d"), versions=f"pytest-vaccbench {__version__}",
                    machine="unknown (scored from result files)",
                    options={"results": scored.format, "results_sha256": digest},
                    scored_from=scored.provenance(claim))
    return data, result, scored


def results_folder(root: Path, case: Case) -> Path:
    """Where `pytest --results ROOT` looks for a test's files:
    ROOT/<family>/<model key>/<backend>-<precision> (names made safe, kept under ROOT)."""
    e = case.entry
    return inside(root, root / safe_name(e.family) / safe_name(e.key) /
                  safe_name(f"{case.backend}-{case.run_precision}"))


def write_result_txt(path: Path, images: Sequence[str], top5: np.ndarray, probabilities: np.ndarray,
                     relay: bool = True, append: bool = False) -> Path:
    """Write predictions as the zoo's scripts do: per image five lines, best first,
    `<path>: Relay top-<k> id: <index>, prob: <score, 8 decimals>, class name: <imagenet.txt
    line>` (`relay=False`: without `Relay `). `append` adds to the file, as a rerun does."""
    word = "Relay top" if relay else "top"
    with open(path, "a" if append else "w", encoding="utf-8") as handle:
        for image, ids, probs in zip(images, np.asarray(top5).tolist(), np.asarray(probabilities).tolist()):
            handle.writelines(f"{image}: {word}-{k} id: {i}, prob: {p:.8f}, class name: {label_text(i)}\n"
                              for k, (i, p) in enumerate(zip(ids, probs)))
    return path

