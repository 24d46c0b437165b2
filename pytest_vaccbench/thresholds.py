"""Fast int8 calibration: the activation ranges onnxruntime's calibrators compute, streamed.

onnxruntime's Percentile calibrator rebuilds a histogram per calibration batch with
`np.histogram` on explicit (non-uniform) edges, a binary search per value, and its Entropy
rule loops over bins in Python: on mobilenetv2 with 1000 images that was ~17x an fp32 pass.
This module computes the same per-tensor ranges in one streaming pass: the graph with the
calibrated tensors as outputs runs one batch at a time, and each tensor is folded into its
histogram by arithmetic and `np.bincount`, on threads (numpy releases the GIL), while
onnxruntime runs the next batch (memory: two batches of activations, whatever the number of
images). Not collected: the input of a Clip/Relu whose range quantize_static replaces by the
Clip/Relu's output's (`inherited_ranges`); in mobilenetv2 that is every Conv before a ReLU6,
35 of 171 tensors but nearly half the activation values, and onnxruntime can then fuse those
Conv+Clip pairs again.

The histograms' grids are those onnxruntime's collectors end with: the first batch's range,
widened by whole bins as larger values arrive, with the same float32 arithmetic. The
thresholds then follow onnxruntime's own rules: Percentile (2048 bins of |x|, 99.999th
percentile, clipped to the observed min/max), Entropy (128 bins of x, 128 quantized bins, the
KL-minimising symmetric window, vectorised here), MinMax (min/max). `mse` (no onnxruntime
counterpart) takes the |x| histogram and picks the threshold minimising the expected squared
quantization error: clipping error above the threshold plus step^2/12 rounding error inside
it, with the int8 step onnxruntime's asymmetric activations get for that range.

What the binning costs is one counter increment per activation value (mobilenetv2: 7 million
values per image, about the CPU time of the fp32 pass itself at ~2 ns each). Three ways make
that cheaper without changing a threshold. Entropy's grid of 128 bins takes uint8 bin
numbers, which OpenCV's calcHist counts 1.7x as fast as np.bincount. The 99.999th percentile
reads only the top of its histogram, and mse's best threshold lies in the top too: after the
first batch, only the values above the first batch's 99.9th (percentile) or 99th (mse)
percentile are binned one by one, the rest counted together (`TensorHistogram.top`). Whether
the threshold then lies in the exact part is checked (`TensorHistogram.resolves`,
`mse_resolves`, by a bound); a tensor whose threshold may lie lower is binned whole in a
second pass (not seen on mobilenetv2's 136 tensors).

The documented difference from onnxruntime: values are binned by arithmetic on the uniform
grid rather than by searching its float32 edges, so a value within float32 rounding of a bin
edge may land in the neighbouring bin (tests bound the resulting threshold difference).

The result is written in onnxruntime's calibration-cache format, so `quantize_static(...,
calibration_cache_path=...)` writes the QDQ graph from it, and the file is the cache.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

VERSION = 2  # part of every cache key: bump when the ranges computed here change
MODES = ("max", "percentile", "kl_divergence", "mse")
PERCENTILE = 99.999
PERCENTILE_BINS = 2048  # onnxruntime's Percentile default
PERCENTILE_TOP = 0.999  # percentile mode bins one by one only the values above this cdf level (of the first batch)
MSE_TOP = 0.99  # the same for mse (its best threshold, a bound tells, lies above)
ENTROPY_BINS = 128  # onnxruntime's Entropy defaults (num_bins, num_quantized_bins)
ENTROPY_QUANTIZED_BINS = 128
QUANT_LEVELS = 255  # int8: 256 levels, 255 steps


class CalibrationError(ValueError):
    """The calibration images make a calibrated tensor non-finite."""


def finite_range(values: np.ndarray, name: str) -> tuple[np.float32, np.float32]:
    """(min, max) of one batch of a tensor; NaN or inf is refused by the tensor's name."""
    low, high = values.min(), values.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise CalibrationError(f"{name} has non-finite values (min {low}, max {high}): the graph cannot be "
                               "calibrated on these images; check the model and its preprocessing")
    return low, high


def _ort_quantization() -> Any:
    import onnxruntime.quantization as q

    return q


def calibration_model(source: Path) -> Any:
    """The graph onnxruntime's quantize_static calibrates: shape-inferred, opset updated."""
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer, update_opset_version

    q = _ort_quantization()
    return update_opset_version(load_model_with_shape_infer(Path(source)), q.QuantType.QInt8, q.QuantType.QInt8)


