"""Hard-sigmoid and hard-swish in ONNX graphs: one node each for float32 sessions, spelled out
in ``Add``, ``Clip`` and ``Mul`` for int8 quantisation.

tf2onnx writes Keras's ``hard_sigmoid`` (``relu6(x + 3) / 6``) as three element-wise nodes,
``Add``, ``Clip`` and ``Mul``, and ``hard_swish`` as a fourth, ``Mul`` by ``x``. MobileNetV3
has 27 of them; each is a pass over a whole activation tensor, and in float32 ONNX Runtime
(2 AVX2 cores) they took more time than the convolutions. :func:`fuse_hard_activations` makes
each one node (``HardSigmoid``, ``HardSwish``; one pass), which ran MobileNetV3Small 1.2-1.4x
faster (the model alone; docs/performance.md, issue 29). int8 quantisation wants the
opposite: ONNX Runtime has integer kernels for ``Add`` and ``Mul`` (a ``Clip`` folds into
their output range) but none for ``HardSigmoid``, which would run in float32 between a
dequantisation and a quantisation; :func:`expand_hard_activations` spells them out again
before quantising.

Both rewrite an ``onnx.ModelProto`` in place. Importing this module does not import ONNX.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["expand_hard_activations", "fuse_hard_activations"]

_HARD_SWISH_OPSET = 14  # the ONNX opset that introduced HardSwish


def _scalars(model: Any) -> dict[str, float]:
    """The graph's one-element initializers, by name."""
    from onnx import TensorProto, numpy_helper

    found = {}
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT and all(d == 1 for d in tensor.dims):
            found[tensor.name] = float(numpy_helper.to_array(tensor).reshape(-1)[0])
    return found


def _opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


class _Graph:
    """Who produces and who reads each tensor of a graph's nodes."""

    def __init__(self, model: Any) -> None:
        self.nodes = list(model.graph.node)
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.readers: dict[str, list[Any]] = {}
        for node in self.nodes:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in model.graph.output}

    def only_reader(self, tensor: str) -> Any | None:
        """The node that reads ``tensor``, when exactly one does and it is no graph output."""
        readers = self.readers.get(tensor, [])
        return readers[0] if len(readers) == 1 and tensor not in self.outputs else None


def _other(node: Any, known: str) -> str | None:
    """The other input of a two-input node one of whose inputs is ``known``."""
    if len(node.input) != 2 or known not in node.input:
        return None
    first, second = (str(name) for name in node.input)
    return second if first == known else first


