"""The host stage of a functional model with string inputs.

Keras runs a model on raw text (`Input(shape=(1,), dtype="string")` into a TextVectorization)
with TensorFlow's string ops. JAX has no strings, so kilnet splits such a model in two: the
nodes that take strings (TextVectorization, StringLookup, Hashing, HashedCrossing, the ops
that only move strings, `ops.expand_dims(text, -1)`, and nested models holding string layers,
whose own host stage runs there) form the host stage, run with NumPy on the data as it comes
(once on whole arrays, once per batch of a source of batches), and the compiled programs see
only the numbers those nodes output, next to the model's numeric inputs: the model's *fed*
tensors. The model's `inputs`, `layers` and configuration stay Keras's.
"""

from __future__ import annotations

import numpy as np

from kilnet.errors import InputError
from kilnet.layers._node import KerasTensor, substitute, tensors_in


class HostStage:
    """The string-taking nodes of a graph (kilnet.models._graph.Graph) with string inputs.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> text = kilnet.Input((1,), dtype="string", name="text")
        >>> lookup = kilnet.layers.StringLookup(vocabulary=["a", "b"])
        >>> model = kilnet.Model(text, kilnet.layers.Embedding(3, 2)(lookup(text)))
        >>> [t.dtype for t in model.host_stage.fed]
        ['int32']
        >>> model.host_stage.fed_arrays(np.array(["b", "c"]))[0].tolist()
        [[2], [0]]
    """

    def __init__(self, graph):
        self.inputs = list(graph.inputs)
        strings = {t.uid for t in graph.inputs if t.dtype == "string"}
        on_host = {t.uid for t in graph.inputs}   # what host nodes may take
        self.nodes, self.device_nodes, self._splits = [], [], {}
        computed = []   # the numbers host nodes give the compiled programs
        for node in graph.run_nodes:
            if not any(t.uid in strings for t in node.inputs):
                self.device_nodes.append(node)
                continue
            _check_node(node, on_host)
            self.nodes.append(node)
            if _is_split(node.layer):   # a model holding string layers: its own host stage
                split = SplitCall(node)
                self._splits[id(node)] = split
                self.device_nodes.append(split)
                computed.extend(split.fed)
                continue
            on_host.update(t.uid for t in node.outputs)
            strings.update(t.uid for t in node.outputs if t.dtype == "string")
            computed.extend(t for t in node.outputs if t.dtype != "string")
        _check_outputs(graph.outputs, strings)
        # what the compiled programs take: the numeric inputs, then the host nodes' outputs
        self.fed = [t for t in graph.inputs if t.dtype != "string"] + computed

    @property
    def layer_ids(self) -> set:
        """id() of each layer the host stage runs (they have no weights to draw); a model
        holding string layers draws its own weights, and is not one of them."""
        return {id(node.layer) for node in self.nodes if not _is_split(node.layer)}

    def fed_arrays(self, x, argument: str = "x") -> list:
        """The arrays the compiled programs take (one per fed tensor) for `x` as a user gives
        the model's inputs: one array or list of strings, a list in input order, or a dict by
        input name."""
        values = {tensor.uid: _as_input_array(value, tensor, name)
                  for tensor, (name, value) in zip(self.inputs, self._by_input(x, argument))}
        for node in self.nodes:
            args, kwargs = substitute(node.args, values), substitute(node.kwargs, values)
            split = self._splits.get(id(node))
            if split is not None:
                values.update(split.fed_values(args))
                continue
            run = getattr(node.layer, "run_on_host", node.layer)   # an op on strings, or a
            outputs = run(*args, **kwargs)                         # string layer itself
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            for tensor, value in zip(node.outputs, outputs):
                values[tensor.uid] = np.asarray(value)
        return [values[t.uid] for t in self.fed]

    def _by_input(self, x, argument):
        """[(argument name, value)] in the model's input order."""
        names = [t.node.layer.name for t in self.inputs]
        if isinstance(x, dict):
            missing = [name for name in names if name not in x]
            if missing:
                raise InputError(f"The model's inputs are named {names}; {argument} misses "
                                 f"{missing}. Received: a dict with keys {sorted(map(str, x))}")
            return [(f"{argument}[{name!r}]", x[name]) for name in names]
        if len(names) == 1:
            return [(argument, x)]
        if isinstance(x, (list, tuple)) and len(x) == len(names):
            return [(f"{argument}[{i}]", value) for i, value in enumerate(x)]
        raise InputError(f"The model has {len(names)} inputs {names}; {argument} must give one "
                         f"array for each, in a list or a dict by name. Received: "
                         f"{type(x).__name__}")