def quantized_op_types() -> list[str]:
    """The op types quantize_static quantizes (and calibrates) by default."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def calibrated_tensors(model: Any) -> list[str]:
    """The float tensors quantize_static's calibrator collects (inputs and outputs of the op
    types it quantizes by default), in graph order."""
    from onnx import TensorProto

    op_types = set(quantized_op_types())
    infos = {vi.name: vi for vi in itertools.chain(model.graph.value_info, model.graph.output, model.graph.input)}
    initializers = {t.name for t in model.graph.initializer}
    found: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        for name in itertools.chain(node.input, node.output):
            vi = infos.get(name)
            if (vi is not None and vi.type.HasField("tensor_type") and name not in initializers
                    and vi.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16)):
                found[name] = None
    return list(found)


def inherited_ranges(model: Any, tensors: list[str]) -> list[tuple[str, str]]:
    """(input, output) of each Clip/Relu whose input's range quantize_static replaces by the
    output's (onnxruntime's BaseQuantizer.adjust_tensor_ranges: the input has no other
    consumer and both are calibrated), in graph order: the order the replacements are made.
    The input's own range is never read unless it is itself such an output, so it need not
    be collected (and the graph need not expose the activation before its Clip/Relu). This
    holds while no Clip/Relu is kept in float: layers kept in float are Conv, MatMul and Gemm
    nodes only (layers.py)."""
    from collections import Counter

    consumers = Counter(name for node in model.graph.node for name in node.input)
    calibrated = set(tensors)
    quantized = set(quantized_op_types())
    return [(node.input[0], node.output[0]) for node in model.graph.node
            if node.op_type in ("Clip", "Relu") and node.op_type in quantized and consumers[node.input[0]] == 1
            and node.input[0] in calibrated and node.output[0] in calibrated]


def collected_tensors(tensors: list[str], inherited: list[tuple[str, str]]) -> list[str]:
    """The calibrated tensors whose own range quantize_static reads: all but the inputs whose
    range a Clip/Relu replaces (`inherited_ranges`), unless one is itself such an output."""
    unread = {src for src, _ in inherited} - {dst for _, dst in inherited}
    return [t for t in tensors if t not in unread]


def activation_model(model: Any, tensors: list[str]) -> bytes:
    """`model` with the calibrated tensors as outputs (onnxruntime's calibrators do the same)."""
    import onnx

    infos = {vi.name: vi for vi in itertools.chain(model.graph.value_info, model.graph.output, model.graph.input)}
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    augmented.graph.output.extend(infos[t] for t in tensors if t not in existing)
    return augmented.SerializeToString()


def _session(model: bytes, threads: int, spinning: bool = True) -> Any:
    """A CPU session; `spinning` False: its idle threads yield at once (onnxruntime's default
    busy-waits), leaving the cores to the binning that runs alongside."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


_scratch = threading.local()  # per binning thread: the arrays one CHUNK is binned in


def _buffers(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's scratch arrays (float32, float32, int32), `n` long: no allocation per chunk."""
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None or bufs[0].size < n:
        bufs = _scratch.bufs = (np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.int32))
    return bufs[0][:n], bufs[1][:n], bufs[2][:n]


def _bin_map(first: float, last: float, bins: int) -> tuple[np.float32, np.float32]:
    """(inv, shift): x * inv + shift in float32, truncated, is 1 + the bin of x (0 below)."""
    width = (np.float64(last) - np.float64(first)) / bins
    inv = np.float32(1.0 / width) if width > 0 else np.float32(0)
    return inv, np.float32(1.0 - np.float64(first) * inv)


