"""The graph of a functional model: the nodes between its inputs and outputs, in an order that
runs them, and its layers in Keras's order (the order of `model.layers` and of its weights).

Keras orders layers by depth, the longest path from a layer to an output, deepest (nearest the
inputs) first, and breaks ties by the order in which a walk back from the outputs meets them.
For a chain that is the order the layers were called in.
"""

from __future__ import annotations

from kilnet import _names
from kilnet.layers._node import KerasTensor, flatten


class Graph:
    """Nodes from `inputs` to `outputs` (structures of KerasTensors), ordered to run."""

    def __init__(self, inputs, outputs):
        self.inputs = _tensors(inputs, "inputs")
        self.outputs = _tensors(outputs, "outputs")
        if len({t.uid for t in self.inputs}) != len(self.inputs):
            raise ValueError("The same tensor is given twice in the model's inputs: give each "
                             "input once.")
        for tensor in self.inputs:   # Model takes other tensors through start_from_inputs
            if tensor.node is None or not tensor.node.is_input:
                raise ValueError(
                    "Model inputs must be made by kilnet.Input(...). Received: "
                    f"{tensor!r}; to start a model from an intermediate tensor, make a new "
                    "kilnet.Input of the same shape and call the layers on it.")
        self.nodes = self._walk()                 # every node, parents before children
        self.run_nodes = [n for n in self.nodes if not n.is_input]
        self.keras_rank = _keras_run_ranks(self.nodes)   # id(node) -> place in Keras's run
        self.layers = _keras_layer_order(self.nodes, self.outputs)
        self._check_names()

    def _walk(self):
        """Every node from the inputs to the outputs, parents before children; inputs that no
        output uses still belong to the model (Keras allows them)."""
        order = walk_back(self.outputs, {t.uid for t in self.inputs})
        walked = {id(node) for node in order}
        for tensor in self.inputs:
            if id(tensor.node) not in walked:
                order.insert(0, tensor.node)
                walked.add(id(tensor.node))
        return order

    def _check_names(self):
        """Given names must be unique; default names are numbered in layer order."""
        taken = _names.Names(layer.name for layer in self.layers if layer.name_is_fixed)
        for layer in self.layers:
            taken.add(layer.take_name(taken))
        seen = {}
        for layer in self.layers:
            other = seen.get(layer.name)
            if other is not None and other is not layer:
                raise ValueError(
                    f"Two different layers of the model are named {layer.name!r}; layer names "
                    "must be unique within a model. Rename one (name=...).")
            seen[layer.name] = layer

    def consumers(self, tensor) -> int:
        """How many nodes of this graph take `tensor` as an input."""
        return sum(any(t.uid == tensor.uid for t in node.inputs) for node in self.run_nodes)


def walk_back(outputs, stops) -> list:
    """The nodes that compute `outputs` (KerasTensors), parents before children (a post-order
    walk back from the outputs). The walk stops at the tensors whose uid is in `stops`: an
    Input tensor's node is included, the node that made any other one is not (it lies
    upstream of a model's input). Iterative (an explicit stack), so a chain of any depth walks
    without reaching Python's recursion limit.

    Example:
        >>> import kilnet
        >>> x = kilnet.Input(shape=(2,), name="x")
        >>> y = kilnet.layers.Dense(1, name="d")(kilnet.layers.Dense(3, name="h")(x))
        >>> [node.layer.name for node in walk_back([y], {x.uid})]
        ['x', 'h', 'd']
    """
    order, state = [], {}  # id(node) -> "visiting" or "done"

    def enter(tensor):
        """A new frame (node, its parents still to visit), or None if already done."""
        node = tensor.node
        if node is None:
            raise ValueError(f"{tensor!r} was not produced by a layer call.")
        if tensor.uid in stops and not node.is_input:
            return None
        if state.get(id(node)) == "done":
            return None
        if state.get(id(node)) == "visiting":
            raise ValueError("The model's graph has a cycle.")
        if node.is_input and tensor.uid not in stops:
            raise ValueError(
                f"The model's outputs depend on the input {tensor.name!r}, which is not in "
                "its inputs: add it to kilnet.Model(inputs=[...], ...).")
        state[id(node)] = "visiting"
        return node, iter(node.inputs)

    for tensor in outputs:
        first = enter(tensor)
        stack = [] if first is None else [first]
        while stack:
            node, parents = stack[-1]
            for parent in parents:  # resumes where the frame stopped
                frame = enter(parent)
                if frame is not None:
                    stack.append(frame)
                    break
            else:
                stack.pop()
                state[id(node)] = "done"
                order.append(node)
    return order


def _tensors(structure, argument):
    tensors = flatten(structure)
    if not tensors or not all(isinstance(t, KerasTensor) for t in tensors):
        raise TypeError(
            f"kilnet.Model({argument}=...) takes symbolic tensors (from kilnet.Input and layer "
            f"calls), alone or in a list or dict. Received: {structure!r:.200}")
    return tensors


def _keras_run_ranks(nodes) -> dict:
    """{id(node): its place in the order Keras's Functional runs the nodes}: by decreasing
    depth (the longest path to an output), ties in the order a walk from the outputs back to
    the inputs first meets them; a shared layer's nodes are at least as deep as its deepest
    node met before. Which of two layers on the same tensor runs first decides which one a
    MultiHeadAttention leaves without the tensor's mask (kilnet.models._graph_masks)."""
    depth, layer_depth = {}, {}
    for node in reversed(nodes):   # children before parents
        d = max(depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth[id(node)] = d
        for parent_tensor in node.inputs:
            parent = id(parent_tensor.node)
            depth[parent] = max(depth.get(parent, 0), d + 1)
    met = {key: index for index, key in enumerate(depth)}   # dict order: first met
    ordered = sorted(depth, key=lambda key: (-depth[key], met[key]))
    return {key: rank for rank, key in enumerate(ordered)}


def _keras_layer_order(nodes, outputs):
    """Layers by decreasing depth, ties broken by first meeting (Keras's functional order)."""
    depth = {}
    for node in reversed(nodes):  # children before parents
        d = depth.setdefault(id(node), 0)
        for parent_tensor in node.inputs:
            parent = parent_tensor.node
            depth[id(parent)] = max(depth.get(id(parent), 0), d + 1)
    layer_depth, first_seen = {}, {}
    for index, node in enumerate(nodes):
        layer = node.layer
        layer_depth[id(layer)] = max(layer_depth.get(id(layer), 0), depth[id(node)])
        first_seen.setdefault(id(layer), (index, layer))
    ordered = sorted(first_seen.values(),
                     key=lambda item: (-layer_depth[id(item[1])], item[0]))
    return [layer for _, layer in ordered]
