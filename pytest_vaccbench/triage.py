"""Layer triage of an int8 (QDQ) build: which layers lose the accuracy, and what keeping them
in fp32 gives back, measured.

For every quantized layer (Conv, MatMul, Gemm; named as in layers.py), on a few images:
- single error: the layer's int8 output (input quantized with the build's activation scale,
  dequantized weights) when fed the fp32 network's input of that layer, against its fp32
  output: the error introduced at this layer;
- accumulated error: the layer's output in the int8 network against the fp32 network: the
  error carried to this layer;
both as SQNR in dB (onnxruntime.quantization.qdq_loss_debug's definition, over all the
images' values at once) and cosine similarity; then, for the IMPACT_LAYERS worst by single
error, what keeping only that layer in fp32 gives back (fp32 weights and arithmetic, its
input still the int8 activation: what `nodes_to_exclude` builds): the network output's KL
divergence from fp32's, and its top-1 agreement with fp32.

The set of layers to keep in fp32 is grown greedily on a continuous measure: at each step
the candidate that lowers the mean KL divergence of the output from fp32's most, over all
the triage images (flips alone are few and discrete: a pick made on them is noisy). Each
added layer is confirmed on held-out images, images used neither for calibration nor for
the triage: it must lower their KL too, else the next candidate is tried, and the set
stops growing when none is confirmed. The held-out top-1 after each step is the curve
shown; K is the smallest confirmed set that recovers at least half of the top-1 lost there.

The triage images are one half of the run's counted images, the discordant ones (top-1
flipped between fp32 and int8) first, at most TRIAGE_IMAGES; the held-out images are the
other half. Plain functions, no pytest: the plugin and `vaccbench triage` call `triage_case`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .backends import RunOptions
from .baselines import ModelEntry
from .dataset import Dataset
from .errors import VaccbenchError
from .layers import Layer, parse_keep, quantizable_layers

IMPACT_LAYERS = 10  # layers whose keep-in-fp32 effect is measured (worst by single error)
TOP_K = 5  # at most this many layers kept in fp32 to recover the loss
GREEDY_WIDTH = 6  # candidates tried together with those kept, from the best kept alone
CONFIRM_TRIES = 2  # candidates tried on the held-out images per step before the set stops
SHOWN = 5  # layers listed in a failing test's message
TRIAGE_IMAGES = 128  # triage images: the discordant ones first, then the others, at most this many
DEFAULT_BUDGET = 120.0  # seconds a failing test may spend on triage (mobilenetv2, 2 cores: ~40)
SINGLE = "/vaccbench_single"  # suffix of the tensors the single-error copies write


# -- the layer errors ---------------------------------------------------------------------
@dataclass
class ErrorStats:
    """SQNR and cosine of y against reference x over all values seen, from running sums of
    x.x, y.y, x.y and (x-y).(x-y) (the graph computes them: values never leave it)."""

    xx: float = 0.0
    yy: float = 0.0
    xy: float = 0.0
    dd: float = 0.0

    def add(self, xx: float, yy: float, xy: float, dd: float) -> None:
        self.xx += float(xx)
        self.yy += float(yy)
        self.xy += float(xy)
        self.dd += float(dd)

    @property
    def sqnr(self) -> float:
        """20 log10(|x| / |x - y|), with qdq_loss_debug's epsilon floor."""
        eps = float(np.finfo(float).eps)
        return 20 * math.log10(max(math.sqrt(max(self.xx, 0.0)), eps) /
                               max(math.sqrt(max(self.dd, 0.0)), eps))

    @property
    def cosine(self) -> float:
        return self.xy / math.sqrt(self.xx * self.yy) if self.xx > 0 and self.yy > 0 else float("nan")


