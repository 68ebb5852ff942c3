"""Symbolic tensors and nodes: what calling a layer on `kilnet.Input(...)` records.

A KerasTensor stands for an array that does not exist yet: it has a shape (batch axis None),
a dtype, and the node that produces it. A Node is one call of one layer: the arguments it was
called with (with KerasTensors where arrays will flow) and the KerasTensors it returned. A
functional Model (kilnet.models) orders the nodes between its inputs and outputs and runs them.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np

_tensor_ids = itertools.count()


class KerasTensor:
    """A symbolic tensor of the functional API, as `keras.KerasTensor`.

    Example:
        >>> import kilnet
        >>> x = kilnet.Input(shape=(28, 28), name="image")
        >>> x.shape, x.dtype, x.name
        ((None, 28, 28), 'float32', 'image')
    """

    def __init__(self, shape, dtype="float32", *, name=None, node=None, index=0):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = str(np.dtype(dtype))
        self.name = name
        self.node = node        # the Node that produced it (None while being made)
        self.index = index      # which of the node's outputs it is
        self.has_mask = False   # it will carry a sequence mask (Embedding(mask_zero=True)...)
        self.uid = next(_tensor_ids)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def sample_shape(self) -> tuple:
        """The shape without the batch axis."""
        return self.shape[1:]

    def __repr__(self):
        producer = "" if self.node is None else f", produced by {self.node.layer.name!r}"
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}{producer}>"

    def __bool__(self):
        raise TypeError("A symbolic tensor (from kilnet.Input) has no value to test with `if`; "
                        "use it only as the input of layers.")

    def _no_operators(self, *args, **kwargs):
        raise TypeError(
            "Operators and kilnet.ops functions on symbolic tensors are not supported yet: "
            "inside a functional model, compute with layers (or a small custom Layer whose "
            "call() uses kilnet.ops).")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _no_operators
    __truediv__ = __rtruediv__ = __matmul__ = __rmatmul__ = __pow__ = __neg__ = _no_operators
    __getitem__ = _no_operators

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "A symbolic tensor from kilnet.Input has no values: it stands for the data a model "
            "will receive. Call layers on it, then make a model with "
            "kilnet.Model(inputs, outputs), and give arrays to model.fit or model.predict.")


def is_symbolic(tree) -> bool:
    return any(isinstance(t, KerasTensor) for t in flatten(tree))


def flatten(tree) -> list:
    """The leaves of an argument structure, KerasTensors counted as leaves."""
    return jax.tree.leaves(tree, is_leaf=lambda t: isinstance(t, KerasTensor) or t is None)


def tensors_in(tree) -> list:
    return [t for t in flatten(tree) if isinstance(t, KerasTensor)]


def substitute(tree, values: dict):
    """`tree` with every KerasTensor replaced by values[tensor.uid]."""
    return jax.tree.map(lambda t: values[t.uid] if isinstance(t, KerasTensor) else t, tree,
                        is_leaf=lambda t: isinstance(t, KerasTensor))


class Node:
    """One call of `layer` on symbolic tensors: its arguments and its outputs."""

    def __init__(self, layer, args: tuple, kwargs: dict, outputs):
        self.layer = layer
        self.args = args
        self.kwargs = kwargs
        self.inputs = tensors_in((args, kwargs))
        self.outputs_structure = outputs
        self.outputs = tensors_in(outputs)
        for index, tensor in enumerate(self.outputs):
            tensor.node, tensor.index = self, index

    @property
    def is_input(self) -> bool:
        return not self.inputs

    def __repr__(self):
        return f"<Node {self.layer.name} of {len(self.inputs)} input(s)>"
