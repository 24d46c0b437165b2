"""The compiler's layer numbering: which convolutions and matmuls a build keeps in higher precision.

A vamc build config names the layers it does not quantize by ordinal index, per kind:
`skip_conv_layers: [0, 1, 8]` (the 1st, 2nd and 9th convolution) and `skip_matmul_layers`.
The numbering assumed here: the graph's nodes in topological order (an exported ONNX graph
lists its nodes in that order), convolutions (`Conv`) counted among themselves, and `MatMul`
and `Gemm` counted together as matmuls (the exporter writes a linear layer as either). The
zoo's documents do not define the numbering; this is the natural reading of an ONNX graph.

`module` is the PyTorch module a node came from, recovered from the exporter's node name
(`/blocks/blocks.1/blocks.1.0/conv_pw/Conv` -> `blocks.1.0.conv_pw`), so a user can tell the layers apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

CONV_OPS = ("Conv",)
MATMUL_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class Layer:
    kind: str  # "conv" | "matmul"
    index: int  # ordinal among the graph's layers of this kind, from 0
    op: str  # the ONNX op type
    node: str  # the ONNX node name (what onnxruntime's nodes_to_exclude takes)
    module: str  # the PyTorch module path, or the node name when it is not an export path


def module_path(node_name: str) -> str:
    """"/blocks/blocks.1/blocks.1.0/conv_pw/Conv" and "/blocks/1/conv_pw/Conv" -> the module
    path ("blocks.1.0.conv_pw", "blocks.1.conv_pw"): torch.onnx writes each scope either as
    the full dotted path or as the child's own name; the last part is the op."""
    path = ""
    for part in node_name.strip("/").split("/")[:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path or node_name


def quantizable_layers(model: Any) -> list[Layer]:
    """The convolutions and matmuls of `model` (an onnx.ModelProto), numbered per kind."""
    counts = {"conv": 0, "matmul": 0}
    layers = []
    for i, node in enumerate(model.graph.node):
        kind = "conv" if node.op_type in CONV_OPS else "matmul" if node.op_type in MATMUL_OPS else None
        if kind is None:
            continue
        name = node.name or f"{node.op_type}_{i}"
        layers.append(Layer(kind, counts[kind], node.op_type, name, module_path(name)))
        counts[kind] += 1
    return layers


def nodes_for(layers: Sequence[Layer], conv: Iterable[int] = (), matmul: Iterable[int] = ()) -> list[str]:
    """Node names of the convolutions and matmuls with these indices, in graph order.

    An index the graph does not have is a ValueError that says how many there are.
    """
    wanted = {"conv": set(conv), "matmul": set(matmul)}
    for kind, indices in wanted.items():
        have = sum(1 for layer in layers if layer.kind == kind)
        bad = sorted(i for i in indices if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < have)
        if bad:
            raise ValueError(f"{kind} layer index {', '.join(map(str, bad))} out of range: the graph "
                             f"has {have} {kind} layers (0..{have - 1})")
    return [layer.node for layer in layers if layer.index in wanted[layer.kind]]


def parse_keep(value: str) -> tuple[list[int], list[int]]:
    """`conv0,conv17,matmul0` -> ([0, 17], [0]) (conv and matmul ordinals, see layers.py)."""
    conv: list[int] = []
    matmul: list[int] = []
    for item in filter(None, (v.strip() for v in value.split(","))):
        kind = next((k for k in ("conv", "matmul") if item.startswith(k)), None)
        number = item[len(kind):] if kind else ""
        if not number.isdigit():
            raise ValueError(f"{item!r} is not a layer: write conv<N> or matmul<N> (the ordinal "
                             "among the graph's convolutions or matmuls, as vamc's skip lists count)")
        (conv if kind == "conv" else matmul).append(int(number))
    if not conv and not matmul:
        raise ValueError(f"no layer in {value!r}: write e.g. conv0,conv17,matmul0")
    return conv, matmul