def _opset(model: Any) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def fp32_at_opset(fp32: Any, qdq: Any) -> Any:
    """The fp32 graph at the QDQ graph's opset (a per-channel build upgrades it to 13)."""
    if _opset(fp32) >= _opset(qdq):
        return fp32
    from onnx import version_converter

    return version_converter.convert_version(fp32, _opset(qdq))


def _tensor_names(model: Any) -> set[str]:
    g = model.graph
    return ({t.name for t in g.initializer} | {i.name for i in g.input} |
            {o for n in g.node for o in n.output})


def single_error_model(fp32: Any, qdq: Any, layers: Sequence[Layer]) -> tuple[Any, dict[str, tuple[str, str]]]:
    """The fp32 graph plus, for every quantized layer, a copy of its int8 version (input
    QuantizeLinear/DequantizeLinear, weight and bias DequantizeLinear, the layer) reading the
    fp32 graph's tensors. Returns the model and {node: (fp32 output, single output)}; a layer
    the QDQ graph left in float, or whose input the fp32 graph does not have, is left out."""
    from onnx import helper

    model = copy.deepcopy(fp32)
    known = _tensor_names(model)
    q_init = {t.name: t for t in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    q_nodes = {n.name: n for n in qdq.graph.node}
    f_nodes = {n.name: n for n in fp32.graph.node}
    copied: set[str] = set()
    pairs: dict[str, tuple[str, str]] = {}

    def constant(name: str) -> str | None:
        if name not in q_init:
            return None
        if name not in copied:
            t = copy.deepcopy(q_init[name])
            t.name = name + SINGLE
            model.graph.initializer.append(t)
            copied.add(name)
        return name + SINGLE

    def clone(node: Any, inputs: list[str], tag: str) -> str:
        new = helper.make_node(node.op_type, inputs, [node.output[0] + SINGLE + tag],
                               name=node.name + SINGLE + tag)
        new.attribute.extend(node.attribute)
        new.domain = node.domain
        model.graph.node.append(new)
        return new.output[0]

    for layer in layers:
        qn, fn = q_nodes.get(layer.node), f_nodes.get(layer.node)
        if qn is None or fn is None:
            continue
        tag = f"/{layer.kind}{layer.index}"
        inputs, quantized, usable = [], False, True
        for name in qn.input:
            dq = producer.get(name)
            if not name or dq is None or dq.op_type != "DequantizeLinear":
                inputs.append(name)
                usable &= not name or name in known
                continue
            quantized = True
            params = [constant(p) for p in dq.input[1:]]
            q = producer.get(dq.input[0])
            if dq.input[0] in q_init:  # a weight or bias
                source = constant(dq.input[0])
            elif q is not None and q.op_type == "QuantizeLinear" and q.input[0] in known:
                q_params = [constant(p) for p in q.input[1:]]
                usable &= None not in q_params
                source = clone(q, [q.input[0], *q_params], tag) if usable else None
            else:
                source = None
            usable &= source is not None and None not in params
            if usable:
                inputs.append(clone(dq, [source, *params], tag))
        if quantized and usable:
            pairs[layer.node] = (fn.output[0], clone(qn, inputs, tag))
    return model, pairs


INT8 = "vaccbench_int8/"  # prefix of the int8 graph's names inside the error model
SUMS = ("xx", "yy", "xy", "dd")


def error_model(fp32: Any, qdq: Any, layers: Sequence[Layer]) -> tuple[Any, dict[str, tuple[list[str], list[str]]]]:
    """One graph computing, from one input, the fp32 network, the single-error copies, the
    int8 network, and per layer the sums of ErrorStats for single and accumulated error.
    Outputs: the fp32 scores, the int8 scores, then the sums; returns {node: (single sums'
    names, accumulated sums' names)}."""
    from onnx import TensorProto, compose, helper

    model, pairs = single_error_model(fp32, qdq, layers)
    int8 = compose.add_prefix(qdq, INT8)
    model.graph.node.extend(int8.graph.node)
    model.graph.initializer.extend(int8.graph.initializer)
    model.graph.node.append(helper.make_node("Identity", [model.graph.input[0].name],
                                             [int8.graph.input[0].name]))
    q_out = {n.name: n.output[0] for n in int8.graph.node}
    outputs = [model.graph.output[0].name, int8.graph.output[0].name]
    del model.graph.output[:]
    sums: dict[str, tuple[list[str], list[str]]] = {}

    def reduce(x: str, y: str, tag: str) -> list[str]:
        names = [f"{tag}/{s}" for s in SUMS]
        model.graph.node.extend([
            helper.make_node("Sub", [x, y], [f"{tag}/d"]),
            helper.make_node("Mul", [x, y], [f"{tag}/x*y"]),
            helper.make_node("ReduceSumSquare", [x], [names[0]], keepdims=0),
            helper.make_node("ReduceSumSquare", [y], [names[1]], keepdims=0),
            helper.make_node("ReduceSum", [f"{tag}/x*y"], [names[2]], keepdims=0),
            helper.make_node("ReduceSumSquare", [f"{tag}/d"], [names[3]], keepdims=0)])
        return names

    for node, (ref, single) in pairs.items():
        sums[node] = (reduce(ref, single, f"vaccbench_single/{node}"),
                      reduce(ref, q_out[INT8 + node], f"vaccbench_accumulated/{node}"))
        outputs.extend(sums[node][0] + sums[node][1])
    model.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs)
    return model, sums


