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

from kilnet import _scope, ops

_tensor_ids = itertools.count()


def _binary(function: str, reflected: bool = False):
    """An operator of KerasTensor: kilnet.ops.<function>(self, other), or (other, self)."""
    def operator(self, other):
        op = getattr(ops, function)
        return op(other, self) if reflected else op(self, other)
    operator.__name__ = f"__{'r' if reflected else ''}{function}__"
    return operator


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
        # Keras's name for text, which NumPy has no dtype for (a string Input's tensors)
        self.dtype = "string" if dtype == "string" else str(np.dtype(dtype))
        self.name = name
        self.node = node        # the Node that produced it (None while being made)
        self.index = index      # which of the node's outputs it is
        self.has_mask = False   # it will carry a sequence mask (Embedding(mask_zero=True)...)
        # made to be a model's input though a layer computes it (FeatureSpace's encoded
        # features): a model started from it gets no warning (models._intermediate_inputs)
        self.meant_as_input = False
        self.uid = next(_tensor_ids)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def sample_shape(self) -> tuple:
        """The shape without the batch axis."""
        return self.shape[1:]

    @property
    def _keras_mask(self):
        """Keras's attribute (printed by its masking guide): the symbolic (batch, time) mask
        this tensor will carry, or None."""
        return KerasTensor(tuple(self.shape[:2]), "bool") if self.has_mask else None

    def __repr__(self):
        producer = "" if self.node is None else f", produced by {self.node.layer.name!r}"
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}{producer}>"

    def __bool__(self):
        raise TypeError("A symbolic tensor (from kilnet.Input) has no value to test with `if`; "
                        "compute with it through layers, operators and kilnet.ops (use "
                        "kilnet.ops.where for a choice made per element).")

    # -- ops: each becomes a node of the graph (kilnet.layers.Operation), as in Keras --------
    def __kilnet_op__(self, function, args, kwargs):
        """Called by every kilnet.ops function given a symbolic tensor: records the call as
        an op node and returns its symbolic output(s)."""
        # _operation's layer is built on this module, so it is imported when first needed
        from kilnet.layers._operation import record_op
        return record_op(function, args, kwargs)

    # Keras's operators, each the kilnet.ops function of its op (reflected: other first)
    __add__, __radd__ = _binary("add"), _binary("add", reflected=True)
    __sub__, __rsub__ = _binary("subtract"), _binary("subtract", reflected=True)
    __mul__, __rmul__ = _binary("multiply"), _binary("multiply", reflected=True)
    __matmul__, __rmatmul__ = _binary("matmul"), _binary("matmul", reflected=True)
    __truediv__, __rtruediv__ = _binary("true_divide"), _binary("true_divide", reflected=True)
    __floordiv__ = _binary("floor_divide")
    __rfloordiv__ = _binary("floor_divide", reflected=True)
    __mod__, __rmod__ = _binary("mod"), _binary("mod", reflected=True)
    __pow__, __rpow__ = _binary("power"), _binary("power", reflected=True)
    __and__, __rand__ = _binary("logical_and"), _binary("logical_and", reflected=True)
    __or__, __ror__ = _binary("logical_or"), _binary("logical_or", reflected=True)
    __xor__, __rxor__ = _binary("logical_xor"), _binary("logical_xor", reflected=True)
    __lt__, __le__ = _binary("less"), _binary("less_equal")
    __gt__, __ge__ = _binary("greater"), _binary("greater_equal")
    __ne__ = _binary("not_equal")   # __eq__ stays identity (as Keras's): tensors are dict keys
    __getitem__ = _binary("get_item")

    def __neg__(self):
        return ops.negative(self)

    def __abs__(self):
        return ops.absolute(self)

    def __invert__(self):
        return ops.logical_not(self)

    def __round__(self, ndigits=None):
        return ops.round(self, decimals=ndigits or 0)

    def __iter__(self):
        raise TypeError("A symbolic tensor cannot be iterated over (its batch length is not "
                        "known); index it (x[:, 0]) or use kilnet.ops.unstack.")

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


def substitute(tree, values: dict, keep_others: bool = False):
    """`tree` with every KerasTensor replaced by values[tensor.uid]; with `keep_others`, a
    KerasTensor whose uid is not in `values` stays as it is."""
    def swap(t):
        if not isinstance(t, KerasTensor) or (keep_others and t.uid not in values):
            return t
        return values[t.uid]
    return jax.tree.map(swap, tree, is_leaf=lambda t: isinstance(t, KerasTensor))


# The lengths tried for what a symbolic tensor does not know: its batch axis (large, so that a
# function which cuts or mixes samples shows it) and other unknown lengths (a sequence's;
# small, so that x[:, :3] stays unknown). A length that differs between the two is unknown.
BATCH_PROBES = (1009, 2003)
LENGTH_PROBES = (2, 3)


def source_inputs(tensor) -> list:
    """The `kilnet.Input` tensors a symbolic tensor is computed from (Keras's
    `get_source_inputs`), in the order the graph first reaches them; an input is its own source.

    Example:
        >>> import kilnet
        >>> a, b = kilnet.Input(shape=(2,)), kilnet.Input(shape=(2,))
        >>> source_inputs(kilnet.layers.Add()([b, a])) == [b, a]
        True
    """
    if not isinstance(tensor, KerasTensor):
        raise TypeError("get_source_inputs takes a symbolic tensor (an output of kilnet.Input "
                        f"or of layers called on one). Received: {type(tensor).__name__}")
    found, seen, stack = [], set(), [tensor]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        node = current.node
        if node is None or node.is_input:
            found.append(current)
        else:
            stack.extend(reversed(node.inputs))
    return found


def trace_symbolic(function, args, kwargs):
    """What `function(*args, **kwargs)` returns when the KerasTensors among the arguments are
    arrays, as KerasTensors (no node): shapes and dtypes from tracing it abstractly
    (jax.eval_shape) twice, with the probe lengths above. Raises ValueError when it fails on
    such inputs, or when an output does not keep the batch axis first.

    Example:
        >>> x = KerasTensor((None, None, 4))
        >>> trace_symbolic(lambda t: t[:, :3].sum(axis=-1), (x,), {})
        <KerasTensor shape=(None, None), dtype=float32>
    """
    tensors = tensors_in((args, kwargs))

    def run(*values):
        given_args, given_kwargs = substitute((args, kwargs), {
            t.uid: v for t, v in zip(tensors, values)})
        return function(*given_args, **given_kwargs)

    traced = []
    for batch, length in zip(BATCH_PROBES, LENGTH_PROBES):
        specs = [jax.ShapeDtypeStruct((batch,) + tuple(
            length if d is None else d for d in t.shape[1:]), t.dtype) for t in tensors]
        try:
            with _scope.shapes_only():
                traced.append(jax.eval_shape(run, *specs))
        except (TypeError, ValueError, IndexError) as error:
            raise ValueError(f"it cannot be computed on inputs of shapes "
                             f"{[t.shape for t in tensors]}: {error}") from None
    return jax.tree.map(_traced_tensor, *traced)


def _traced_tensor(first, second) -> KerasTensor:
    shape = tuple(a if a == b else None for a, b in zip(first.shape, second.shape))
    if not shape or (first.shape[0], second.shape[0]) != BATCH_PROBES:
        raise ValueError(f"it gives an output of shape {shape or '()'}, without the batch "
                         "axis first; a node of a model keeps one value per sample")
    return KerasTensor(shape, first.dtype)


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
