"""Projects some docs pages run their commands in, beyond the copy of this one.

docs/score.md: the copy of this project, with `device/` holding stand-ins for what accelerator
hosts write (result_files.device_results: result.txt files of the 50,000 val images, vamp
outputs of the shared subset's 650).

docs/nightly.md, docs/vsx.md: stand-in compiled models for the vamp and VastStreamX test
doubles (`models/`: `stub-colours` in fp16 and int8, `stub-late` in int8 whose build is
broken: it answers with the wrong classes), the colours dataset, `vamp` on PATH (`bin/`),
and the VastStreamX double importable by the pytest of `bin/`; the baseline expects the same
figures from vamp and vsx.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
from test_nightly_vamp import BASELINE
from test_vamp import CENTROIDS, Project  # imports cv2, onnx and onnxruntime, or skips

import result_files
import vamp_standin

VSX_DOUBLE = Path(__file__).resolve().parent / "vsx_double"


def nightly(pytester: pytest.Pytester) -> Path:
    project = Project(pytester)
    (project.root / "suites" / "vamp.yaml").rename(project.root / "suites" / "nightly.yaml")
    colours_fp16 = "        vamp/fp16: {top1: 75.0, top5: 87.5}\n"
    vsx = colours_fp16.replace("vamp/fp16", "vsx/int8-percentile") + colours_fp16.replace("vamp/", "vsx/")
    (project.root / "baselines" / "stub.yaml").write_text(  # vsx lines after the vamp ones
        BASELINE.replace(colours_fp16, colours_fp16 + vsx, 1) + vsx.splitlines(keepends=True)[0])
    shuffled = dict(zip(CENTROIDS, list(CENTROIDS.values())[1:] + list(CENTROIDS.values())[:1]))
    collapsed = vamp_standin.colour_model(project.root / "export" / "collapsed.onnx", shuffled)
    vamp_standin.install(project.models, "stub-late", collapsed, project.root / "colours.json",
                         ["int8-percentile"], 32)
    bin_dir = project.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "vamp").write_text(f"#!/bin/sh\nexec {vamp_standin.stub_command()} \"$@\"\n")
    (bin_dir / "vamp").chmod(0o755)
    (bin_dir / "pytest").write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(VSX_DOUBLE))}:$PYTHONPATH "
                                    f"exec {shlex.quote(sys.executable)} -m pytest "
                                    "-p no:cacheprovider --vaccbench-cache=.cache \"$@\"\n")
    (bin_dir / "pytest").chmod(0o755)
    return project.root


def score(pytester: pytest.Pytester) -> Path:
    from conftest import shared_data_dir
    from test_docs import _workdir  # the copy every other page runs in

    work = _workdir(pytester.path, shared_data_dir())
    subset = shared_data_dir() / "ilsvrc2012-val-subset"
    result_files.device_results(work / "device", subset / "ILSVRC2012_val_labels_all50000.txt",
                                subset / "val_label.txt")
    return work


PROJECTS = {"nightly.md": nightly, "vsx.md": nightly, "score.md": score}