def session(model: Any, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def fixed_batch(model: Any) -> int | None:
    """The graph's fixed batch size, None when dynamic."""
    initializers = {t.name for t in model.graph.initializer}
    dim = next(i for i in model.graph.input if i.name not in initializers).type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _batches(images: np.ndarray, batch: int | None, size: int = 16) -> Iterable[np.ndarray]:
    """Batches of the graph's fixed size (images beyond a whole number of them are left out)."""
    step = batch or size
    stop = len(images) - len(images) % step if batch else len(images)
    for start in range(0, stop, step):
        yield images[start:start + step]


@dataclass(frozen=True)
class LayerErrors:
    single_sqnr: float
    single_cos: float
    acc_sqnr: float
    acc_cos: float


def layer_errors(fp32: Any, qdq: Any, layers: Sequence[Layer], images: np.ndarray,
                 threads: int = 1) -> tuple[dict[str, LayerErrors], np.ndarray, np.ndarray]:
    """Single and accumulated errors of every quantized layer on `images`, and the fp32 and
    int8 network outputs (the first graph output) of those images."""
    model, sums = error_model(fp32, qdq, layers)
    sess = session(model, threads)
    feed = sess.get_inputs()[0].name
    stats = {node: (ErrorStats(), ErrorStats()) for node in sums}
    f_scores, q_scores = [], []
    for x in _batches(images, fixed_batch(fp32)):
        out = dict(zip((o.name for o in sess.get_outputs()), sess.run(None, {feed: x})))
        f_scores.append(out[model.graph.output[0].name])
        q_scores.append(out[model.graph.output[1].name])
        for node, names in sums.items():
            for stat, group in zip(stats[node], names):
                stat.add(*(out[n] for n in group))
    errors = {node: LayerErrors(s.sqnr, s.cosine, a.sqnr, a.cosine) for node, (s, a) in stats.items()}
    return errors, np.concatenate(f_scores), np.concatenate(q_scores)


# -- keeping layers in fp32 -----------------------------------------------------------------
def keep_fp32(qdq: Any, fp32: Any, nodes: Iterable[str]) -> Any:
    """The QDQ graph with the layers `nodes` computed in fp32: their weights and biases are the
    fp32 graph's (not the build's dequantized ones, which a damaged build may have wrong);
    their activation inputs stay quantized, as in a graph built with `nodes_to_exclude`."""
    model = copy.deepcopy(qdq)
    f_nodes = {n.name: n for n in fp32.graph.node}
    f_init = {t.name: t for t in fp32.graph.initializer}
    q_init = {t.name for t in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name not in nodes:
            continue
        original = f_nodes[node.name]
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in q_init:
                continue
            if original.input[i] not in f_init:
                raise ValueError(f"{node.name}: input {i} of the fp32 graph is not a constant")
            t = copy.deepcopy(f_init[original.input[i]])
            t.name = f"{original.input[i]}/vaccbench_fp32"
            model.graph.initializer.append(t)
            node.input[i] = t.name
    return model


def outputs(model: Any, images: np.ndarray, threads: int = 1) -> np.ndarray:
    """The first output (class scores) for each image."""
    sess = session(model, threads)
    feed = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {feed: x})[0] for x in _batches(images, fixed_batch(model))])