def uniform_counts(x: np.ndarray, first: float, last: float, bins: int,
                   bounds: tuple[float, float] | None = None) -> np.ndarray:
    """np.histogram(x, bins, range=(first, last)) for float32 `x`, by arithmetic and
    np.bincount: values below `first` are dropped, values above `last` land in the last bin.
    It differs from np.histogram only for a value within float32 rounding of a bin edge.
    `bounds`: a (lower, upper) bound of `x` known to the caller; the clipping pass is skipped
    when every value maps into the bins (or just past them) anyway.

    Up to 254 bins (Entropy's 128), the bin numbers are uint8 and OpenCV's calcHist counts
    them (1.7x np.bincount); more, they are int32 (numpy converts float32 to int32 8 values
    at a time, to int64 one by one) and np.bincount counts them."""
    inv, shift = _bin_map(first, last, bins)
    _, y, idx = _buffers(x.size)
    np.multiply(x, inv, out=y)
    y += shift
    lowest, highest = (np.float32(np.float32(b) * inv) + shift for b in bounds) if bounds else (-np.inf, np.inf)
    if not (lowest >= 0 and highest < bins + 2):  # the float32 map is monotonic: its extremes are these
        np.clip(y, 0, bins + 1, out=y)
    if bins + 2 <= 256:
        import cv2

        small = _buffers(x.size)[2].view(np.uint8)[:x.size]
        np.copyto(small, y, casting="unsafe")
        counts = cv2.calcHist([small.reshape(1, -1)], [0], None, [bins + 2], [0, bins + 2]).ravel().astype(np.int64)
    else:
        np.copyto(idx, y, casting="unsafe")
        counts = np.bincount(idx, minlength=bins + 2)
    counts[bins] += counts[bins + 1]  # `last` itself (bins + 1 after the shift): the last bin
    return counts[1:bins + 1]


CHUNK = 1 << 16  # values binned at a time: the scratch arrays stay in the CPU's cache


