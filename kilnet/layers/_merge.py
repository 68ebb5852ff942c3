"""Merge layers: one tensor out of a list of tensors, as Keras's `keras.layers.Add` and kin.

They are how a functional model joins branches: two inputs concatenated, a residual
connection added back, a gate multiplied in. They are the only layers whose input is a list,
so they share one check of that list (`_shapes_of_list`) and Keras's broadcasting rule
(`broadcast_shapes`): sample shapes line up on their last axes, a size of 1 stretches, and an
input of lower rank gets axes of size 1 inserted right after the batch axis.

Axes given to Concatenate and Dot count the batch axis, as in Keras (axis=1 is the first axis
of a sample); the batch axis itself cannot be merged along, since kilnet pads the last batch.

Sequence masks, as Keras merges them: the elementwise merges pass on the OR of their inputs'
masks when every input has one (none otherwise); Maximum and Minimum take, where one input is
masked out, the other inputs' values, and Multiply treats masked-out values as 1 (then zeroes
what every mask excludes); Concatenate joins the masks as it joins the values (an unmasked
input counts as all real); Dot ends the mask.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from kilnet import config
from kilnet.layers._base import Layer, is_shape

# Keras's backend.epsilon(): the smallest norm Dot(normalize=True) divides by.


def _batched(shape) -> tuple:
    """A sample shape as the user sees it on a symbolic tensor: batch axis first."""
    return (None,) + tuple(shape)


def _shapes_of_list(layer, input_shape, count=None) -> list:
    """The sample shapes of a merge layer's list of inputs; a clear error for anything else."""
    name = type(layer).__name__
    if not isinstance(input_shape, (list, tuple)) or is_shape(input_shape) or not all(
            is_shape(s) for s in input_shape):
        raise ValueError(f"A {name} layer should be called on a list of tensors, e.g. "
                         f"{name}()([a, b]). Received: one input of shape "
                         f"{_batched(input_shape) if is_shape(input_shape) else input_shape}")
    shapes = [tuple(s) for s in input_shape]
    if count is not None and len(shapes) != count:
        raise ValueError(f"A {name} layer should be called on exactly {count} inputs. "
                         f"Received: {len(shapes)} inputs of shapes "
                         f"{[_batched(s) for s in shapes]}")
    if not shapes:
        raise ValueError(f"A {name} layer should be called on a list of at least 1 input. "
                         "Received: an empty list")
    return shapes


def _arrays_of_list(layer, x) -> list:
    """The input arrays of `apply`, checked as sample_output_shape checks their shapes (a
    built layer may be called again on other shapes)."""
    if not isinstance(x, (list, tuple)):
        _shapes_of_list(layer, tuple(x.shape[1:]))  # raises: one tensor, not a list
    x = list(x)
    layer.sample_output_shape([tuple(v.shape[1:]) for v in x])
    return x


def broadcast_shapes(shape1, shape2) -> tuple:
    """Keras's elementwise-merge shape rule on sample shapes (None: a size not known yet)."""
    if len(shape1) < len(shape2):
        shape1, shape2 = shape2, shape1
    lead = len(shape1) - len(shape2)
    out = list(shape1[:lead])
    for i, j in zip(shape1[lead:], shape2):
        if i == 1 or i is None and j not in (None, 1):
            out.append(j)
        elif j == 1 or j is None:
            out.append(i)
        elif i == j:
            out.append(i)
        else:
            raise ValueError(f"Inputs have incompatible shapes: {_batched(shape1)} and "
                             f"{_batched(shape2)} differ where neither size is 1 "
                             f"({i} against {j}).")
    return tuple(out)


def _common_dtype(dtypes) -> str:
    """The dtype of an elementwise result: the inputs' one when they agree (token ids stay
    integers), else JAX's promotion of them."""
    dtypes = [str(d) for d in (dtypes if isinstance(dtypes, (list, tuple)) else [dtypes])]
    if len(set(dtypes)) == 1:
        return dtypes[0]
    return str(jnp.result_type(*dtypes))


def _full_mask(mask, x):
    """A (batch, steps) sequence mask spread over every value of x."""
    mask = jnp.asarray(mask, bool)
    mask = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
    return jnp.broadcast_to(mask, x.shape)


def _mask_list(mask, count) -> list:
    """One mask (or None) per input, from what the model passes (None, or a list)."""
    return [None] * count if mask is None else list(mask)


