"""Compare: two result sets (two --vaccbench-json reports, or two runs inside one) side by side.

Per model and dataset: where both saw the same images (matched by file name), first the
image-by-image view, the sound comparison: the difference on those images, top-1 agreement,
exact McNemar, the images whose correctness flipped and the classes that lost most; then
each side's top1/top5 and n and the difference of those totals, labelled `other images`
when the two sides measured different image sets (never the headline). Plain functions; the
`vaccbench compare` command (cli/compare.py) prints `compare_lines` or writes `compare_html`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .dataset import class_name
from .errors import VaccbenchError
from .metrics import Agreement, agreement, per_class
from .pages import breakable, esc, page, signed_class, table
from .report_schema import read_report
from .thumbnails import PER_TEST, Thumbnails


@dataclass(frozen=True)
class Record:
    """One test of a report that measured something."""

    family: str
    model: str
    backend: str
    precision: str
    dataset: str
    fingerprint: str
    n: int
    top1: float
    top5: float
    status: str
    predictions: Path | None  # the .npz beside the report (top5, labels, files)
    per_class: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.family}/{self.model}"

    @property
    def run(self) -> str:
        return f"{self.backend}/{self.precision}"


def load_report(path: Path) -> list[Record]:
    """The tests of a --vaccbench-json report that have a result (the report validated by
    report_schema; the predictions files those inside the report's folder)."""
    report = read_report(path)
    records = []
    for i, test in report.measured():
        counts = {int(k): (v[0], v[1], v[2]) for k, v in (test.get("per_class") or {}).items()
                  if k.isascii() and k.isdigit()}
        records.append(Record(test["family"], test["model"], test["backend"], test["precision"],
                              test["dataset"], test["fingerprint"], test["n"], float(test["top1"]),
                              float(test["top5"]), str(test.get("status", "")),
                              report.predictions(i), counts))
    return records


def images_folder(path: Path) -> Path | None:
    """The folder of images the report's session measured, when it exists on this machine."""
    folder = (read_report(path).session or {}).get("images")
    return Path(folder) if isinstance(folder, str) and Path(folder).is_dir() else None


@dataclass(frozen=True)
class Selector:
    """--a/--b: `fp32` (a precision), `onnxruntime` (a backend) or `onnxruntime/fp32`."""

    backend: str | None = None
    precision: str | None = None

    @classmethod
    def parse(cls, text: str | None, backends: Iterable[str]) -> "Selector":
        if not text:
            return cls()
        if "/" in text:
            backend, precision = text.split("/", 1)
            return cls(backend, precision)
        return cls(backend=text) if text in set(backends) else cls(precision=text)

    def matches(self, record: Record) -> bool:
        return (self.backend in (None, record.backend)
                and self.precision in (None, record.precision))


@dataclass(frozen=True)
class Flip:
    """An image right on one side and wrong on the other."""

    file: str
    label: int
    top1_a: int
    top1_b: int
    lost: bool  # right in A, wrong in B
    rank: int  # where the label sits in the wrong side's top-5 (5: absent)


@dataclass(frozen=True)
class ClassChange:
    label: int
    n: int
    correct_a: int
    correct_b: int

    @property
    def change(self) -> int:
        return self.correct_b - self.correct_a


@dataclass(frozen=True)
class Pair:
    """Side A and side B of one model on one dataset, and what the images say."""

    a: Record
    b: Record
    agreement: Agreement | None = None  # None: not the same images, or no predictions
    note: str = ""  # why there is no image-by-image comparison
    flips: tuple[Flip, ...] = ()
    classes: tuple[ClassChange, ...] = ()  # every class whose top-1 count changed, worst first
    top5_change: int = 0  # B - A top-5 correct on the images both saw

    @property
    def same_images(self) -> bool:
        """Whether both sides measured the same images, so that their totals compare."""
        g = self.agreement
        return self.a.fingerprint == self.b.fingerprint or bool(g and g.n == self.a.n == self.b.n)

    @property
    def top1_delta(self) -> float:
        return self.b.top1 - self.a.top1

    @property
    def top5_delta(self) -> float:
        return self.b.top5 - self.a.top5

    @property
    def paired_delta(self) -> float:
        """B - A top1 on the images both saw (nan without them)."""
        g = self.agreement
        return 100.0 * (g.run_only - g.reference_only) / g.n if g and g.n else float("nan")

    @property
    def paired_top5_delta(self) -> float:
        """B - A top5 on the images both saw (nan without them)."""
        g = self.agreement
        return 100.0 * self.top5_change / g.n if g and g.n else float("nan")


def _load_predictions(path: Path) -> dict[str, np.ndarray]:
    """top5 (N, 5) class indices, labels (N,) and files (N,) of a predictions file, checked."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            found = {k: saved[k] for k in ("top5", "labels", "files")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise VaccbenchError(f"cannot read predictions ({exc})", path) from None
    return checked_predictions(found, path)


def checked_predictions(found: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """The arrays of a predictions file if they have the shapes and types run.evaluate writes;
    else a VaccbenchError naming the file and what is wrong."""
    top5, labels, files = found["top5"], found["labels"], found["files"]
    n = len(labels) if labels.ndim == 1 else -1
    problem = None
    if top5.ndim != 2 or top5.shape[1] < 1 or not np.issubdtype(top5.dtype, np.integer):
        problem = f"top5 is {top5.dtype} {top5.shape}, not integer (N, 5)"
    elif labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        problem = f"labels is {labels.dtype} {labels.shape}, not integer (N,)"
    elif files.ndim != 1 or files.dtype.kind != "U":
        problem = f"files is {files.dtype} {files.shape}, not file names (N,)"
    elif not len(top5) == n == len(files):
        problem = f"top5, labels and files have {len(top5)}, {n} and {len(files)} rows"
    if problem:
        raise VaccbenchError(f"not a predictions file as runs write them: {problem}", path)
    return found


def paired(a: Record, b: Record) -> Pair:
    """The image-by-image comparison of two records on the images both saw."""
    if a.predictions is None or b.predictions is None:
        missing = a if a.predictions is None else b
        return Pair(a, b, note=f"no predictions file for {missing.run}: totals only")
    return paired_arrays(a, b, _load_predictions(a.predictions), _load_predictions(b.predictions))


def paired_arrays(a: Record, b: Record, pa: dict[str, np.ndarray], pb: dict[str, np.ndarray]) -> Pair:
    """`paired` on predictions already read (arrays top5, labels, files of each side)."""
    index = {name: i for i, name in enumerate(pa["files"].tolist())}
    both = [(index[name], j) for j, name in enumerate(pb["files"].tolist()) if name in index]
    if not both:
        return Pair(a, b, note="no image in common: totals only")
    ia, ib = (np.array(x, dtype=np.int64) for x in zip(*both))
    labels = pa["labels"][ia]
    if not np.array_equal(labels, pb["labels"][ib]):
        return Pair(a, b, note="the same files carry different labels: totals only")
    top5_a, top5_b = pa["top5"][ia], pb["top5"][ib]
    compared = agreement(top5_b[:, 0], top5_a[:, 0], labels)
    right_a, right_b = top5_a[:, 0] == labels, top5_b[:, 0] == labels
    files = pa["files"][ia]
    flips = []
    for k in np.nonzero(right_a != right_b)[0].tolist():
        lost = bool(right_a[k])
        wrong = top5_b[k] if lost else top5_a[k]
        hit = np.nonzero(wrong[:5] == labels[k])[0]
        flips.append(Flip(str(files[k]), int(labels[k]), int(top5_a[k, 0]), int(top5_b[k, 0]),
                          lost, int(hit[0]) if hit.size else 5))
    # lost before gained; within each, the label furthest from the wrong side's top-5 first
    flips.sort(key=lambda f: (not f.lost, -f.rank, f.file))
    ca, cb = per_class(top5_a, labels), per_class(top5_b, labels)
    classes = sorted((ClassChange(k, ca[k][0], ca[k][1], cb[k][1]) for k in ca
                      if ca[k][1] != cb[k][1]), key=lambda c: (c.change, c.label))
    note = "" if len(both) == max(a.n, b.n) else f"of {a.n} and {b.n}"
    top5_change = int((top5_b[:, :5] == labels[:, None]).any(axis=1).sum()
                      - (top5_a[:, :5] == labels[:, None]).any(axis=1).sum())
    return Pair(a, b, compared, note, tuple(flips), tuple(classes), top5_change)


def pair_up(a: Sequence[Record], b: Sequence[Record], select_a: Selector = Selector(),
            select_b: Selector = Selector()) -> list[Pair]:
    """Records of A and B matched by model and dataset, and by whatever part of the run
    (backend, precision) the selectors leave open; unmatched records are left out."""
    by_backend = select_a.backend is None and select_b.backend is None
    by_precision = select_a.precision is None and select_b.precision is None

    def key(r: Record) -> tuple[str, ...]:
        return (r.name, r.dataset, r.backend if by_backend else "", r.precision if by_precision else "")

    side_b = {key(r): r for r in b if select_b.matches(r)}
    pairs = []
    for ra in a:
        rb = side_b.get(key(ra))
        if select_a.matches(ra) and rb is not None and rb is not ra:
            pairs.append(paired(ra, rb))
    return pairs


def compare_files(a: Path, b: Path | None, select_a: str | None = None,
                  select_b: str | None = None) -> list[Pair]:
    """Pairs of report `a` against report `b` (or against itself when `b` is None)."""
    records_a = load_report(a)
    records_b = records_a if b is None else load_report(b)
    backends = {r.backend for r in (*records_a, *records_b)}
    sa, sb = Selector.parse(select_a, backends), Selector.parse(select_b, backends)
    if b is None and sa == sb:
        raise VaccbenchError("comparing a report with itself: say which runs with --a and --b "
                             "(e.g. --a fp32 --b int8-percentile)", a)
    return pair_up(records_a, records_b, sa, sb)


# -- views ------------------------------------------------------------------------------

def _flip_line(f: Flip) -> str:
    return (f"{'lost' if f.lost else 'gained':<6} {f.file}  label {class_name(f.label)!r}: "
            f"A {class_name(f.top1_a)!r}, B {class_name(f.top1_b)!r}")


OTHER_IMAGES = "other images"  # the label of a difference between two different image sets


def compare_lines(pairs: Sequence[Pair], flips: int = 10, classes: int = 5) -> list[str]:
    """Per pair a block: first what is sound, the difference on the images both sides saw
    (paired: agreement, exact McNemar), then each side's totals and their difference,
    labelled `other images` when the sides measured different sets; then the first `flips`
    flipped images and the `classes` classes that lost most. Fits 80 columns but for long
    file names."""
    lines: list[str] = []
    for p in pairs:
        run_w = max(len(p.a.run), len(p.b.run), len("B - A, " + OTHER_IMAGES) - 2)
        g = p.agreement
        lines.append(f"{p.a.name} on {p.a.dataset}")
        if g is not None:
            lines += [f"  same {g.n} images{f' ({p.note})' if p.note else ''}, paired: B - A top1 "
                      f"{p.paired_delta:+.3f}  top5 {p.paired_top5_delta:+.3f}",
                      f"    B lost {g.reference_only}, gained {g.run_only}: exact McNemar "
                      f"p={g.mcnemar_p:.3g}; top-1 agreement {g.percent:.3f}% ({g.agree}/{g.n})"]
        totals = "B - A" if p.same_images else f"B - A, {OTHER_IMAGES}"
        lines += [*(f"  {side} {r.run:<{run_w}}  top1 {r.top1:7.3f}  top5 {r.top5:7.3f}  n={r.n}"
                    for side, r in (("A", p.a), ("B", p.b))),
                  f"  {totals:<{run_w + 2}}  top1 {p.top1_delta:+7.3f}  top5 {p.top5_delta:+7.3f}"
                  + ("" if p.same_images else "  (not like for like)")]
        if g is None:
            lines.append(f"  {p.note}")
            lines.append("")
            continue
        if p.flips:
            lines.append(f"  flipped images ({len(p.flips)}, lost first):")
            lines += [f"    {_flip_line(f)}" for f in p.flips[:flips]]
            if len(p.flips) > flips:
                lines.append(f"    ... {len(p.flips) - flips} more (--flips N, or --html)")
        losers = [c for c in p.classes if c.change < 0][:classes]
        if losers:
            lines.append("  classes that lost most (top-1 correct, same images):")
            lines += [f"    {c.change:+d}  {class_name(c.label)} ({c.correct_a}/{c.n} -> "
                      f"{c.correct_b}/{c.n})" for c in losers]
        lines.append("")
    return lines


def classes_table(classes: Sequence[ClassChange]) -> str:
    """HTML table of classes whose top-1 count changed, in the order given."""
    return table(["class", "images", "A correct", "B correct", "change"],
                 [(class_name(c.label), c.n, c.correct_a, c.correct_b, f"{c.change:+d}")
                  for c in classes])


# Eleven columns fit a narrow window: closer cells, and "same 50000" may break at its space.
SUMMARY_STYLE = "#summary th,#summary td{padding:3px 4px}#summary td.wrap{white-space:normal}"


def _summary(pairs: Sequence[Pair]) -> str:
    """One pair in two rows, side A's and side B's, with what compares them beside both: the
    difference on the images both sides saw (paired) when there are such images; otherwise
    the difference of the totals, which over different image sets is labelled and never
    coloured as a loss."""
    head = ["model on dataset", "side", "run", "top1", "top5", "n", "images compared",
            "B - A top1", "B - A top5", "agreement", "McNemar p"]
    ths = "".join(f"<th>{h}</th>" if i < 3 else f'<th class="num">{h}</th>' for i, h in enumerate(head))
    body = []
    for p in pairs:
        g = p.agreement
        if g is not None:
            images, deltas = f"same {g.n}", [f"{p.paired_delta:+.3f}", f"{p.paired_top5_delta:+.3f}"]
        else:
            images = f"same {p.a.n}" if p.same_images else f"{OTHER_IMAGES} ({p.a.n} and {p.b.n})"
            deltas = [f"{p.top1_delta:+.3f}", f"{p.top5_delta:+.3f}"]
        sound = g is not None or p.same_images
        cells = [(images, "wrap"), *((d, signed_class(d) if sound else "") for d in deltas),
                 (f"{g.percent:.3f}%" if g else "-", ""), (f"{g.mcnemar_p:.3g}" if g else "-", "")]
        shared = "".join(f'<td rowspan="2" class="num {cls}">{esc(v)}</td>' for v, cls in cells)
        for side, r in (("A", p.a), ("B", p.b)):
            first = f'<td rowspan="2">{breakable(f"{p.a.name} on {p.a.dataset}")}</td>' if side == "A" else ""
            body.append(f"<tr>{first}<td>{side}</td><td>{breakable(r.run)}</td>"
                        f'<td class="num">{r.top1:.3f}</td><td class="num">{r.top5:.3f}</td>'
                        f'<td class="num">{r.n}</td>{shared if side == "A" else ""}</tr>')
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def compare_html(pairs: Sequence[Pair], title: str, images: Mapping[str, Path] | None = None) -> str:
    """One self-contained page (nothing fetched): the summary, then per pair every flipped
    image (a thumbnail beside the first ones when `images`, the dataset's image files by
    name, has them) and every class that changed."""
    thumbnails = Thumbnails(images)
    sections = []
    for p in pairs:
        head = f"<h2>{esc(p.a.name)} on {esc(p.a.dataset)}: " \
               f"{esc(p.a.run)} (A) vs {esc(p.b.run)} (B)</h2>"
        if p.agreement is None:
            sections.append(f"{head}<p>{esc(p.note)}</p>")
            continue
        imgs = [thumbnails.img(f.file, f.file) for f in p.flips[:2 * PER_TEST]]
        rows = [("lost" if f.lost else "gained", f.file, class_name(f.label), class_name(f.top1_a),
                 class_name(f.top1_b)) for f in p.flips]
        if any(imgs):  # a column of thumbnails beside the first flipped images
            imgs += [""] * (len(rows) - len(imgs))
            flips = table(["", "image", "file", "label", "A top-1", "B top-1"],
                          [(r[0], img, *r[1:]) for r, img in zip(rows, imgs)], 6, raw=(1,))
        else:
            flips = table(["", "file", "label", "A top-1", "B top-1"], rows, 5)
        sections.append(f'{head}<p>{len(p.flips)} flipped images, lost first</p><div class="flips">'
                        f'{flips}</div><p>classes whose top-1 count changed, worst first</p>'
                        f'<div class="classes">{classes_table(p.classes)}</div>')
    body = (f'<h1>vaccbench compare</h1><p>{esc(title)}</p><div id="summary">{_summary(pairs)}</div>'
            + "\n".join(sections))
    return page("vaccbench compare", body, SUMMARY_STYLE)
