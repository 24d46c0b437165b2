#!/usr/bin/env python3
"""TEST DOUBLE of the VastAI `vamp` runner: its command line and file contract, nothing more.

This is not the vendor's binary and does not model the accelerator's numerics. It accepts
vamp's accuracy-run flags (-m, --vdsp_params, -i, -p, -b, -s, -d, --iterations, --datalist,
--path_output, --hwconfig), reads the npz inputs named in the datalist (uint8 CHW RGB,
key `input_0`), preprocesses each one as the vdsp_params JSON says (the project's CPU
emulation, pytest_vaccbench.vdsp), runs `<model prefix>.onnx` with ONNX Runtime, applies the
softmax the compiler appends to classification graphs, and writes `output_000000.npz`, ...
with `output_0` of shape (1, classes), in datalist order.

To rehearse a nightly gate's failures, set VAMP_STUB_FAIL to one of
  crash  exit 3 after printing an error on stderr
  hang   start a child process, then sleep forever (the caller must kill the group)
  detach like hang, but the child starts its own session (setsid): it leaves the group
  few    write one output fewer than there are inputs
  many   write one output more than there are inputs
  shape  write output_0 of shape (3, classes)
  nan    write NaNs into the first output
  badzip write bytes that are not an npz into the first output
  empty  leave the first output empty (0 bytes)
VAMP_STUB_LOSS=<p> swaps the top-1 and top-2 scores of an image with probability p (the image
is chosen by a hash of its pixels, so the same images whatever the order): an accuracy loss of
the device alone, which no CPU emulation shows;
VAMP_STUB_LOG=<file> appends one JSON line per run (argv, device, xdist worker, pid, parent
pid, model name);
VAMP_STUB_SLEEP='{"<model name>": seconds, ...}' makes runs of those models take longer;
VAMP_STUB_CHILD=<file> receives the pid of the `hang`/`detach` modes' child.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's pytest_vaccbench

FAIL_MODES = ("crash", "hang", "detach", "few", "many", "shape", "nan", "badzip", "empty")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vamp", description="test double of the vamp runner")
    parser.add_argument("-m", "--model_prefix", required=True)
    parser.add_argument("--vdsp_params", required=True)
    parser.add_argument("-i", "--instance", type=int, default=1)
    parser.add_argument("-p", "--processes", type=int, default=1)
    parser.add_argument("-b", "--batch_size", type=int, default=1)
    parser.add_argument("-s", "--shape", default=None)
    parser.add_argument("-d", "--device_ids", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--datalist", default=None)
    parser.add_argument("--path_output", default=None)
    parser.add_argument("--hwconfig", default=None)
    return parser.parse_args(argv)


def fail(message: str, code: int = 1) -> None:
    print(f"[vamp] error: {message}", file=sys.stderr)
    sys.exit(code)


def hang(new_session: bool = False) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                             start_new_session=new_session)
    if os.environ.get("VAMP_STUB_CHILD"):
        Path(os.environ["VAMP_STUB_CHILD"]).write_text(str(child.pid))
    print("[vamp] waiting for the device ...", file=sys.stderr, flush=True)
    while True:
        time.sleep(1)


def lost(pixels: bytes, fraction: float) -> bool:
    """Whether VAMP_STUB_LOSS picks this image: by a hash of its pixels."""
    import hashlib

    digest = hashlib.sha1(pixels).digest()
    return int.from_bytes(digest[:4], "big") / 2 ** 32 < fraction


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    mode = os.environ.get("VAMP_STUB_FAIL", "")
    if mode and mode not in FAIL_MODES:
        fail(f"VAMP_STUB_FAIL={mode!r} is not one of {FAIL_MODES}", 2)
    if os.environ.get("VAMP_STUB_LOG"):
        with open(os.environ["VAMP_STUB_LOG"], "a") as log:
            log.write(json.dumps({"argv": argv, "device": args.device_ids, "pid": os.getpid(),
                                  "parent": os.getppid(), "model": Path(args.model_prefix).name,
                                  "worker": os.environ.get("PYTEST_XDIST_WORKER")}) + "\n")
    model = Path(args.model_prefix + ".onnx")
    if not model.is_file():
        fail(f"cannot load model {args.model_prefix}: {model} does not exist")
    if not args.datalist or not args.path_output:
        fail("this test double only does accuracy runs: give --datalist and --path_output")
    if mode == "crash":
        print("[vamp] device 0: loading model ... done", file=sys.stderr)
        fail("VACC runtime: stream 1 exceeded its memory pool (code 0x2f)", 3)
    if mode in ("hang", "detach"):
        hang(new_session=mode == "detach")
    time.sleep(json.loads(os.environ.get("VAMP_STUB_SLEEP") or "{}").get(model.stem, 0))

    import numpy as np
    import onnxruntime as ort

    from pytest_vaccbench.preprocess import normalize, resize_crop
    from pytest_vaccbench.vdsp import load_vdsp

    spec = load_vdsp(args.vdsp_params)
    inputs = [line.strip() for line in Path(args.datalist).read_text().splitlines() if line.strip()]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out_dir = Path(args.path_output)
    out_dir.mkdir(parents=True, exist_ok=True)
    loss = float(os.environ.get("VAMP_STUB_LOSS") or 0)
    count = len(inputs) - 1 if mode == "few" else len(inputs)
    start = time.perf_counter()
    for i, path in enumerate(inputs[:count]):
        with np.load(path) as data:
            chw = data["input_0"]
        x = normalize(resize_crop(np.ascontiguousarray(chw.transpose(1, 2, 0)), spec)[None], spec)
        logits = session.run(None, {name: x})[0].astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
        if loss and lost(chw.tobytes(), loss):
            first, second = np.argsort(probs[0])[::-1][:2]
            probs[0, [first, second]] = probs[0, [second, first]]
        if mode == "shape":
            probs = np.repeat(probs, 3, axis=0)
        if mode == "nan" and i == 0:
            probs[0, :10] = np.nan
        np.savez(out_dir / f"output_{i:06d}.npz", output_0=probs)
    if mode == "many":
        np.savez(out_dir / f"output_{count:06d}.npz", output_0=probs)
    if mode in ("badzip", "empty"):
        (out_dir / "output_000000.npz").write_bytes(b"PK\x03\x04 not a zip" if mode == "badzip" else b"")
    seconds = time.perf_counter() - start
    print(f"[vamp test double] {count} outputs for {len(inputs)} inputs in {seconds:.2f} s "
          f"(device {args.device_ids})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
