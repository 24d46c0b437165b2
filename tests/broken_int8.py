"""Build a broken int8 model on purpose: the failure a gate must catch (the zoo's RepVGG-A0
int8 build scored 0.6% top1). Plain functions, for any test that needs such a model."""

from __future__ import annotations

from pathlib import Path
from typing import Collection

import numpy as np


def break_weight_scales(source: Path, target: Path, factor: float = 0.0,
                        nodes: Collection[str] | None = None) -> int:
    """Copy a QDQ model with the scale of every weight's DequantizeLinear multiplied by `factor`
    (only those feeding the layers named in `nodes`, when given: a break in one layer).

    0 zeroes every weight; a large factor (1e3) mis-scales them so that activations saturate.
    A weight is a DequantizeLinear whose quantized input is an initializer (activations come
    from QuantizeLinear nodes instead). Returns the number of scales changed; 0 means the
    model was not a QDQ model.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    initializers = {t.name: t for t in model.graph.initializer}
    feeds = {i for n in model.graph.node if nodes is None or n.name in nodes for i in n.input}
    changed: set[str] = set()
    for node in model.graph.node:
        if (node.op_type != "DequantizeLinear" or node.input[0] not in initializers
                or node.output[0] not in feeds):
            continue
        scale = initializers[node.input[1]]
        if scale.name not in changed:
            value = numpy_helper.to_array(scale).astype(np.float32) * np.float32(factor)
            scale.CopyFrom(numpy_helper.from_array(value, scale.name))
            changed.add(scale.name)
    onnx.save(model, str(target))
    return len(changed)