def top1(model: Any, images: np.ndarray, threads: int = 1) -> np.ndarray:
    """Top-1 index of the first output for each image."""
    return outputs(model, images, threads).argmax(axis=1)


def log_probabilities(scores: np.ndarray) -> np.ndarray:
    """log softmax of each row of class scores (float64); a graph that ends in a softmax
    already gives probabilities: their log."""
    x = np.asarray(scores, dtype=np.float64)
    if x.min() >= 0 and np.allclose(x.sum(axis=1), 1.0, atol=1e-3):
        return np.log(np.maximum(x, 1e-12))
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def kl_divergence(reference: np.ndarray, scores: np.ndarray) -> float:
    """Mean over images of KL(p_reference || p_scores) of the softmaxed outputs, in nats:
    0 when the build answers exactly as fp32 does, growing with every shift of its
    probabilities, not only with the flips of its top-1."""
    log_p, log_q = log_probabilities(reference), log_probabilities(scores)
    return float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean())


# -- the report --------------------------------------------------------------------------------
@dataclass
class LayerRow:
    layer: Layer
    errors: LayerErrors
    kept_agreement: float | None = None  # % top-1 agreement with fp32, this layer kept in fp32
    kept_kl: float | None = None  # KL from fp32 of the output, this layer kept in fp32


@dataclass
class Recovery:
    """The held-out images (used neither for calibration nor triage): top-1 and KL from
    fp32 with the first K layers of `order` kept in fp32, each confirmed there."""

    n: int
    fp32: float
    int8: float
    int8_kl: float | None  # KL from fp32 of the int8 build's output on these images (None: not run)
    kept: dict[int, float]  # K -> top-1 with the first K of `order` kept
    order: list[Layer]
    kl: dict[int, float] = field(default_factory=dict)  # K -> held-out KL from fp32
    together: dict[int, float] = field(default_factory=dict)  # K -> KL on the triage images
    rejected: list[str] = field(default_factory=list)  # candidates the held-out images refused
    stopped: str = ""  # why the set stopped growing before TOP_K

    @property
    def lost(self) -> float:
        return self.fp32 - self.int8

    @property
    def k(self) -> int | None:
        """The smallest K measured that recovers at least half of the lost top-1."""
        return next((k for k, v in sorted(self.kept.items()) if v - self.int8 >= self.lost / 2), None)

    @property
    def best(self) -> int | None:
        """The K whose held-out top-1 is highest (the smallest of equals), if above int8's."""
        found = max(sorted(self.kept), key=lambda k: self.kept[k], default=None)
        return found if found is not None and self.kept[found] > self.int8 else None