def _close(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= 1e-6 * max(1.0, abs(target))


def _hard_sigmoid_at(
    graph: _Graph, scalars: dict[str, float], last: Any
) -> tuple[str, list[Any]] | None:
    """``(x, nodes)`` where ``last`` ends ``Mul(Clip(Add(x, 3), 0, 6), 1/6)`` (either order of
    ``Add``'s and ``Mul``'s inputs, or ``Div`` by 6), else ``None``."""
    if last.op_type not in ("Mul", "Div") or len(last.input) != 2:
        return None
    clipped, factor = last.input
    if last.op_type == "Mul" and not _close(scalars.get(factor), 1 / 6):
        clipped, factor = factor, clipped
    wanted = 6.0 if last.op_type == "Div" else 1 / 6
    if not _close(scalars.get(factor), wanted):
        return None
    clip = graph.producer.get(clipped)
    if clip is None or clip.op_type != "Clip" or graph.only_reader(clipped) is not last:
        return None
    if (
        len(clip.input) != 3
        or scalars.get(clip.input[1]) != 0.0
        or scalars.get(clip.input[2]) != 6.0
    ):
        return None
    add = graph.producer.get(clip.input[0])
    if add is None or add.op_type != "Add" or graph.only_reader(clip.input[0]) is not clip:
        return None
    for x, three in (tuple(add.input), tuple(reversed(add.input))):
        if _close(scalars.get(three), 3.0) and x not in scalars:
            return x, [add, clip, last]
    return None


def fuse_hard_activations(model: Any) -> int:
    """Replace each hard-sigmoid chain of ``model`` by a ``HardSigmoid`` node and each
    hard-swish (``Mul`` of ``x`` by the hard-sigmoid of ``x``) by a ``HardSwish`` node (from
    opset 14; below it, only the hard-sigmoid is fused); return how many were fused.

    The results are the same up to float32 rounding. Initializers no node reads any more are
    removed (ONNX Runtime warns about each when it loads the model).
    """
    from onnx import helper

    graph, scalars = _Graph(model), _scalars(model)
    swish = _opset(model) >= _HARD_SWISH_OPSET
    replaced: dict[int, list[Any]] = {}  # id of the last node of a chain -> its one node
    removed: set[int] = set()
    for node in graph.nodes:
        found = _hard_sigmoid_at(graph, scalars, node)
        if found is None:
            continue
        x, chain = found
        gate = graph.only_reader(node.output[0])
        if (
            swish
            and gate is not None
            and gate.op_type == "Mul"
            and _other(gate, node.output[0]) == x
        ):
            chain.append(gate)
            fused = helper.make_node(
                "HardSwish", [x], list(gate.output), name=f"{gate.output[0]}/hard_swish"
            )
        else:
            fused = helper.make_node(
                "HardSigmoid", [x], list(node.output), name=f"{node.output[0]}/hard_sigmoid",
                alpha=1 / 6, beta=0.5,
            )  # fmt: skip
        removed.update(id(n) for n in chain[:-1])
        replaced[id(chain[-1])] = [fused]
    _rebuild(model, graph.nodes, replaced, removed)
    return len(replaced)


def expand_hard_activations(model: Any) -> int:
    """Spell out each ``HardSwish`` and ``HardSigmoid`` node of ``model`` as
    ``Mul(x, Mul(Clip(Add(x, beta / alpha), 0, 1 / alpha), alpha))``, as tf2onnx writes Keras's
    (``alpha`` 1/6 and ``beta`` 1/2: ``Add`` 3, ``Clip`` at 6); return how many were expanded.
    """
    from onnx import TensorProto, helper

    graph = _Graph(model)
    names = {t.name for t in model.graph.initializer}

    def constant(value: float) -> str:
        name = f"hard_activation/{value!r}"
        if name not in names:
            model.graph.initializer.append(helper.make_tensor(name, TensorProto.FLOAT, [], [value]))
            names.add(name)
        return name

    replaced: dict[int, list[Any]] = {}
    for node in graph.nodes:
        if node.op_type not in ("HardSwish", "HardSigmoid"):
            continue
        swish = node.op_type == "HardSwish"
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        alpha = 1 / 6 if swish else float(attributes.get("alpha", 0.2))  # ONNX's defaults
        beta = 0.5 if swish else float(attributes.get("beta", 0.5))
        if alpha <= 0:  # no clip range to spell it with; left as it is
            continue
        (x,) = node.input
        prefix = node.output[0]  # unique, where node names may be empty
        gate = f"{prefix}/gate" if swish else node.output[0]
        chain = [
            helper.make_node("Add", [x, constant(beta / alpha)], [f"{prefix}/shifted"]),
            helper.make_node(
                "Clip",
                [f"{prefix}/shifted", constant(0.0), constant(1 / alpha)],
                [f"{prefix}/clipped"],
            ),
            helper.make_node("Mul", [f"{prefix}/clipped", constant(alpha)], [gate]),
        ]
        if swish:
            chain.append(helper.make_node("Mul", [x, gate], list(node.output)))
        for made in chain:
            made.name = f"{made.output[0]}/{made.op_type}"
        replaced[id(node)] = chain
    _rebuild(model, graph.nodes, replaced, set())
    return len(replaced)


def _rebuild(
    model: Any, nodes: list[Any], replaced: dict[int, list[Any]], removed: set[int]
) -> None:
    """Write the graph's nodes again: each of ``replaced`` by its nodes in its place, none of
    ``removed``; then drop the initializers only they read."""
    if not replaced:
        return
    out: list[Any] = []
    for node in nodes:
        if id(node) in replaced:
            out.extend(replaced[id(node)])
        elif id(node) not in removed:
            out.append(node)
    freed = {name for node in nodes if id(node) in replaced or id(node) in removed
             for name in node.input}  # fmt: skip
    del model.graph.node[:]
    model.graph.node.extend(out)
    unread = freed - _read_names(out) - {o.name for o in model.graph.output}
    kept = [t for t in model.graph.initializer if t.name not in unread]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _read_names(nodes: Iterable[Any]) -> set[str]:
    """Every tensor name ``nodes`` read, inside their subgraphs too (``If``, ``Loop``)."""
    from onnx import helper

    read: set[str] = set()
    for node in nodes:
        read.update(node.input)
        for attribute in node.attribute:
            value = helper.get_attribute_value(attribute)
            graphs = value if isinstance(value, list) else [value]
            for graph in graphs:
                if hasattr(graph, "node"):
                    read |= _read_names(graph.node)
    return read