class _ElementwiseMerge(Layer):
    """Base of the merges that combine inputs value by value, with Keras's broadcasting."""

    input_count = None  # an exact number of inputs, or None for any number from 1

    def sample_output_shape(self, input_shape):
        shapes = _shapes_of_list(self, input_shape, self.input_count)
        out = shapes[0]
        try:
            for shape in shapes[1:]:
                out = broadcast_shapes(out, shape)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error} Received input shapes "
                             f"{[_batched(s) for s in shapes]}") from None
        return out

    def compute_output_dtype(self, input_dtype) -> str:
        return "float32" if input_dtype is None else _common_dtype(input_dtype)

    def compute_mask(self, inputs, previous_mask=None):
        """The OR of the inputs' masks when every input has one, else no mask (Keras)."""
        masks = _mask_list(previous_mask, len(inputs))
        if any(m is None for m in masks):
            return None
        out = jnp.asarray(masks[0], bool)
        for m in masks[1:]:
            out = out | jnp.asarray(m, bool)
        return out

    def apply(self, params, state, x, mask=None, **_):
        x = _arrays_of_list(self, x)
        masks = _mask_list(mask, len(x))
        # As Keras: an input of lower rank gets axes of size 1 right after the batch axis.
        rank = max(v.ndim for v in x)
        x = [v.reshape(v.shape[:1] + (1,) * (rank - v.ndim) + v.shape[1:]) for v in x]
        if all(m is None for m in masks):
            return self.merge(x), state
        return self.merge_masked(x, [None if m is None else _full_mask(m, v)
                                     for m, v in zip(masks, x)]), state

    def merge(self, inputs):
        raise NotImplementedError

    def merge_masked(self, inputs, masks):
        """The merge when some inputs carry masks: the values of Add, Subtract and Average do
        not depend on them (Keras)."""
        return self.merge(inputs)


def _merge_substituting(op, inputs, masks):
    """Keras's rule for Maximum and Minimum, which have no neutral value: where an input is
    masked out, the running result stands in for it, and where the running result is masked
    out, the input does."""
    out, out_mask = inputs[0], masks[0]
    for x, mask in zip(inputs[1:], masks[1:]):
        if mask is not None:
            x = jnp.where(mask, x, out)
        if out_mask is not None:
            out = jnp.where(out_mask, out, x)
        out_mask = None if mask is None or out_mask is None else out_mask | mask
        out = op(out, x)
    return out


class Add(_ElementwiseMerge):
    """The sum of a list of tensors (e.g. a residual connection: `Add()([x, block(x)])`).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.Add()([np.ones((1, 3)), np.full((1, 3), 2.0)])).tolist()
        [[3.0, 3.0, 3.0]]
    """

    def merge(self, inputs):
        out = inputs[0]
        for v in inputs[1:]:
            out = out + v
        return out


class Subtract(_ElementwiseMerge):
    """inputs[0] - inputs[1], for a list of exactly two tensors.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.Subtract()([np.full((1, 2), 5.0), np.ones((1, 2))])).tolist()
        [[4.0, 4.0]]
    """

    input_count = 2

    def merge(self, inputs):
        return inputs[0] - inputs[1]


class Multiply(_ElementwiseMerge):
    """The elementwise product of a list of tensors (e.g. a gate: `Multiply()([x, g])`).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.Multiply()([np.full((1, 2), 3.0), np.full((1, 2), 2.0)])).tolist()
        [[6.0, 6.0]]
    """

    def merge(self, inputs):
        out = inputs[0]
        for v in inputs[1:]:
            out = out * v
        return out

    def merge_masked(self, inputs, masks):
        """Masked-out values count as 1 (Keras); when every input is masked, what no mask
        keeps is 0."""
        out = self.merge([x if m is None else jnp.where(m, x, jnp.ones((), x.dtype))
                          for x, m in zip(inputs, masks)])
        if all(m is not None for m in masks):
            kept = masks[0]
            for m in masks[1:]:
                kept = kept | m
            out = jnp.where(kept, out, jnp.zeros((), out.dtype))
        return out


class Average(_ElementwiseMerge):
    """The elementwise mean of a list of tensors (e.g. an ensemble of branches).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.Average()([np.zeros((1, 2)), np.full((1, 2), 3.0)])).tolist()
        [[1.5, 1.5]]
    """

    def compute_output_dtype(self, input_dtype) -> str:
        dtype = super().compute_output_dtype(input_dtype)
        return dtype if jnp.issubdtype(dtype, jnp.floating) else "float32"

    def merge(self, inputs):
        return sum(inputs[1:], inputs[0]) / len(inputs)


