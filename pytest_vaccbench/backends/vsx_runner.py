"""The model zoo's VastStreamX classification script, as the process the vsx backend starts.

    <python> vsx_runner.py JOB.json

It makes the zoo script's calls, in its order: `vsx.set_device(device)`;
`vsx.Model(prefix, batch)`; `vsx.Operator.load_ops_from_json_file(vdsp)[0]`;
`vsx.ModelOperator`, `vsx.Graph().add_operators(fusion_op, model_op)`;
`vsx.Stream(graph, StreamBalanceMode.ONCE)`, `register_operator_output(model_op)`, `build()`;
then per batch of images: OpenCV decode, an odd height or width resized to even, RGB planar
uint8, `vsx.create_image(arr, RGB_PLANAR, W, H, device)`, and `run_sync(images)` or
`run_async(images)` with a consumer thread on `get_operator_output(model_op)`; the scores
are `vsx.as_numpy(outputs[i][0])`, the first output of each image; at the end
`close_input()` and `wait_until_done()`. With `crop_resize_ext` each call also passes the
vendor's per-image short-side resize, `{"crop_resize_ext": [(x, y, w, h), ...]}`.

Asynchronous outputs carry no input id in the SDK (the zoo's script pairs them by arrival,
assuming input order). Here each call gets an id and only one call is in flight: every
output that arrives belongs to that call, whatever order the stream keeps. The host
prepares the next batch while the device runs the current one.

It talks to the backend on stdout, one `@vaccbench {json}` line per event, flushed:
`{"step": what it starts}` before every call that may block (the backend's watchdog names
it when the stream stops answering), `{"done": n}` after each call, `{"error": message}`
and exit code 1 on a failure. Anything else on stdout (the SDK's own logs) is left to the
backend's log. It imports only numpy, OpenCV and this package's preprocess and vdsp
modules, so any interpreter with the SDK and those can run it (--vsx-python).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

MARK = "@vaccbench "
PREFETCH = 2  # batches decoded ahead of the device
POLL = 0.001  # seconds between get_operator_output polls that found nothing


class Failure(Exception):
    """What went wrong, said for the user (the backend adds the model, device and files)."""


class Reporter:
    """The event lines on stdout; `step` is also kept for the message of a failure."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.current = "starting"

    def send(self, **event: Any) -> None:
        self.out.write(MARK + json.dumps(event) + "\n")
        self.out.flush()

    def step(self, what: str) -> None:
        self.current = what
        self.send(step=what)


def sdk_call(reporter: Reporter, what: str, fn: Callable[[], Any], problem: str) -> Any:
    """Run one SDK call announced as `what`; any exception it raises becomes a Failure."""
    reporter.step(what)
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the SDK's native errors have no common type
        raise Failure(f"{problem}: {what} raised {type(exc).__name__}: {exc}") from None