@dataclass
class Triage:
    rows: list[LayerRow]  # by single SQNR, worst first
    images: int
    discordant: int
    int8_agreement: float  # % top-1 agreement with fp32 on the triage images
    recovery: Recovery | None = None
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    int8_kl: float = 0.0  # KL from fp32 of the int8 build's output on the triage images

    def helpful(self) -> list[LayerRow]:
        """The layers by what keeping them in fp32 gives back (the output's KL from fp32,
        lowest first; measured before unmeasured), then by single error."""
        return sorted(self.rows, key=lambda r: (r.kept_kl is None, r.kept_kl or 0.0,
                                                r.errors.single_sqnr))

    def message(self, shown: int = SHOWN) -> str:
        """What a failing test's message ends with."""
        lines = [f"layer triage ({self.images} images, {self.discordant} of them flipped by int8; "
                 f"{self.seconds:.0f}s): int8 agrees with fp32 on {self.int8_agreement:.1f}%, "
                 f"KL from fp32 {self.int8_kl:.4f}",
                 *table(self.helpful()[:shown], self.int8_agreement, self.int8_kl)]
        lines.extend(self.recovery_lines())
        lines.extend(f"skipped: {s}" for s in self.skipped)
        return "\n".join(lines)

    def recovery_lines(self) -> list[str]:
        r = self.recovery
        if r is None:
            return []
        head = (f"held-out: top-1 on {r.n} images not used for calibration or triage: fp32 "
                f"{r.fp32:.2f}, int8 {r.int8:.2f}"
                + (f" (KL from fp32 {r.int8_kl:.4f})" if r.int8_kl is not None else ""))
        if r.lost <= 0:
            return [head + ": nothing lost, no layer to keep"]
        curve = "; ".join(f"{k} kept {r.kept[k]:.2f} (KL {r.kl[k]:.4f})" for k in sorted(r.kept))
        lines = [head, f"held-out curve, each layer confirmed there: {curve or 'no layer confirmed'}"]
        lines += [f"not confirmed: {', '.join(r.rejected)}"] if r.rejected else []
        lines += [f"stopped: {r.stopped}"] if r.stopped else []
        k = r.k
        if k is not None:
            lines.append(f"keeping {k} in fp32 recovers {r.kept[k] - r.int8:.2f} of the {r.lost:.2f} lost")
        else:
            k = r.best
            lines.append(f"no K <= {max(r.kept, default=0)} recovers half of the {r.lost:.2f} lost"
                         + (f"; keeping {k} in fp32 recovers {r.kept[k] - r.int8:.2f}" if k else ""))
        if k is None:
            return lines
        keep = r.order[:k]
        return [*lines, f"kept: {', '.join(f'{x.module} ({x.kind} {x.index})' for x in keep)}",
                f"vamc: {vamc_line(keep)}",
                f"confirm in the gate: --int8-keep-fp32={keep_option(keep)}"]

    def to_json(self) -> str:
        return json.dumps({**{k: v for k, v in asdict(self).items() if k != "recovery"},
                           "recovery": None if self.recovery is None else
                           {**asdict(self.recovery), "k": self.recovery.k}}, indent=1,
                          allow_nan=False, default=str)


def table(rows: Sequence[LayerRow], int8_agreement: float, int8_kl: float) -> list[str]:
    """The layer table: errors, then what keeping the layer in fp32 gives back: top-1
    agreement with fp32 (points) and the share of the int8 build's KL from fp32 removed."""
    head = (f"{'layer':<34} {'op':<5} {'index':<9} {'single dB':>9} {'cos':>7} "
            f"{'accum dB':>9} {'cos':>7} {'kept fp32':>10} {'KL':>5}")
    lines = [head]
    for r in rows:
        e, kept = r.errors, r.kept_agreement
        recovered = "-" if kept is None else f"{kept - int8_agreement:+.1f}"
        removed = "-" if r.kept_kl is None or int8_kl <= 0 else f"{100 * (1 - r.kept_kl / int8_kl):+.0f}%"
        lines.append(f"{r.layer.module:<34} {r.layer.op:<5} {r.layer.kind + ' ' + str(r.layer.index):<9} "
                     f"{e.single_sqnr:>9.1f} {e.single_cos:>7.4f} {e.acc_sqnr:>9.1f} {e.acc_cos:>7.4f} "
                     f"{recovered:>10} {removed:>5}")
    return lines


