"""The host stage of a functional model with string inputs.

Keras runs a model on raw text (`Input(shape=(1,), dtype="string")` into a TextVectorization)
with TensorFlow's string ops. JAX has no strings, so kilnet splits such a model in two: the
nodes that take strings (TextVectorization, StringLookup, Hashing, HashedCrossing, called
directly on the model's inputs) form the host stage, run with NumPy on the data as it comes
(once on whole arrays, once per batch of a source of batches), and the compiled programs see
only the numbers those nodes output, next to the model's numeric inputs: the model's *fed*
tensors. The model's `inputs`, `layers` and configuration stay Keras's.
"""

from __future__ import annotations

import numpy as np

from kilnet.errors import InputError
from kilnet.layers._node import substitute


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
        self.nodes = [node for node in graph.run_nodes
                      if any(t.uid in strings for t in node.inputs)]
        self.device_nodes = [node for node in graph.run_nodes if node not in self.nodes]
        _check_nodes(self.nodes, {t.uid for t in graph.inputs})
        _check_outputs(graph.outputs, strings)
        # what the compiled programs take: the numeric inputs, then the host nodes' outputs
        self.fed = ([t for t in graph.inputs if t.dtype != "string"]
                    + [t for node in self.nodes for t in node.outputs])

    @property
    def layer_ids(self) -> set:
        """id() of each layer the host stage runs (they have no weights to draw)."""
        return {id(node.layer) for node in self.nodes}

    def fed_arrays(self, x, argument: str = "x") -> list:
        """The arrays the compiled programs take (one per fed tensor) for `x` as a user gives
        the model's inputs: one array or list of strings, a list in input order, or a dict by
        input name."""
        values = {tensor.uid: _as_input_array(value, tensor, name)
                  for tensor, (name, value) in zip(self.inputs, self._by_input(x, argument))}
        for node in self.nodes:
            outputs = node.layer(*substitute(node.args, values),
                                 **substitute(node.kwargs, values))
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


def _check_nodes(nodes, input_uids):
    for node in nodes:
        if not getattr(node.layer, "runs_on_strings", False):
            raise TypeError(
                f"Layer {node.layer.name!r} ({type(node.layer).__name__}) takes a string "
                "input, which only the string layers take (TextVectorization, StringLookup, "
                "Hashing, HashedCrossing). Turn the text into numbers with one of them first.")
        if not all(t.uid in input_uids for t in node.inputs):
            raise ValueError(
                f"Layer {node.layer.name!r} ({type(node.layer).__name__}) takes strings and "
                "also a tensor computed inside the model; kilnet runs the string layers on the "
                "host before the model, so they take the model's inputs only. Give it Inputs.")
        if any(t.dtype == "string" for t in node.outputs):
            raise ValueError(f"Layer {node.layer.name!r} outputs strings, which no layer of "
                             "a kilnet model can take; it must output numbers.")


def _check_outputs(outputs, strings):
    for tensor in outputs:
        if tensor.uid in strings:
            raise ValueError(
                f"The model's output {tensor.name!r} is a string Input itself; kilnet models "
                "output numbers. Output the result of a layer instead.")


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
