"""Operation: one op of a closed table (comparisons, logic, reductions of booleans, casts) as a
node of a functional graph.

Why a layer of its own: Keras 3 records the ops a functional model applies to symbolic tensors
as graph nodes and writes them into `.keras` files. Its own layers do it too: a functional
model whose `Embedding(mask_zero=True)` or `Masking` feeds a recurrent layer is saved with the
mask as explicit nodes (`NotEqual(tokens, 0)`, then `Any(..., axis=-1)` for Masking) passed
to the next layer as `mask=`. kilnet maps those nodes by class name, from this closed table
only, onto this layer (kilnet.keras_files), so such files open without running anything a file
names, and the model saves and loads as a kilnet file too. Its weights: none.
"""

from __future__ import annotations

import jax.numpy as jnp

from kilnet import ops
from kilnet.layers._base import Layer
from kilnet.layers._node import KerasTensor

# Keras's op class name -> (kilnet.ops function, its keyword arguments and their defaults).
BINARY = {"NotEqual": "not_equal", "Equal": "equal", "Greater": "greater",
          "GreaterEqual": "greater_equal", "Less": "less", "LessEqual": "less_equal",
          "LogicalAnd": "logical_and", "LogicalOr": "logical_or"}
REDUCTIONS = {"Any": "any", "All": "all"}
UNARY = {"LogicalNot": "logical_not", "Cast": "cast"}
ARGUMENTS = {"any": {"axis": None, "keepdims": False}, "all": {"axis": None, "keepdims": False},
             "cast": {"dtype": None}}
OPERATIONS = {**BINARY, **REDUCTIONS, **UNARY}
_DTYPES = ("bool", "float32", "int32", "int64", "uint8", "float16", "bfloat16")


class Operation(Layer):
    """One op of Keras's graph nodes, by Keras's class name: comparisons (`NotEqual`, `Equal`,
    `Greater`, `GreaterEqual`, `Less`, `LessEqual`), `LogicalAnd`, `LogicalOr`, `LogicalNot`,
    `Any` and `All` (with `axis`, `keepdims`) and `Cast` (`dtype`). Called on tensors and
    numbers, as the op: `Operation("NotEqual")(tokens, 0)`. Made by the Keras-file import;
    in your own code, write the op inside a layer's `call`.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> mask = kilnet.layers.Operation("NotEqual")(np.array([[3, 0, 5]]), 0)
        >>> np.asarray(mask).tolist()
        [[True, False, True]]
        >>> kilnet.layers.Operation("Any", axis=-1)(np.array([[0.0, 1.0], [0.0, 0.0]]) != 0)
        Array([ True, False], dtype=bool)
    """

    config_keys = ("operation", "axis", "keepdims", "dtype_to")

    def __init__(self, operation, *, axis=None, keepdims=False, dtype_to=None, **kwargs):
        super().__init__(**kwargs)
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {sorted(OPERATIONS)}. Received: "
                             f"operation={operation!r}")
        self.operation = operation
        self.axis = _check_axis(axis) if operation in REDUCTIONS else None
        self.keepdims = bool(keepdims) if operation in REDUCTIONS else False
        if operation == "Cast" and dtype_to not in _DTYPES:
            raise ValueError(f"Operation('Cast') needs dtype_to, one of {_DTYPES}. Received: "
                             f"dtype_to={dtype_to!r}")
        self.dtype_to = dtype_to if operation == "Cast" else None

    @property
    def function(self):
        return getattr(ops, OPERATIONS[self.operation])

    def call_input_shape(self, args, kwargs):
        """The shape of each tensor argument (a number stands for a scalar: shape ())."""
        return [tuple(a.shape[1:]) if _is_tensor(a) else None for a in args]

    def compute_output_shape(self, input_shape):
        shapes = [s for s in input_shape if s is not None]
        if self.operation in BINARY:
            if len(input_shape) != 2:
                raise ValueError(f"{self.operation} takes two arguments. Received: "
                                 f"{len(input_shape)}")
            return _broadcast(shapes)
        shape = shapes[0]
        if self.operation in REDUCTIONS:
            return _reduced(shape, self.axis, self.keepdims)
        return shape

    def compute_output_dtype(self, input_dtype) -> str:
        return self.dtype_to if self.operation == "Cast" else "bool"

    def apply(self, params, state, *args, training=False, rng=None, sample_mask=None, **_):
        kwargs = {}
        if self.operation in REDUCTIONS:
            kwargs = {"axis": self.axis, "keepdims": self.keepdims}
        elif self.operation == "Cast":
            kwargs = {"dtype": self.dtype_to}
        return self.function(*args, **kwargs), state


def _is_tensor(value) -> bool:
    return isinstance(value, KerasTensor) or hasattr(value, "shape") and jnp.ndim(value) > 0


def _check_axis(axis):
    if axis is None:
        return None
    values = axis if isinstance(axis, (list, tuple)) else [axis]
    if not values or not all(isinstance(a, int) and not isinstance(a, bool) for a in values):
        raise ValueError(f"axis must be None, an integer or a list of integers. Received: "
                         f"axis={axis!r}")
    return list(values) if isinstance(axis, (list, tuple)) else axis


def _broadcast(shapes):
    """NumPy broadcasting of per-sample shapes (None: unknown length)."""
    if len(shapes) == 1:
        return shapes[0]
    a, b = shapes
    rank = max(len(a), len(b))
    a, b = (1,) * (rank - len(a)) + tuple(a), (1,) * (rank - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == 1 or x == y:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
            raise ValueError(f"shapes {a} and {b} do not broadcast")
    return tuple(out)


def _reduced(shape, axis, keepdims):
    """The per-sample shape after reducing `axis` (axes counted with the batch axis, as Keras
    records them; None reduces every axis, the batch's too, which a graph node cannot)."""
    if axis is None:
        raise ValueError("a reduction over every axis, the batch axis included, cannot be a "
                         "node of a model (axis=None)")
    rank = len(shape) + 1
    axes = {a % rank for a in (axis if isinstance(axis, list) else [axis])}
    if 0 in axes:
        raise ValueError(f"a node cannot reduce the batch axis. Received: axis={axis!r}")
    return tuple((1 if keepdims else None) if i + 1 in axes else d
                 for i, d in enumerate(shape) if keepdims or i + 1 not in axes)