def vamc_line(layers: Sequence[Layer]) -> str:
    """The vamc build config lines that keep `layers` in higher precision."""
    parts = []
    for kind in ("conv", "matmul"):
        indices = sorted(layer.index for layer in layers if layer.kind == kind)
        if indices:
            parts.append(f"skip_{kind}_layers: [{', '.join(map(str, indices))}]")
    return "; ".join(parts)


def keep_option(layers: Sequence[Layer]) -> str:
    """The --int8-keep-fp32 value for `layers`: conv0,conv17,matmul0."""
    return ",".join(f"{layer.kind}{layer.index}" for layer in
                    sorted(layers, key=lambda x: (x.kind, x.index)))


def keep_variant(value: str) -> str:
    """The precision variant of an --int8-keep-fp32 run: `conv17, conv0` -> keep-conv0-conv17."""
    conv, matmul = parse_keep(value)
    return "-".join(["keep", *(f"conv{i}" for i in sorted(set(conv))),
                     *(f"matmul{i}" for i in sorted(set(matmul)))])


# -- the whole triage ------------------------------------------------------------------------
@dataclass(frozen=True)
class Holdout:
    """Images used neither for calibration nor triage, for the top-K recovery: their batches
    (a fresh iterator per call), labels, and the fp32 and int8 runs' top-1 on them."""

    batches: Callable[[], Iterable[np.ndarray]]
    labels: np.ndarray
    fp32_top1: np.ndarray
    int8_top1: np.ndarray
    classes: Callable[[np.ndarray], np.ndarray] = lambda s: s  # graph scores -> 1000 classes


class Clock:
    """The time budget: a step runs only when the time it is expected to take is left."""

    def __init__(self, budget: float | None, start: float | None = None) -> None:
        self.start, self.budget = time.perf_counter() if start is None else start, budget

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, expected: float) -> bool:
        return self.budget is None or self.elapsed + expected <= self.budget


def triage(fp32: Any, qdq: Any, images: np.ndarray, discordant: int, *, holdout: Holdout | None = None,
           budget: float | None = DEFAULT_BUDGET, threads: int = 1, impact_layers: int = IMPACT_LAYERS,
           top_k: int = TOP_K, curve: bool = False, started: float | None = None) -> Triage:
    """Triage the QDQ graph `qdq` (onnx.ModelProto) against its `fp32` graph on `images`
    ((N, 3, H, W) float32; the first `discordant` of them flipped between fp32 and int8).
    `curve`: measure the holdout top-1 for every K up to `top_k`, not only up to the K found;
    `started`: the time.perf_counter() the budget counts from (default: now)."""
    clock = Clock(budget, started)
    fp32 = fp32_at_opset(fp32, qdq)
    layers = quantizable_layers(fp32)
    errors_started = time.perf_counter()
    errors, f_scores, q_scores = layer_errors(fp32, qdq, layers, images, threads)
    f_top1 = f_scores.argmax(axis=1)
    agreement = 100.0 * float((q_scores.argmax(axis=1) == f_top1).mean())
    rows = sorted((LayerRow(layer, errors[layer.node]) for layer in layers if layer.node in errors),
                  key=lambda r: r.errors.single_sqnr)
    result = Triage(rows, len(f_top1), discordant, agreement, int8_kl=kl_divergence(f_scores, q_scores))
    step = (time.perf_counter() - errors_started) / 2  # one network run on the triage images, about
    for i, row in enumerate(rows[:impact_layers]):
        if not clock.allows(step):
            result.skipped.append(f"keep-in-fp32 effect of {min(impact_layers, len(rows)) - i} "
                                  f"more layer(s): time budget of {budget:.0f} s")
            break
        t = time.perf_counter()
        kept = outputs(keep_fp32(qdq, fp32, [row.layer.node]), images, threads)
        row.kept_agreement = 100.0 * float((kept.argmax(axis=1) == f_top1).mean())
        row.kept_kl = kl_divergence(f_scores, kept)
        step = time.perf_counter() - t
    if holdout is not None:
        result.recovery = _recovery(result, fp32, qdq, images, f_scores, holdout, clock, threads,
                                    top_k, step, curve)
    result.seconds = clock.elapsed
    return result


