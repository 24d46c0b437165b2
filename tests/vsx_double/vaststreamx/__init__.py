"""TEST DOUBLE of VastStreamX's Python module (`import vaststreamx as vsx`): the calls the model
zoo's classification script makes, nothing more. Never installed with the package: tests put
`tests/vsx_double` on PYTHONPATH for the processes the vsx backend starts.

This is not the vendor's SDK and does not model the accelerator's numerics. `Model(prefix, n)`
loads `<prefix>.onnx` (a stand-in "compiled model") into ONNX Runtime; the fused op of
`Operator.load_ops_from_json_file` is the project's own CPU emulation of the vdsp_params JSON
(pytest_vaccbench.vdsp + preprocess); a stream runs, per image, that op on the RGB planar
image given to `create_image` (or the per-image `crop_resize_ext` of a call), then the
graph, then the softmax the compiler appends, and answers one output tensor (1, classes) per
image. `create_image` refuses odd widths and heights, so a host that forgets the zoo
script's odd-to-even resize fails here.

Asynchronous calls are answered at submission and queued; `get_operator_output` returns the
oldest pending call's outputs (None when none is pending, ValueError once the input is
closed and everything was answered).

Environment, read when the stream is built:
  VSX_DOUBLE_FAIL   one failure to inject:
                    set_device  set_device returns 3 (not 0)
                    load        Model raises RuntimeError (the model does not load)
                    ops         load_ops_from_json_file raises RuntimeError
                    stream      the VSX_DOUBLE_AT-th run_sync/run_async raises ValueError
                    closed      get_operator_output raises ValueError (stream closed) before
                                the VSX_DOUBLE_AT-th async call is answered
                    nan         that call's first image gets NaN scores
                    shape       that call's outputs have shape (2, classes)
                    hang        that call never returns (sync) / is never answered (async)
                    crash       that call aborts the process (SIGABRT), as a native crash does
  VSX_DOUBLE_AT     the call (0-based) at which it strikes (default 0)
  VSX_DOUBLE_ORDER  `reverse`: with several async calls pending, the newest is answered first
  VSX_DOUBLE_LOSS   a fraction p: an image (chosen by a hash of its pixels, so the same images
                    whatever the batching) has its top-1 and top-2 scores swapped with
                    probability p: an accuracy loss of the device alone
  VSX_DOUBLE_LOG    a file that gets one JSON line per SDK call (call, device, sizes, pending)
  VSX_DOUBLE_STATS  a file that gets {"device_seconds": ..., "load_seconds": ..., "images": ...}
                    at wait_until_done: the time spent in the emulated device (fused op + ONNX
                    Runtime) and in loading the model (an ONNX Runtime session)
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__version__ = "0.0.0+vaccbench.testdouble"
_ROOT = Path(__file__).resolve().parents[3]  # the project: its vdsp emulation is the fused op
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

FAIL_MODES = ("set_device", "load", "ops", "stream", "closed", "nan", "shape", "hang", "crash")


class ImageFormat(enum.Enum):
    YUV_NV12 = 0
    RGB_PLANAR = 5000
    BGR_PLANAR = 5001
    RGB_INTERLEAVE = 5002
    BGR_INTERLEAVE = 5003
    GRAY = 5004


class StreamBalanceMode(enum.Enum):
    ONCE = 0
    RUN = 1


class TypeFlag(enum.Enum):
    FLOAT16 = 0
    FLOAT32 = 1
    UINT8 = 2


def _fail_mode() -> str:
    mode = os.environ.get("VSX_DOUBLE_FAIL", "")
    if mode and mode not in FAIL_MODES:
        raise RuntimeError(f"VSX_DOUBLE_FAIL={mode!r} is not one of {FAIL_MODES}")
    return mode


def _log(**record: Any) -> None:
    path = os.environ.get("VSX_DOUBLE_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({**record, "pid": os.getpid(),
                                     "worker": os.environ.get("PYTEST_XDIST_WORKER")}) + "\n")


def set_device(device_id: int) -> int:
    _log(call="set_device", device=device_id)
    return 3 if _fail_mode() == "set_device" else 0


class Image:
    def __init__(self, array: np.ndarray, width: int, height: int) -> None:
        self.array, self.width, self.height = array, width, height
        self.format = ImageFormat.RGB_PLANAR


def create_image(array: np.ndarray, image_format: ImageFormat, width: int, height: int,
                 device_id: int) -> Image:
    if image_format != ImageFormat.RGB_PLANAR:
        raise ValueError(f"this test double takes RGB_PLANAR images only, not {image_format}")
    if array.dtype != np.uint8 or array.shape != (3, height, width):
        raise ValueError(f"create_image: expected uint8 (3, {height}, {width}), got {array.dtype} {array.shape}")
    if width % 2 or height % 2:
        raise ValueError(f"create_image: RGB_PLANAR needs an even width and height, got {width}x{height}")
    return Image(array, width, height)


class Tensor:
    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def as_numpy(value: Any) -> np.ndarray:
    return value.array


class Model:
    def __init__(self, model_prefix: str, batch_size: int = 1, hw_config: str = "") -> None:
        _log(call="Model", prefix=model_prefix, batch=batch_size)
        if _fail_mode() == "load":
            raise RuntimeError(f"load model failed: {model_prefix} (injected by VSX_DOUBLE_FAIL=load)")
        path = Path(model_prefix + ".onnx")
        if not path.is_file():
            raise RuntimeError(f"load model failed: no {path.name} beside the prefix {model_prefix}")
        start = time.perf_counter()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        _, _, height, width = self.input.shape
        self.batch_size = batch_size
        self.input_shape = [[batch_size, 3, height, width]]
        self.load_seconds = time.perf_counter() - start

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits for a float32 (n, 3, h, w) batch (one image at a time for a fixed-batch graph)."""
        if isinstance(self.input.shape[0], int):
            return np.concatenate([self.session.run(None, {self.input.name: x[i:i + 1]})[0]
                                   for i in range(len(x))])
        return self.session.run(None, {self.input.name: x})[0]


