"""The quantizable layers of an ONNX graph, named the ways users name them.

The accelerator's vamc build configs keep layers in higher precision by ordinal:
`skip_conv_layers: [0, 1, 8]` counts the graph's convolutions, `skip_matmul_layers: [0]`
its matrix products (MatMul and Gemm), each in topological order. We assume the compiler
counts the same nodes in the same order as the exported ONNX graph's node list (which
torch.onnx writes in topological order); a graph rewritten before compiling (fused or split
convolutions) would shift the indices. Exported node names carry the PyTorch module path
("/blocks/blocks.1/blocks.1.0/conv_pw/Conv"), which is how a person finds the layer in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

KINDS = {"Conv": "conv", "MatMul": "matmul", "Gemm": "matmul"}


@dataclass(frozen=True)
class Layer:
    kind: str  # "conv" | "matmul" (MatMul and Gemm)
    index: int  # ordinal among the graph's layers of that kind, topological order
    op: str  # ONNX op type
    node: str  # node name in the graph
    module: str  # PyTorch module path from the exported node name


def module_path(node_name: str) -> str:
    """"/blocks/blocks.1/blocks.1.0/conv_pw/Conv" and "/blocks/1/conv_pw/Conv" -> the module
    path ("blocks.1.0.conv_pw", "blocks.1.conv_pw"): torch.onnx writes each scope either as
    the full dotted path or as the child's own name; the last part is the op."""
    path = ""
    for part in node_name.strip("/").split("/")[:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path or node_name


def quantizable_layers(model: Any) -> list[Layer]:
    """Every Conv, MatMul and Gemm of `model` (an onnx.ModelProto), in graph order."""
    counts = {"conv": 0, "matmul": 0}
    layers = []
    for i, node in enumerate(model.graph.node):
        kind = KINDS.get(node.op_type)
        if kind is None:
            continue
        name = node.name or f"{node.op_type}_{i}"
        layers.append(Layer(kind, counts[kind], node.op_type, name, module_path(name)))
        counts[kind] += 1
    return layers


def nodes_for(layers: Sequence[Layer], conv: Sequence[int] = (), matmul: Sequence[int] = ()) -> list[str]:
    """Node names of the layers with these conv and matmul ordinals (a vamc skip list)."""
    wanted = {("conv", i) for i in conv} | {("matmul", i) for i in matmul}
    found = [layer.node for layer in layers if (layer.kind, layer.index) in wanted]
    missing = wanted - {(layer.kind, layer.index) for layer in layers}
    if missing:
        counts = {k: sum(layer.kind == k for layer in layers) for k in ("conv", "matmul")}
        raise ValueError(f"no such layer(s): {', '.join(f'{k} {i}' for k, i in sorted(missing))} "
                         f"(the graph has {counts['conv']} conv and {counts['matmul']} matmul layers)")
    return found