def _held_out(model: Any, holdout: Holdout, threads: int) -> np.ndarray:
    """The graph's class scores on the held-out images."""
    from .backends.onnxruntime import run_session

    return run_session(session(model, threads), holdout.batches(), fixed_batch(model))


def _recovery(result: Triage, fp32: Any, qdq: Any, images: np.ndarray, f_scores: np.ndarray,
              holdout: Holdout, clock: Clock, threads: int, top_k: int, step: float,
              curve: bool = False) -> Recovery:
    """Grow the set of layers kept in fp32 one layer per step (see the module doc): the
    candidate that, kept with those already kept, gives the lowest KL from fp32 on the triage
    images (step 1: the best kept alone), added only when it lowers the held-out images' KL
    too; after each, the held-out top-1. Stops at `top_k`, when no candidate is confirmed,
    or (without `curve`) once half of the lost top-1 is back."""
    labels = np.asarray(holdout.labels)
    per_image = step / max(1, len(images))
    recovery = Recovery(len(labels), 100.0 * float((holdout.fp32_top1 == labels).mean()),
                        100.0 * float((holdout.int8_top1 == labels).mean()), None, {}, [])
    if recovery.lost <= 0:
        return recovery
    if not clock.allows(2 * per_image * len(labels)):
        result.skipped.append(f"top-K recovery: time budget of {clock.budget:.0f} s")
        return recovery
    reference = _held_out(fp32, holdout, threads)
    held_kl = recovery.int8_kl = kl_divergence(reference, _held_out(qdq, holdout, threads))
    candidates = [r.layer for r in result.helpful() if r.kept_kl is not None][:GREEDY_WIDTH]
    alone = {r.layer: r.kept_kl for r in result.rows if r.kept_kl is not None}
    while len(recovery.order) < min(top_k, len(candidates)):
        k = len(recovery.order) + 1
        if not curve and recovery.k is not None:
            break
        left = [c for c in candidates if c not in recovery.order]
        tries = min(CONFIRM_TRIES, len(left))
        expected = per_image * (len(images) * len(left) * (k > 1) + len(labels) * tries)
        if not clock.allows(expected):
            result.skipped.append(f"top-K recovery from K={k}: time budget of {clock.budget:.0f} s")
            break
        if k == 1:
            scores = {c: alone[c] for c in left}
        else:
            scores = {c: kl_divergence(f_scores, outputs(keep_fp32(qdq, fp32, [x.node for x in
                                                                         (*recovery.order, c)]),
                                                        images, threads)) for c in left}
        for pick in sorted(left, key=lambda c: scores[c])[:tries]:
            model = keep_fp32(qdq, fp32, [layer.node for layer in (*recovery.order, pick)])
            out = _held_out(model, holdout, threads)
            kl = kl_divergence(reference, out)
            if kl < held_kl:
                recovery.order.append(pick)
                recovery.together[k], recovery.kl[k], held_kl = scores[pick], kl, kl
                recovery.kept[k] = 100.0 * float((holdout.classes(out).argmax(axis=1) == labels).mean())
                break
            recovery.rejected.append(f"{pick.module} ({pick.kind} {pick.index}) at K={k}: KL "
                                     f"{kl:.4f}, not below {held_kl:.4f}")
        else:
            recovery.stopped = f"no candidate lowers the held-out KL at K={k}"
            break
    return recovery