class FusionOp:
    """The vdsp_params JSON's fused op, emulated on the CPU by the project's own code."""

    op_type = 100

    def __init__(self, path: str) -> None:
        from pytest_vaccbench.vdsp import load_vdsp

        self.path = path
        self.spec = load_vdsp(path)

    def run(self, image: Image, ext: Sequence[int] | None) -> np.ndarray:
        from pytest_vaccbench.preprocess import normalize, resize_crop

        hwc = np.ascontiguousarray(image.array.transpose(1, 2, 0))
        if ext is None:
            crop = resize_crop(hwc, self.spec)
        else:
            x, y, width, height = (int(v) for v in ext)
            size = self.spec.output_size
            crop = _resize(hwc, width, height, self.spec.library)[y:y + size, x:x + size]
            if crop.shape[:2] != (size, size):
                raise ValueError(f"crop_resize_ext {tuple(ext)} leaves no {size}x{size} crop")
        return normalize(crop[None], self.spec)


def _resize(hwc: np.ndarray, width: int, height: int, library: str) -> np.ndarray:
    if library == "pil":
        from PIL import Image as PILImage

        return np.asarray(PILImage.fromarray(hwc).resize((width, height), PILImage.BILINEAR))
    import cv2

    return cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR)


class Operator:
    @staticmethod
    def load_ops_from_json_file(path: str) -> list[FusionOp]:
        _log(call="load_ops_from_json_file", path=path)
        if _fail_mode() == "ops":
            raise RuntimeError(f"parse vdsp op config failed: {path} (injected by VSX_DOUBLE_FAIL=ops)")
        return [FusionOp(path)]


class ModelOperator:
    def __init__(self, model: Model) -> None:
        self.model = model


class Graph:
    def __init__(self) -> None:
        self.operators: list[Any] = []

    def add_operators(self, *operators: Any) -> int:
        self.operators.extend(operators)
        return 0


def _lost(image: Image, fraction: float) -> bool:
    """Whether VSX_DOUBLE_LOSS picks this image: by its pixels, not its place in a batch."""
    digest = hashlib.sha1(image.array.tobytes()).digest()
    return int.from_bytes(digest[:4], "big") / 2 ** 32 < fraction