class SplitCall:
    """A model with string inputs called inside another model's graph (a Sequential whose
    first layer is a StringLookup, keras.io's recommenders' `embedding_encoder`): the host
    runs its host stage (fed_values), and the compiled programs run the model itself on the
    numbers that gives (the node the device runs: `layer`, `args`, `kwargs`, `inputs`,
    `outputs`, as a graph node's, in place of the graph's node `replaces`).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> encoder = kilnet.Sequential([kilnet.layers.StringLookup(vocabulary=["a", "b"]),
        ...                              kilnet.layers.Embedding(3, 2)])
        >>> user = kilnet.Input((), dtype="string")
        >>> model = kilnet.Model(user, encoder(user))
        >>> split = SplitCall(model.graph.outputs[0].node)
        >>> [t.dtype for t in split.fed], split.layer is encoder
        (['int32'], True)
    """

    is_input = False

    def __init__(self, node):
        self.layer, self.kwargs, self.outputs = node.layer, node.kwargs, node.outputs
        self.replaces = node   # the graph's node: its place in Keras's run order
        self.outputs_structure = node.outputs_structure
        # new tensors per call: a model called at two places feeds each its own numbers
        self.fed = [_fed_copy(t) for t in node.layer.host_stage.fed]
        self.args = (self.fed[0] if len(self.fed) == 1 else list(self.fed),) + tuple(
            node.args[1:])
        self.inputs = tensors_in((self.args, self.kwargs))

    def fed_values(self, args) -> dict:
        """{uid of each fed tensor: its array} for the call's arguments (strings)."""
        arrays = self.layer.host_stage.fed_arrays(args[0], argument=self.layer.name)
        return {t.uid: np.asarray(a) for t, a in zip(self.fed, arrays)}


def _fed_copy(tensor):
    """A new tensor like `tensor`, named by the same node (its spec's name) without being
    one of that node's outputs."""
    copy = KerasTensor(tensor.shape, tensor.dtype)
    copy.node, copy.index = tensor.node, tensor.index
    return copy


def _is_split(layer) -> bool:
    return getattr(layer, "host_stage", None) is not None


def _check_node(node, on_host):
    """A node that takes strings must be able to run on the host: a string layer, a shape op
    on strings, or a model holding string layers; and take only what the host has."""
    layer = node.layer
    if not (getattr(layer, "runs_on_strings", False) or hasattr(layer, "run_on_host")
            or _is_split(layer)):
        raise TypeError(
            f"Layer {layer.name!r} ({type(layer).__name__}) takes a string "
            "input, which only the string layers take (TextVectorization, StringLookup, "
            "Hashing, HashedCrossing). Turn the text into numbers with one of them first.")
    if not all(t.uid in on_host for t in node.inputs):
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) takes strings and "
            "also a tensor computed inside the model; kilnet runs the string layers on the "
            "host before the model, so they take the model's inputs (and strings reshaped "
            "from them) only. Give it Inputs.")
    if getattr(layer, "runs_on_strings", False) and any(
            t.dtype == "string" for t in node.outputs):
        raise ValueError(f"Layer {layer.name!r} outputs strings, which no layer of "
                         "a kilnet model can take; it must output numbers.")


def _check_outputs(outputs, strings):
    for tensor in outputs:
        if tensor.uid in strings:
            raise ValueError(
                f"The model's output {tensor.name!r} is strings (a string Input, or one "
                "reshaped); kilnet models output numbers. Output the result of a layer "
                "instead.")


def _as_input_array(value, tensor, name):
    """A user's value for one model input: text as a NumPy array of str, numbers as given;
    the axis of size 1 a declared (1,) sample shape has, added to a 1-D batch (as Keras
    adjusts a functional model's inputs)."""
    if tensor.dtype != "string":
        return value
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=object)
    if array.ndim == 0:
        raise InputError(f"{name} must be a batch of strings (a list or a 1-D array). "
                         f"Received: one string {str(array)[:40]!r}; wrap it in a list.")
    if array.size and not all(isinstance(v, (str, bytes)) for v in array.reshape(-1)):
        raise InputError(f"{name} feeds a string Input and must hold strings. Received: "
                         f"{type(array.reshape(-1)[0]).__name__} values")
    declared = tensor.sample_shape
    if array.ndim == len(declared) and declared and declared[-1] == 1:
        array = array[..., None]
    return array