class TensorHistogram:
    """onnxruntime's HistogramCollector for one tensor, fed batch by batch: the same growing
    bin grid (replayed from each batch's range), the counts added with `uniform_counts`,
    CHUNK values at a time.

    absolute (Percentile, and `mse`): |x| in `bins` bins over the first batch's |x| range,
    extended by np.arange steps of one bin width when a batch's max |x| passes the last edge
    (values past an arange that stops short of the max are dropped, as np.histogram on those
    edges drops them). Otherwise (Entropy): x in (-t, t), t the first batch's max |x|,
    widened by whole bins on both sides.

    `top` (absolute only; percentile and mse): only the top of the histogram decides the threshold.
    After the first batch, the bins below the one where its cdf reaches `top` (`cut`) are
    counted together, in bin cut - 1: a later batch's values are compared with that bin's
    edge (as its bin number, the same float32 arithmetic), and only those above are binned
    one by one. The counts from `cut` on are exact, so a percentile that falls there
    (`resolves`) is the one of the whole histogram.
    """

    def __init__(self, absolute: bool, bins: int, top: float | None = None) -> None:
        self.absolute, self.bins, self.top = absolute, bins, top
        self.cut = 0  # bins below it counted together, in cut - 1 (0: every bin counted)
        self.low, self.high = np.float32(np.inf), np.float32(-np.inf)
        self.edges: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self.threshold = np.float32(0)  # entropy: the grid is (-threshold, threshold)

    def add(self, values: np.ndarray, name: str = "tensor") -> None:
        """Fold one batch of the tensor in."""
        x = np.asarray(values, np.float32).ravel()
        low, high = finite_range(x, name)
        self.low, self.high = min(self.low, low), max(self.high, high)
        amax = np.float32(max(abs(low), abs(high)))
        first = self.counts is None
        grow = self._grow_absolute if self.absolute else self._grow_signed
        grow(x, amax)
        fold = self._fold_signed if not self.absolute else self._fold_top if self.cut else self._fold_absolute
        for start in range(0, x.size, CHUNK):
            fold(x[start:start + CHUNK], low, high, amax)
        if first and self.absolute and self.top is not None and self.counts.sum():
            self.cut = int(np.searchsorted(np.cumsum(self.counts) / self.counts.sum(), self.top))

    def resolves(self, percentile: float) -> bool:
        """Whether the `percentile` of |x| falls in the exact part of the histogram (`top`)."""
        if not self.cut:
            return True
        return bool(np.searchsorted(np.cumsum(self.counts / self.counts.sum()), percentile / 100.0) >= self.cut)

    def _grow_absolute(self, x: np.ndarray, amax: np.float32) -> None:
        if self.edges is None:  # np.histogram(|x|, bins): the first batch's range
            low = min(np.abs(x[start:start + CHUNK]).min() for start in range(0, x.size, CHUNK))
            self.edges = np.histogram_bin_edges(np.array([low, amax], np.float32), self.bins).astype(np.float32)
            self.counts = np.zeros(self.bins, np.int64)
        elif amax > self.edges[-1]:
            width = self.edges[1] - self.edges[0]
            more = np.arange(self.edges[-1] + width, amax + width, width)
            self.edges = np.hstack((self.edges, more)).astype(np.float32)
            self.counts = np.concatenate((self.counts, np.zeros(len(more), np.int64)))

    def _fold_absolute(self, part: np.ndarray, low: np.float32, high: np.float32, amax: np.float32) -> None:
        x = part if low >= 0 else np.abs(part, out=_buffers(part.size)[0])  # |x| = x after a Relu/Clip
        first_last = self.edges[self.bins]  # end of the first batch's (linspace) grid
        if amax > first_last:  # the few values on the extended (np.arange) edges: as onnxruntime
            beyond = x[x > first_last]
            if beyond.size:
                extra, _ = np.histogram(beyond, bins=self.edges[self.bins:])
                self.counts[self.bins:] += extra
                self.counts[self.bins - 1] -= beyond.size  # uniform_counts puts them in its last bin
        self.counts[:self.bins] += uniform_counts(x, self.edges[0], first_last, self.bins, (0.0, amax))

    def _fold_top(self, part: np.ndarray, low: np.float32, high: np.float32, amax: np.float32) -> None:
        x = part if low >= 0 else np.abs(part, out=_buffers(part.size)[0])
        inv, shift = _bin_map(self.edges[0], self.edges[self.bins], self.bins)
        y = _buffers(x.size)[1]
        np.multiply(x, inv, out=y)
        y += shift  # 1 + the bin number, as uniform_counts computes it
        above = y >= self.cut + 1
        # below the first edge: dropped, as in uniform_counts (none when the grid starts at 0)
        counted = x.size if self.edges[0] == 0 else np.count_nonzero(y >= 1)
        top = x[above]
        self.counts[self.cut - 1] += counted - top.size
        if top.size:
            self._fold_absolute(top, np.float32(0), high, amax)

    def _grow_signed(self, x: np.ndarray, amax: np.float32) -> None:
        if self.counts is None:
            self.threshold, self.counts = amax, np.zeros(self.bins, np.int64)
        elif amax > self.threshold:
            if self.threshold == 0:  # onnxruntime re-ranges without moving the old counts
                self.threshold = amax
            else:
                n = len(self.counts)
                stride = 2 * self.threshold / n
                half = int((amax - self.threshold) // stride + 1)
                self.threshold = np.float32(half * stride + self.threshold)
                self.counts = np.concatenate((np.zeros(half, np.int64), self.counts, np.zeros(half, np.int64)))

    def _fold_signed(self, part: np.ndarray, low: np.float32, high: np.float32, amax: np.float32) -> None:
        self.counts += uniform_counts(part, -self.threshold, self.threshold, len(self.counts), (low, high))

    def grid(self) -> np.ndarray:
        """The bin edges of `counts`."""
        if self.absolute:
            return self.edges
        return np.linspace(-self.threshold, self.threshold, len(self.counts) + 1, dtype=np.float32)


def collect(model: Any, tensors: list[str], batches: Iterable[np.ndarray], absolute: bool | None,
            threads: int = 1, top: float | None = None) -> tuple[list[TensorHistogram], np.ndarray, np.ndarray]:
    """One pass: the graph with the calibrated tensors as outputs, one batch at a time, each
    tensor's values folded into its histogram (absolute None: min/max only) on `threads`
    threads (numpy releases the GIL in the per-element work). Batch k is binned while
    onnxruntime runs batch k + 1 (it releases the GIL too): two batches of activations are
    held at most, whatever the number of batches."""
    from concurrent.futures import Future, ThreadPoolExecutor

    session = _session(activation_model(model, tensors), threads, spinning=False)
    feed = session.get_inputs()[0].name
    bins = PERCENTILE_BINS if absolute else ENTROPY_BINS
    hists = [TensorHistogram(bool(absolute), bins, top) for _ in tensors]
    low = np.full(len(tensors), np.inf, np.float32)
    high = np.full(len(tensors), -np.inf, np.float32)

    def fold(i: int, values: np.ndarray) -> None:
        if absolute is None:
            batch_low, batch_high = finite_range(values, tensors[i])
            low[i], high[i] = min(low[i], batch_low), max(high[i], batch_high)
        else:
            hists[i].add(values, tensors[i])

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending: list[Future] = []
        for x in batches:
            outputs = session.run(tensors, {feed: x})
            for job in pending:  # the previous batch, binned while this one ran
                job.result()
            pending = [pool.submit(fold, i, values) for i, values in enumerate(outputs)]
            del outputs  # each activation freed as soon as it is binned
        for job in pending:
            job.result()
    if absolute is not None:
        low, high = np.array([h.low for h in hists]), np.array([h.high for h in hists])
    return hists, low, high


# -- thresholds from the histograms, by onnxruntime's rules --------------------------------
def percentile_threshold(counts: np.ndarray, edges: np.ndarray, low: float, high: float,
                         percentile: float = PERCENTILE) -> tuple[np.float32, np.float32]:
    """HistogramCollector.compute_percentile (symmetric): the left edge of the bin where the
    |x| cdf reaches the percentile, as (-t, t) clipped to the observed (min, max)."""
    cdf = np.cumsum(counts / counts.sum())
    t = edges[np.searchsorted(cdf, percentile / 100.0)]
    return np.float32(max(-t, low)), np.float32(min(t, high))


def entropy_threshold(counts: np.ndarray, edges: np.ndarray, low: float, high: float,
                      quantized_bins: int = ENTROPY_QUANTIZED_BINS) -> tuple[np.float32, np.float32]:
    """HistogramCollector.get_entropy_threshold, each candidate window vectorised: the
    symmetric window around zero whose int8 quantization keeps the smallest KL divergence."""
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    n = counts.size
    zero, half_q = n // 2, quantized_bins // 2
    cumsum = np.concatenate(([0], np.cumsum(counts)))
    total = cumsum[-1]
    best, best_i = np.inf, half_q
    for i in range(half_q, zero + 1):
        start, end = zero - i, min(zero + i + 1, n)
        sliced = counts[start:end]
        p = sliced.copy()
        p[0] += cumsum[start]
        p[-1] += total - cumsum[end]
        merged = sliced.size // quantized_bins
        body = sliced[:quantized_bins * merged].reshape(quantized_bins, merged)
        qbins = body.sum(axis=1)
        qbins[-1] += sliced[quantized_bins * merged:].sum()
        norm = (p[:quantized_bins * merged] != 0).reshape(quantized_bins, merged).sum(axis=1)
        q = _ort_q_layout(qbins, norm, merged, p.size, quantized_bins)
        ps, qs = smooth_distribution(p), smooth_distribution(q)
        div = np.inf if ps is None or qs is None else float(np.float32(entropy(ps, qs)))
        if div < best:
            best, best_i = div, i
    start, end = zero - best_i, min(zero + best_i + 1, n)
    lo, hi = edges[start], edges[end]
    return np.float32(max(lo, low)), np.float32(min(hi, high))


def _ort_q_layout(qbins: np.ndarray, norm: np.ndarray, merged: int, size: int, quantized_bins: int) -> np.ndarray:
    """The expanded q of get_entropy_threshold: block `index` covers [index*merged, +merged)
    and holds its quantized bin's count over the block's non-zero bins of p, truncated (an
    int64 array); a block without a non-zero bin, and the tail past the last block, stay 0."""
    q = np.zeros(size, np.int64)
    values = np.zeros(quantized_bins, np.float64)
    nz = norm != 0
    values[nz] = qbins[nz] / norm[nz]
    q[:quantized_bins * merged] = np.repeat(values, merged).astype(np.int64)
    return q


def _mse_errors(counts: np.ndarray, edges: np.ndarray, low: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(error of each candidate threshold t = edges[k], k = 1.., those t, the bin centres)."""
    centers = (edges[:-1].astype(np.float64) + edges[1:]) / 2
    weights = counts.astype(np.float64)

    def suffix(v: np.ndarray) -> np.ndarray:  # suffix[k] = v[k:].sum()
        return np.concatenate((np.cumsum(v[::-1])[::-1], [0.0]))

    s0, s1, s2 = suffix(weights), suffix(weights * centers), suffix(weights * centers ** 2)
    ts = edges[1:].astype(np.float64)  # candidate k: the bins from k on lie above t = edges[k]
    k = np.arange(1, len(edges))
    clip_err = np.maximum(s2[k] - 2 * ts * s1[k] + ts ** 2 * s0[k], 0)
    inside = s0[0] - s0[k]
    span = ts if low >= 0 else 2 * ts
    return clip_err + inside * (span / QUANT_LEVELS) ** 2 / 12, ts, centers


def mse_threshold(counts: np.ndarray, edges: np.ndarray, low: float, high: float,
                  cut: int = 0) -> tuple[np.float32, np.float32]:
    """The |x| threshold t (a bin edge) minimising the expected squared error of int8
    quantization over the histogram (values at their bin's centre): (|x| - t)^2 above t,
    step^2/12 inside, step = (range width) / 255 with the range onnxruntime's asymmetric
    activations get, (min(0, low), t) for a non-negative tensor and (-t, t) otherwise.
    Every edge from `cut` on is tried (below it the histogram may be counted together, see
    `mse_resolves`), in O(bins) with suffix sums."""
    err, ts, _ = _mse_errors(counts, edges, low)
    first = max(cut, 1) - 1
    t = ts[first + int(np.argmin(err[first:]))]
    return np.float32(max(-t, low)), np.float32(min(t, high))


def mse_resolves(counts: np.ndarray, edges: np.ndarray, low: float, cut: int) -> bool:
    """Whether the best threshold of a histogram whose bins below `cut` are counted together
    (`TensorHistogram.top`) lies at `cut` or above, so that `mse_threshold` finds the one of
    the whole histogram. Any t below edges[cut] leaves every value of the bins from `cut` on
    above it by at least its distance to edges[cut - 1]: their clipping error alone, a lower
    bound of that t's error, must exceed the best error from `cut` on (with a margin for the
    float rounding of the suffix sums)."""
    if cut < 1:
        return True
    err, _, centers = _mse_errors(counts, edges, low)
    weights = counts[cut:].astype(np.float64)
    bound = float((weights * (centers[cut:] - np.float64(edges[cut - 1])) ** 2).sum())
    rounding = 1e-12 * float((counts.astype(np.float64) * centers ** 2).sum())
    return bool(err[cut - 1:].min() < bound * (1 - 1e-9) - rounding)


def compute_ranges(model: Any, mode: str, batches: Callable[[], Iterator[np.ndarray]],
                   threads: int = 1) -> dict[str, tuple[np.float32, np.float32]]:
    """(low, high) per calibrated tensor for `mode`, in one streaming pass over `batches()`:
    the ranges quantize_static uses. The input of a Clip/Relu that inherits its output's
    range (`inherited_ranges`) is not collected but given that range, as quantize_static
    would (onnxruntime's calibrators collect it, and quantize_static then overwrites it)."""
    if mode not in MODES:
        raise ValueError(f"calibration mode {mode!r} is not one of {MODES}")
    tensors = calibrated_tensors(model)
    inherited = inherited_ranges(model, tensors)
    collected = collected_tensors(tensors, inherited)
    absolute = {"max": None, "kl_divergence": False}.get(mode, True)
    top = {"percentile": PERCENTILE_TOP, "mse": MSE_TOP}.get(mode)
    hists, low, high = collect(model, collected, batches(), absolute, threads, top)
    resolves = {"percentile": lambda h: h.resolves(PERCENTILE),
                "mse": lambda h: mse_resolves(h.counts, h.grid(), float(h.low), h.cut)}.get(mode)
    again = [i for i, h in enumerate(hists) if not resolves(h)] if resolves else []
    if again:  # a threshold below the first batch's top: those tensors binned whole, in a second pass
        redone, _, _ = collect(model, [collected[i] for i in again], batches(), absolute, threads)
        for i, hist in zip(again, redone):
            hists[i] = hist
    if mode == "max":
        ranges = {t: (np.float32(low[i]), np.float32(high[i])) for i, t in enumerate(collected)}
    else:
        def rule(h: TensorHistogram) -> tuple[np.float32, np.float32]:
            args = (h.counts, h.grid(), float(h.low), float(h.high))
            if mode == "mse":
                return mse_threshold(*args, cut=h.cut)
            return (percentile_threshold if mode == "percentile" else entropy_threshold)(*args)
        ranges = {t: rule(h) for t, h in zip(collected, hists)}
    for src, dst in inherited:  # in graph order, as adjust_tensor_ranges replaces them
        ranges[src] = ranges[dst]
    return {t: ranges[t] for t in tensors}


def save_calibration(ranges: dict[str, tuple[np.float32, np.float32]], mode: str, path: Path) -> Path:
    """Write `ranges` as onnxruntime's calibration cache (quantize_static's calibration_cache_path)."""
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = TensorsData(calibration_method(mode), {t: TensorData(lowest=np.asarray(lo, np.float32), highest=np.asarray(hi, np.float32))
                                for t, (lo, hi) in ranges.items()})
    save_tensors_data(data, path)
    return path


def calibration_method(mode: str) -> Any:
    """The onnxruntime CalibrationMethod a saved cache of `mode` is tagged with."""
    q = _ort_quantization()
    return {"percentile": q.CalibrationMethod.Percentile, "kl_divergence": q.CalibrationMethod.Entropy}.get(
        mode, q.CalibrationMethod.MinMax)
