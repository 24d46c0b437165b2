"""The reference backend: the model's own PyTorch code (timm/torchvision), local weights.

It runs a model in the precision its weights are stored in and no other: fp32 for float
weights, int8 for an already-quantized model (`precision: int8` in its baseline, e.g.
torchvision's quantized TorchScript). Emulating int8 for a float model is the onnxruntime
backend's job, with a calibration mode.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from ..baselines import ModelEntry
from ..dataset import Dataset, Sample
from ..errors import BackendError
from ..weights import find_weights
from . import Backend, RunOptions, class_scores, iter_batches


class ReferenceBackend(Backend):
    name = "reference"
    precisions = ("fp32", "int8")
    packages = ("torch", "timm", "torchvision")
    # oneDNN on CPUs: 8 images ran 1.6x faster than 32 (activations stay in cache;
    # benchmarks/tuning.py, README Speed)
    default_batch_size = 8

    def skip_reason(self, entry: ModelEntry, precision: str, options: RunOptions) -> str | None:
        if precision != entry.precision:
            if entry.precision == "fp32":
                return (f"{entry.test_name} has float weights: the reference backend runs it as "
                        f"reference/fp32 only (reference/{precision} is for models stored "
                        "quantized, `precision: int8` in their baseline); to emulate int8 use "
                        "--backend=onnxruntime --precision=int8-<calibration>")
            return (f"{entry.test_name} is an {entry.precision} model (`precision: "
                    f"{entry.precision}` at {entry.where}): the reference backend runs it as "
                    f"reference/{entry.precision} only, not reference/{precision}")
        lookup = find_weights(entry, options.weights_dir)
        return None if lookup.path else lookup.skip_reason(entry)

    def scores(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> np.ndarray:
        return self.scorer(entry, precision, dataset, options)(dataset.samples)

    def scorer(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> Callable[[Sequence[Sample]], np.ndarray]:
        """The model built once, for every chunk."""
        # OpenMP threads that spin while they wait collapse as soon as another process wants
        # the cores (2 threads ran 2x slower than 1 on a shared 2-core machine); passive ones
        # sleep. Read once, when torch loads libgomp: set here unless the user chose.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import torch
        except ImportError:
            raise BackendError("the reference backend needs PyTorch: "
                               "pip install 'pytest-vaccbench[torch]'") from None
        from ..models import build_model

        weights = find_weights(entry, options.weights_dir).path
        model = build_model(entry, weights)
        # channels_last: oneDNN's fast layout for convolutions on CPUs, 1.5-2x faster than
        # NCHW here with the same top-5 on every real test image (see README, Speed).
        # TorchScript archives (quantized mobile models) keep the layout they were built for.
        layout = torch.contiguous_format if isinstance(model, torch.jit.ScriptModule) else torch.channels_last
        model = model.to(memory_format=layout)
        batch_size = self.batch_size(entry, options)

        def score(samples: Sequence[Sample]) -> np.ndarray:
            torch.set_num_threads(options.threads)
            outputs = []
            with torch.inference_mode():
                for batch in iter_batches(samples, entry.preprocess, batch_size, options.workers,
                                          cache_dir=options.image_cache_dir):
                    x = torch.from_numpy(batch).contiguous(memory_format=layout)
                    outputs.append(model(x).float().numpy())
            return class_scores(np.concatenate(outputs), entry)
        return score