class Maximum(_ElementwiseMerge):
    """The elementwise maximum of a list of tensors.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.Maximum()([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])])).tolist()
        [[3.0, 5.0]]
    """

    def merge(self, inputs):
        out = inputs[0]
        for v in inputs[1:]:
            out = jnp.maximum(out, v)
        return out

    def merge_masked(self, inputs, masks):
        return _merge_substituting(jnp.maximum, inputs, masks)


class Minimum(_ElementwiseMerge):
    """The elementwise minimum of a list of tensors.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.Minimum()([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])])).tolist()
        [[1.0, 2.0]]
    """

    def merge(self, inputs):
        out = inputs[0]
        for v in inputs[1:]:
            out = jnp.minimum(out, v)
        return out

    def merge_masked(self, inputs, masks):
        return _merge_substituting(jnp.minimum, inputs, masks)


def _sample_axis(axis: int, rank: int, argument: str, what: str) -> int:
    """A Keras axis (the batch axis is 0) as an axis of a sample of `rank` axes."""
    sample = axis - 1 if axis >= 0 else rank + axis
    if axis == 0 or axis < -rank:
        raise ValueError(f"{argument} cannot name the batch axis: merging along it would mix "
                         f"samples. Use an axis from 1 to {rank} or from -1 to -{rank} for "
                         f"{what}. Received: {argument}={axis}")
    if sample >= rank:
        raise ValueError(f"{argument}={axis} is out of range for {what}: use an axis from 1 "
                         f"to {rank} or from -1 to -{rank}.")
    return sample


