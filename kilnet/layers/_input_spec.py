"""InputSpec: what a layer of yours declares about its inputs (rank, shape, dtype, axis sizes),
checked when the layer is called, as Keras's `keras.layers.InputSpec`.

Why a module of its own: a custom layer written for Keras sets `self.input_spec = InputSpec(...)`
in `__init__` or `build`, and expects a call on the wrong input to fail there, with the layer's
name, instead of deep inside its `call`. `Layer.__call__` runs `check_input_spec` on the first
argument before anything else (symbolic tensors, arrays and traced arrays alike: only static
shapes and dtypes are read). kilnet's own layers check their inputs themselves and leave
`input_spec` as None.
"""

from __future__ import annotations

import jax
import numpy as np


def _standard_dtype(dtype):
    return None if dtype is None else np.dtype(dtype).name


class InputSpec:
    """The rank, shape, dtype and axis sizes a layer accepts (each None: anything).

    Args:
        dtype: the inputs' dtype.
        shape: the full shape, batch axis included (None for any size); sets `ndim`.
        ndim: the rank; `max_ndim` / `min_ndim`: bounds on it.
        axes: {axis: size} for the axes whose size is fixed (e.g. `{-1: 16}`).
        allow_last_axis_squeeze: accept an input whose rank differs by a trailing axis of 1.
        name: the key of this input when inputs come as a dict.
        optional: a None input is accepted.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> class Scale(kilnet.layers.Layer):
        ...     def build(self, input_shape):
        ...         self.input_spec = kilnet.layers.InputSpec(ndim=2, axes={-1: input_shape[-1]})
        ...     def call(self, x):
        ...         return 2 * x
        >>> layer = Scale()
        >>> layer(np.ones((1, 3))).shape
        (1, 3)
        >>> layer(np.ones((1, 4)))
        Traceback (most recent call last):
        ...
        ValueError: Input 0 of layer 'scale' is incompatible with the layer: expected axis -1 of size 3. Received: shape=(1, 4). Pass inputs of the shape the layer was built for.
    """

    def __init__(self, dtype=None, shape=None, ndim=None, max_ndim=None, min_ndim=None,
                 axes=None, allow_last_axis_squeeze=False, name=None, optional=False):
        self.dtype = _standard_dtype(dtype)
        self.shape = None if shape is None else tuple(shape)
        self.ndim = len(self.shape) if shape is not None else ndim
        self.max_ndim, self.min_ndim = max_ndim, min_ndim
        self.name, self.optional = name, optional
        self.allow_last_axis_squeeze = allow_last_axis_squeeze
        try:
            self.axes = {int(axis): size for axis, size in (axes or {}).items()}
        except (AttributeError, TypeError, ValueError):
            raise TypeError("InputSpec(axes=) is a dict {integer axis: size}. "
                            f"Received: axes={axes!r}") from None
        highest = self.ndim if self.ndim is not None else self.max_ndim
        if self.axes and highest is not None and max(self.axes) > highest - 1:
            raise ValueError(f"InputSpec(axes=) names axis {max(self.axes)}, beyond the "
                             f"largest rank allowed ({highest}). Received: axes={axes!r}")

    def __repr__(self):
        fields = [f"{key}={getattr(self, key)}" for key in
                  ("dtype", "shape", "ndim", "max_ndim", "min_ndim", "axes")
                  if getattr(self, key)]
        return f"InputSpec({', '.join(fields)})"

    def get_config(self) -> dict:
        """Keras's config keys: dtype, shape, ndim, max_ndim, min_ndim, axes, optional."""
        return {"dtype": self.dtype, "shape": self.shape, "ndim": self.ndim,
                "max_ndim": self.max_ndim, "min_ndim": self.min_ndim, "axes": self.axes,
                "optional": self.optional}

    @classmethod
    def from_config(cls, config):
        """The spec a `get_config` dict describes."""
        return cls(**config)


def check_input_spec(input_spec, inputs, layer_name: str) -> None:
    """Raise ValueError if `inputs` (one tensor, a list, or a dict for named specs) do not
    fit `input_spec` (one InputSpec, or a list with one per input; None entries accept
    anything).

    Example:
        >>> import numpy as np
        >>> check_input_spec(InputSpec(min_ndim=2), np.ones((2, 3)), "dense")   # fits: nothing
        >>> check_input_spec([InputSpec(), InputSpec()], np.ones(3), "add")
        Traceback (most recent call last):
        ...
        ValueError: Layer 'add' expects 2 input(s). Received: 1 input tensor(s). Pass one tensor per input, e.g. layer([a, b]).
    """
    specs = jax.tree.leaves(input_spec, is_leaf=lambda s: isinstance(s, InputSpec) or s is None)
    if not specs:
        return
    names = [spec.name for spec in specs if spec is not None]
    if isinstance(inputs, dict) and len(names) == len(specs) and all(names):
        missing = [name for name in names if name not in inputs]
        if missing:
            raise ValueError(f"Layer '{layer_name}' expects inputs named {names}. Received: "
                             f"a dict with keys {sorted(inputs)}. Add the key(s) {missing}.")
        inputs = [inputs[name] for name in names]
    tensors = jax.tree.leaves(inputs, is_leaf=lambda x: x is None or hasattr(x, "shape"))
    if len(tensors) != len(specs):
        raise ValueError(f"Layer '{layer_name}' expects {len(specs)} input(s). Received: "
                         f"{len(tensors)} input tensor(s). Pass one tensor per input, e.g. "
                         "layer([a, b]).")
    for index, (x, spec) in enumerate(zip(tensors, specs)):
        if spec is not None and not (x is None and spec.optional):
            _check_one(spec, x, f"Input {index} of layer '{layer_name}'")


def _check_one(spec: InputSpec, x, where: str) -> None:
    if not hasattr(x, "shape"):
        raise ValueError(f"{where} must be a tensor. Received: {type(x).__name__}")
    shape = tuple(None if d is None else int(d) for d in x.shape)

    def refuse(expected, fix="Pass inputs of the shape the layer was built for."):
        raise ValueError(f"{where} is incompatible with the layer: expected {expected}. "
                         f"Received: shape={shape}. {fix}")

    ndim = len(shape)
    if spec.ndim is not None and not spec.allow_last_axis_squeeze and ndim != spec.ndim:
        refuse(f"ndim={spec.ndim}", "Reshape the input (e.g. add or remove an axis).")
    if spec.max_ndim is not None and ndim > spec.max_ndim:
        refuse(f"max_ndim={spec.max_ndim}", "Reshape the input to fewer axes.")
    if spec.min_ndim is not None and ndim < spec.min_ndim:
        refuse(f"min_ndim={spec.min_ndim}", "Reshape the input to more axes.")
    if spec.dtype is not None and _standard_dtype(x.dtype) != spec.dtype:
        raise ValueError(f"{where} is incompatible with the layer: expected "
                         f"dtype={spec.dtype}. Received: dtype={_standard_dtype(x.dtype)}. "
                         "Cast the input first.")
    for axis, size in spec.axes.items():
        if size is not None and -ndim <= axis < ndim and shape[axis] not in (size, None):
            refuse(f"axis {axis} of size {size}")
    if spec.shape is not None:
        expected, actual = spec.shape, shape
        if spec.allow_last_axis_squeeze:
            actual = actual[:-1] if actual and actual[-1] == 1 else actual
            expected = expected[:-1] if expected and expected[-1] == 1 else expected
        if any(e is not None and a is not None and e != a for e, a in zip(expected, actual)):
            refuse(f"shape={spec.shape}")