class Stream:
    def __init__(self, graph: Graph, mode: StreamBalanceMode) -> None:
        fusion = [op for op in graph.operators if isinstance(op, FusionOp)]
        models = [op for op in graph.operators if isinstance(op, ModelOperator)]
        if len(fusion) != 1 or len(models) != 1:
            raise ValueError("this test double runs graphs of one fused op and one model op")
        self.fusion, self.model = fusion[0], models[0].model
        self.registered: list[Any] = []
        self.built = self.closed = False
        self.calls = 0
        self.pending: list[list[list[Tensor]] | None] = []  # None: a call that is never answered
        self.device_seconds = 0.0
        self.images = 0
        self.lock = threading.Lock()  # the consumer thread polls while calls are submitted

    def register_operator_output(self, *args: Any) -> int:
        self.registered.append(args)
        return 0

    def build(self) -> int:
        if not self.registered:
            raise ValueError("build: no operator output registered")
        self.fail = _fail_mode()
        self.fail_at = int(os.environ.get("VSX_DOUBLE_AT", "0"))
        self.order = os.environ.get("VSX_DOUBLE_ORDER", "")
        self.loss = float(os.environ.get("VSX_DOUBLE_LOSS", "0") or 0)
        self.built = True
        return 0

    def _answer(self, images: Sequence[Image], params: dict[str, Any] | None, call: str) -> list[list[Tensor]] | None:
        if not self.built or self.closed:
            raise ValueError(f"{call}: the stream is {'closed' if self.closed else 'not built'}")
        index = self.calls
        self.calls += 1
        _log(call=call, index=index, sizes=[[i.width, i.height] for i in images], params=params,
             pending=len(self.pending))
        strike = self.fail if index == self.fail_at else ""
        if strike == "stream":
            raise ValueError(f"{call}: the device stream failed (injected by VSX_DOUBLE_FAIL=stream)")
        if strike == "crash":
            os.abort()
        if strike == "hang":
            if call == "run_async":
                return None
            while True:
                time.sleep(1)
        ext = (params or {}).get("crop_resize_ext")
        if ext is not None and len(ext) != len(images):
            raise ValueError(f"{call}: crop_resize_ext has {len(ext)} entries for {len(images)} images")
        start = time.perf_counter()
        x = np.concatenate([self.fusion.run(image, ext[i] if ext else None) for i, image in enumerate(images)])
        logits = self.model.infer(x).astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
        self.device_seconds += time.perf_counter() - start
        self.images += len(images)
        for row, image in zip(probs, images):
            if self.loss and _lost(image, self.loss):
                first, second = np.argsort(row)[::-1][:2]
                row[[first, second]] = row[[second, first]]
        if strike == "nan":
            probs[0, :10] = np.nan
        outputs = [np.repeat(p[None], 2, axis=0) if strike == "shape" else p[None] for p in probs]
        return [[Tensor(o)] for o in outputs]

    def run_sync(self, images: Sequence[Image], params: dict[str, Any] | None = None) -> list[list[Tensor]]:
        answer = self._answer(images, params, "run_sync")
        assert answer is not None
        return answer

    def run_async(self, images: Sequence[Image], params: dict[str, Any] | None = None) -> int:
        answer = self._answer(images, params, "run_async")
        with self.lock:
            self.pending.append(answer)
        return 0

    def get_operator_output(self, operator: Any) -> list[list[Tensor]] | None:
        if self.fail == "closed" and self.calls > self.fail_at:
            raise ValueError("get_operator_output: the stream is closed (injected by VSX_DOUBLE_FAIL=closed)")
        with self.lock:
            ready = [i for i, answer in enumerate(self.pending) if answer is not None]
            if not ready:
                if self.closed and not self.pending:
                    raise ValueError("get_operator_output: the stream is closed")
                return None
            return self.pending.pop(ready[-1] if self.order == "reverse" else ready[0])

    def close_input(self) -> int:
        self.closed = True
        return 0

    def wait_until_done(self) -> int:
        stats = os.environ.get("VSX_DOUBLE_STATS")
        if stats:
            with open(stats, "a") as handle:
                handle.write(json.dumps({"device_seconds": self.device_seconds, "images": self.images,
                                         "load_seconds": self.model.load_seconds}) + "\n")
        return 0