def _check_axis(value, argument: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{argument} must be an integer (an axis, counting the batch axis as "
                        f"0, as in Keras). Received: {argument}={value!r}")
    if value == 0:
        raise ValueError(f"{argument} cannot be 0, the batch axis: merging along it would mix "
                         f"samples. Received: {argument}={value!r}")
    return value


class Concatenate(Layer):
    """Joins a list of tensors along `axis`; all other sizes must match.

    Args:
        axis: the axis to join along, counting the batch axis as 0 (default -1, the last).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> y = layers.Concatenate()([np.zeros((2, 3)), np.ones((2, 1))])
        >>> y.shape, np.asarray(y)[0].tolist()
        ((2, 4), [0.0, 0.0, 0.0, 1.0])
    """

    config_keys = ("axis",)

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = _check_axis(axis, "axis")

    def sample_output_shape(self, input_shape):
        shapes = _shapes_of_list(self, input_shape)
        if len({len(s) for s in shapes}) != 1:
            raise ValueError(self._mismatch(shapes, "inputs of the same rank"))
        axis = _sample_axis(self.axis, len(shapes[0]), "axis", "these inputs")
        out = []
        for position, sizes in enumerate(zip(*shapes)):
            if position == axis:
                out.append(None if None in sizes else sum(sizes))
                continue
            known = {d for d in sizes if d is not None}
            if len(known) > 1:
                raise ValueError(self._mismatch(shapes, "the same sizes except on the "
                                                f"concatenation axis ({self.axis})"))
            out.append(known.pop() if known else None)
        return tuple(out)

    def _mismatch(self, shapes, needed):
        return (f"A Concatenate layer requires {needed}. Received input shapes "
                f"{[_batched(s) for s in shapes]}")

    def compute_output_dtype(self, input_dtype) -> str:
        return "float32" if input_dtype is None else _common_dtype(input_dtype)

    def apply(self, params, state, x, **_):
        x = _arrays_of_list(self, x)
        axis = _sample_axis(self.axis, x[0].ndim - 1, "axis", "these inputs") + 1
        return jnp.concatenate(x, axis=axis), state

    def compute_mask(self, inputs, previous_mask=None):
        """The masks joined as the values are (an unmasked input counts as all real), then
        reduced over the last axis, as Keras: along the steps, the steps' masks follow each
        other; along the features, a step is real where any input's is."""
        masks = _mask_list(previous_mask, len(inputs))
        if all(m is None for m in masks):
            return None
        full = [jnp.ones(x.shape, bool) if m is None else _full_mask(m, x)
                for x, m in zip(inputs, masks)]
        axis = _sample_axis(self.axis, inputs[0].ndim - 1, "axis", "these inputs") + 1
        return jnp.any(jnp.concatenate(full, axis=axis), axis=-1)


class Dot(Layer):
    """The dot product of two tensors along one axis of each, sample by sample.

    Args:
        axes: the axis to sum over, counting the batch axis as 0: one integer for both
            inputs, or a pair (axis of the first input, axis of the second).
        normalize: L2-normalize both inputs along those axes first, so that the result is
            the cosine similarity.

    The result has the first input's other axes, then the second's. When nothing is left
    (two vectors) it is one number per sample, of shape (batch, 1).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> a, b = np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])
        >>> np.asarray(layers.Dot(axes=1)([a, b])).tolist()
        [[11.0]]
    """

    config_keys = ("axes", "normalize")

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2:
                raise ValueError("axes must be one integer or a pair of them (an axis of each "
                                 f"input). Received: axes={axes!r}")
            axes = tuple(_check_axis(a, "axes") for a in axes)
        else:
            axes = _check_axis(axes, "axes")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True or False. Received: normalize={normalize!r}")
        self.axes = axes
        self.normalize = normalize

    def compute_mask(self, inputs, previous_mask=None):
        """No mask: a dot product over the steps has no steps left to mask (Keras)."""
        return None

    def _sample_axes(self, shapes) -> tuple[int, int]:
        pair = self.axes if isinstance(self.axes, tuple) else (self.axes, self.axes)
        return tuple(_sample_axis(a, len(s), "axes", f"an input of shape {_batched(s)}")
                     for a, s in zip(pair, shapes))

    def sample_output_shape(self, input_shape):
        shapes = _shapes_of_list(self, input_shape, count=2)
        if not all(shapes):
            raise ValueError("A Dot layer needs inputs with at least one axis besides the "
                             f"batch axis. Received input shapes {[_batched(s) for s in shapes]}")
        a1, a2 = self._sample_axes(shapes)
        (s1, s2), (d1, d2) = shapes, (shapes[0][a1], shapes[1][a2])
        if d1 is not None and d2 is not None and d1 != d2:
            raise ValueError(f"A Dot layer sums over axes of the same size, but axis "
                             f"{a1 + 1} of the first input has {d1} and axis {a2 + 1} of the "
                             f"second has {d2}. Received input shapes "
                             f"{[_batched(s) for s in shapes]} and axes={self.axes!r}")
        out = s1[:a1] + s1[a1 + 1:] + s2[:a2] + s2[a2 + 1:]
        return out or (1,)  # as Keras: a product of two vectors keeps one axis

    def compute_output_dtype(self, input_dtype) -> str:
        dtype = "float32" if input_dtype is None else _common_dtype(input_dtype)
        if self.normalize and not jnp.issubdtype(dtype, jnp.floating):
            return "float32"
        return dtype

    def apply(self, params, state, x, **_):
        x1, x2 = _arrays_of_list(self, x)
        a1, a2 = (a + 1 for a in self._sample_axes([x1.shape[1:], x2.shape[1:]]))
        if self.normalize:
            x1, x2 = _l2_normalize(x1, a1), _l2_normalize(x2, a2)
        # Batch axis against batch axis; the result is (batch, x1's other axes, x2's others).
        out = lax.dot_general(x1, x2, (((a1,), (a2,)), ((0,), (0,))))
        return (out.reshape(-1, 1) if out.ndim == 1 else out), state


def _l2_normalize(x, axis):
    """x / ||x|| along `axis`, as Keras: the norm is at least epsilon (zeros stay zeros)."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    inverse = lax.rsqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x * jnp.minimum(inverse, 1.0 / config.epsilon())


# -- Keras's functional forms: `add([a, b])` is `Add()([a, b])` ------------------------------------
def add(inputs, **kwargs):
    """`Add(**kwargs)(inputs)`.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.add([np.ones((1, 2)), np.ones((1, 2))])).tolist()
        [[2.0, 2.0]]
    """
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """`Subtract(**kwargs)(inputs)`."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """`Multiply(**kwargs)(inputs)`."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """`Average(**kwargs)(inputs)`."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """`Maximum(**kwargs)(inputs)`."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """`Minimum(**kwargs)(inputs)`."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """`Concatenate(axis=axis, **kwargs)(inputs)`."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, normalize=False, **kwargs):
    """`Dot(axes=axes, normalize=normalize, **kwargs)(inputs)`."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