def host_image(path: str) -> np.ndarray:
    """What the zoo's script hands `create_image`: OpenCV decode (BGR -> RGB), an odd height
    or width first resized to even, then planar: uint8 (3, H, W)."""
    from pytest_vaccbench.errors import ImageDecodeError
    from pytest_vaccbench.preprocess import decode_cv2_rgb, even_size

    try:
        rgb = even_size(decode_cv2_rgb(path))
    except ImageDecodeError as exc:
        raise Failure(str(exc)) from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def prepared(paths: Sequence[str], batch: int, workers: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(start index, planar images) per batch, decoded on `workers` threads ahead of use."""
    starts = list(range(0, len(paths), batch))
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vsx-host") as pool:
        ahead = [pool.map(host_image, paths[s:s + batch]) for s in starts[:PREFETCH]]
        for i, start in enumerate(starts):
            images = list(ahead[i])
            if i + PREFETCH < len(starts):
                s = starts[i + PREFETCH]
                ahead.append(pool.map(host_image, paths[s:s + batch]))
            yield start, images


def first_scores(outputs: Any, names: Sequence[str], as_numpy: Callable[[Any], Any]) -> np.ndarray:
    """The first output tensor of each image of one call -> float32 (images, classes)."""
    if outputs is None or len(outputs) != len(names):
        got = "nothing" if outputs is None else f"{len(outputs)} outputs"
        raise Failure(f"the stream answered {got} for a call of {len(names)} images ({names[0]} ...)")
    rows = []
    for name, output in zip(names, outputs):
        if not output:
            raise Failure(f"the stream gave no output tensor for {name}")
        array = np.asarray(as_numpy(output[0]), dtype=np.float32)
        shape = array.shape
        if array.ndim == 2 and shape[0] == 1:
            array = array[0]
        if array.ndim != 1 or (rows and array.shape != rows[0].shape):
            want = f"(1, {rows[0].size}) like the images before it" if rows else "(1, classes) or (classes,)"
            raise Failure(f"the first output of {name} has shape {shape}, expected {want}")
        rows.append(array)
    scores = np.stack(rows)
    bad = [name for name, row in zip(names, scores) if not np.isfinite(row).all()]
    if bad:
        raise Failure(f"the first output holds NaN or infinite scores for {len(bad)} of {len(names)} "
                      f"images of this call: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    return scores


class Consumer(threading.Thread):
    """The zoo script's consumer thread: polls `get_operator_output(model_op)` (None while
    nothing is ready) until the stream is closed (ValueError); hands each answer over."""

    CLOSED = object()

    def __init__(self, stream: Any, model_op: Any) -> None:
        super().__init__(name="vsx-consumer", daemon=True)
        self.stream, self.model_op = stream, model_op
        self.answers: queue.Queue[Any] = queue.Queue()

    def run(self) -> None:
        while True:
            try:
                answer = self.stream.get_operator_output(self.model_op)
            except ValueError as exc:
                self.answers.put((self.CLOSED, exc))
                return
            except Exception as exc:  # noqa: BLE001 - handed to the main thread as a failure
                self.answers.put((None, exc))
                return
            if answer is None:
                time.sleep(POLL)
            else:
                self.answers.put((answer, None))


def run(job: dict[str, Any], reporter: Reporter) -> np.ndarray:
    """The whole script for one model: (images, classes) float32 scores in job order."""
    from pytest_vaccbench.vdsp import crop_resize_ext

    reporter.step("import vaststreamx")
    try:
        import vaststreamx as vsx
    except Exception as exc:  # noqa: BLE001 - an SDK whose native part fails to load
        raise Failure(f"import vaststreamx failed: {type(exc).__name__}: {exc}") from None
    device, batch, size = int(job["device"]), int(job["batch"]), int(job["size"])
    code = sdk_call(reporter, f"vsx.set_device({device})", lambda: vsx.set_device(device),
                    f"device {device} cannot be used")
    if code != 0:
        raise Failure(f"vsx.set_device({device}) returned {code}, not 0: device {device} cannot be "
                      "used (is it present and healthy? another --devices id?)")
    model = sdk_call(reporter, f"vsx.Model({job['prefix']!r}, {batch})",
                     lambda: vsx.Model(job["prefix"], batch), "the compiled model does not load")
    shape = [int(d) for d in model.input_shape[0]]
    if len(shape) != 4 or shape[1] != 3 or shape[2:] != [size, size]:
        raise Failure(f"the compiled model's input is {shape}, but the vdsp_params JSON makes "
                      f"[n, 3, {size}, {size}] inputs")
    ops = sdk_call(reporter, "vsx.Operator.load_ops_from_json_file",
                   lambda: vsx.Operator.load_ops_from_json_file(job["vdsp"]),
                   "the vdsp_params JSON does not load as a fused op")
    if not ops:
        raise Failure("vsx.Operator.load_ops_from_json_file returned no operator for the vdsp_params JSON")

    def build() -> tuple[Any, Any]:
        model_op = vsx.ModelOperator(model)
        graph = vsx.Graph()
        graph.add_operators(ops[0], model_op)
        stream = vsx.Stream(graph, vsx.StreamBalanceMode.ONCE)
        stream.register_operator_output(model_op)
        stream.build()
        return stream, model_op

    stream, model_op = sdk_call(reporter, "building the stream (graph: fused op + model op)", build,
                                "the stream cannot be built")
    asynchronous = job["mode"] == "async"
    consumer = Consumer(stream, model_op) if asynchronous else None
    if consumer:
        consumer.start()
    paths = [str(p) for p in job["images"]]
    scores = []
    for call, (start, images) in enumerate(prepared(paths, batch, int(job.get("workers", 1)))):
        names = [Path(p).name for p in paths[start:start + len(images)]]
        where = f"images {start + 1}-{start + len(images)} ({names[0]}{' ...' if len(names) > 1 else ''})"
        reporter.step(f"vsx.create_image of {where}")
        handles = [device_image(vsx, a, name, device) for name, a in zip(names, images)]
        args: list[Any] = [handles]
        if job.get("crop_resize_ext"):
            args.append({"crop_resize_ext": [crop_resize_ext(a.shape[2], a.shape[1], int(job["resize"]), size)
                                             for a in images]})
        if consumer is None:
            outputs = sdk_call(reporter, f"stream.run_sync of {where}", lambda: stream.run_sync(*args),
                               "the stream failed")
        else:
            sdk_call(reporter, f"stream.run_async of {where} (call {call})",
                     lambda: stream.run_async(*args), "the stream failed")
            reporter.step(f"waiting for the stream's outputs of {where} (call {call})")
            outputs = collect(consumer, call, len(images))
        scores.append(first_scores(outputs, names, vsx.as_numpy))
        reporter.send(done=len(images))
    sdk_call(reporter, "stream.close_input", stream.close_input, "the stream failed at its end")
    sdk_call(reporter, "stream.wait_until_done", stream.wait_until_done, "the stream failed at its end")
    if consumer:
        consumer.join(timeout=10)
    return np.concatenate(scores) if scores else np.zeros((0, 0), np.float32)


def device_image(vsx: Any, planar: np.ndarray, name: str, device: int) -> Any:
    """`vsx.create_image(arr, RGB_PLANAR, W, H, device)` of one host image."""
    height, width = planar.shape[1:]
    try:
        return vsx.create_image(planar, vsx.ImageFormat.RGB_PLANAR, width, height, device)
    except Exception as exc:  # noqa: BLE001 - the SDK's native errors have no common type
        raise Failure(f"{name} ({width}x{height}) cannot be handed to device {device}: "
                      f"vsx.create_image raised {type(exc).__name__}: {exc}") from None


def collect(consumer: Consumer, call: int, count: int) -> list[Any]:
    """The outputs of call `call` (the only one in flight): answers are gathered until the
    call's `count` images are answered; more is an error, as is a stream that closes."""
    outputs: list[Any] = []
    while len(outputs) < count:
        answer, error = consumer.answers.get()
        if answer is Consumer.CLOSED:
            raise Failure(f"the stream closed (ValueError: {error}) with {count - len(outputs)} "
                          f"image(s) of call {call} unanswered")
        if error is not None:
            raise Failure(f"stream.get_operator_output raised {type(error).__name__}: {error}")
        outputs.extend(answer)
    if len(outputs) != count:
        raise Failure(f"the stream answered {len(outputs)} outputs for call {call} of {count} images")
    return outputs


def main(argv: Sequence[str]) -> int:
    reporter = Reporter()
    try:
        job = json.loads(Path(argv[0]).read_text())
        scores = run(job, reporter)
        np.save(job["output"], scores)
    except Failure as exc:
        reporter.send(error=str(exc), step=reporter.current)
        return 1
    except Exception as exc:  # noqa: BLE001 - reported as one line; the traceback goes to the log
        traceback.print_exc()
        reporter.send(error=f"{type(exc).__name__}: {exc}", step=reporter.current)
        return 1
    reporter.send(finished=True)
    return 0


if __name__ == "__main__":
    # Run by path, this file's folder comes first on sys.path, where backends/onnxruntime.py
    # would hide the onnxruntime package from the SDK: the package's root takes its place.
    sys.path[0] = str(Path(__file__).resolve().parents[2])
    sys.exit(main(sys.argv[1:]))