def split_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows for triage (even) and for measuring the recovery (odd). Recovery is measured on
    a whole half, flipped images and all: measured on what triage left over, it would miss
    exactly the images int8 got wrong."""
    rows = np.arange(n)
    return rows[0::2], rows[1::2]


def pick_images(files: Sequence[str], run_top1: np.ndarray, fp32_top1: np.ndarray,
                most: int = TRIAGE_IMAGES) -> tuple[list[int], int]:
    """Rows of the triage images: the discordant ones first, then the others in order, at
    most `most` in all; and how many of them are discordant."""
    flipped = [i for i in range(len(files)) if run_top1[i] != fp32_top1[i]][:most]
    others = [i for i in range(len(files)) if run_top1[i] == fp32_top1[i]]
    return flipped + others[:most - len(flipped)], len(flipped)


def triage_case(entry: ModelEntry, precision: str, dataset: Dataset, options: RunOptions,
                run_predictions: Path, fp32_predictions: Path,
                budget: float | None = DEFAULT_BUDGET, curve: bool = False) -> Triage:
    """Triage the onnxruntime int8 build of `entry` that produced `run_predictions` (a saved
    run.evaluate .npz), against the fp32 run saved in `fp32_predictions`: triage images from
    one half of the run's counted images, the top-K recovery on the other (see split_rows)."""
    import onnx

    from .backends import class_scores, iter_batches
    from .backends.onnxruntime import OnnxRuntimeBackend
    from .run import _fp32_rows

    start = time.perf_counter()  # the budget covers reading images and graphs too
    backend = OnnxRuntimeBackend()
    with np.load(run_predictions) as run:
        files, labels, run_top1 = run["files"].tolist(), run["labels"], run["top5"][:, 0]
        paired = _fp32_rows(fp32_predictions, run)
    if paired is None or isinstance(paired, str):
        raise VaccbenchError(f"the fp32 predictions {fp32_predictions} are not of this run's images "
                             "and network")
    fp32_top1 = paired[0]
    half, held = split_rows(len(files))
    picked, discordant = pick_images([files[i] for i in half], run_top1[half], fp32_top1[half])
    by_name = {s.path.name: s for s in dataset.samples}
    chosen = [by_name[files[half[i]]] for i in picked]
    kept_out = [by_name[files[i]] for i in held]
    images = np.concatenate(list(iter_batches(chosen, entry.preprocess, 16, options.workers)))
    holdout = Holdout(lambda: iter_batches(kept_out, entry.preprocess, backend.batch_size(entry, options),
                                           options.workers, cache_dir=options.image_cache_dir),
                      labels[held], fp32_top1[held], run_top1[held],
                      lambda scores: class_scores(scores, entry)) if len(held) else None
    fp32 = onnx.load(str(backend.fp32_graph(entry, options)))
    qdq = onnx.load(str(backend.graph(entry, precision, dataset, options)))
    return triage(fp32, qdq, images, discordant, holdout=holdout, budget=budget, threads=options.threads,
                  curve=curve, started=start)


def cpu_command(entry: ModelEntry, precision: str, dataset: str, flags: dict[str, Any]) -> str:
    """What a failing vamp int8 test says: the `vaccbench triage` command that ranks the layers
    of the onnxruntime emulation with the same calibration mode (`flags`: its options, None
    for those not set)."""
    import shlex

    from .backends.onnxruntime import CALIBRATION_METHODS

    if precision not in CALIBRATION_METHODS:
        return (f"layer triage: the accelerator's layer outputs are not available, and {precision} "
                f"has no CPU emulation (onnxruntime emulates {', '.join(CALIBRATION_METHODS)})")
    args = ["vaccbench", "triage", f"{entry.family}/{entry.key}", dataset, f"--precision={precision}",
            *(f"{flag}={value}" for flag, value in flags.items() if value is not None)]
    return ("layer triage: the accelerator's layer outputs are not available; rank the layers of "
            f"the CPU emulation of {precision} with:\n  {shlex.join(args)}")
