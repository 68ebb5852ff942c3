"""Lambda: a Python function as a layer, as keras.layers.Lambda.

Why it differs from Keras in files: Keras saves a Lambda's function as marshalled bytecode
(which its own safe mode then refuses to load); kilnet never writes or runs code from a file.
A Lambda whose function is registered (`kilnet.saving.register_serializable`) is saved by that
name and loads wherever the program registers it again. Any other Lambda trains, predicts,
clones and saves its weights; saving the whole model says how to make it savable.
"""

from __future__ import annotations

import inspect

import jax
import numpy as np

from kilnet import _registry
from kilnet.layers._base import Layer, is_shape
from kilnet.layers._node import KerasTensor, trace_symbolic


class Lambda(Layer):
    """Wraps `function(inputs, **arguments)` as a layer: `Lambda(lambda x: x ** 2)`.

    Args:
        function: called with the layer's input (a tensor, or a list for several) and
            `arguments`; also with `mask=` and `training=` when it takes them. Write it with
            `kilnet.ops` or operators.
        output_shape: the output shape without the batch axis (a tuple), or a function of the
            whole input shape giving the whole output shape; found by tracing when None.
        mask: None (no sequence mask is passed on), a function `(inputs, mask) -> mask`, or a
            fixed mask.
        arguments: keyword arguments for `function`.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)),
        ...                            kilnet.layers.Lambda(lambda x: x ** 2)])
        >>> model.predict(np.array([[1.0, 2.0, 3.0]]), verbose=0).tolist()
        [[1.0, 4.0, 9.0]]
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        self.function = _function(function, "function")
        self.output_shape = (_function(output_shape, "output_shape") if isinstance(
            output_shape, str) or callable(output_shape) else _shape(output_shape))
        self.mask = _function(mask, "mask") if isinstance(mask, str) or callable(mask) else (
            None if mask is None else np.asarray(mask))
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"arguments must be a dict of keyword arguments for the function. "
                            f"Received: arguments={arguments!r:.100}")
        self.arguments = dict(arguments or {})
        self.supports_masking = mask is not None
        names = _parameter_names(self.function)
        self._takes = {"mask": "mask" in names, "training": "training" in names}

    def run(self, inputs, mask=None, training=False):
        """`function(inputs, **arguments)`, with mask and training where it takes them."""
        kwargs = dict(self.arguments)
        for key, value in (("mask", mask), ("training", training)):
            if self._takes[key]:
                kwargs[key] = value
        return self.function(inputs, **kwargs)

    def apply(self, params, state, inputs, training=False, rng=None, sample_mask=None,
              mask=None, **_):
        return self.run(inputs, mask=mask, training=training), state

    def compute_mask(self, inputs, previous_mask=None):
        if callable(self.mask):
            return self.mask(inputs, previous_mask)
        return self.mask

    # -- shapes: given, or traced --------------------------------------------------------------
    def sample_output_shape(self, input_shape):
        if callable(self.output_shape):   # Keras: whole shapes, batch axis included
            return tuple(self.output_shape((None,) + tuple(input_shape)))[1:]
        if self.output_shape is not None:
            return self.output_shape
        traced = self._traced(input_shape)
        if isinstance(traced, (list, tuple)):
            return [t.sample_shape for t in traced]
        return traced.sample_shape

    def compute_output_dtype(self, input_dtype) -> str:
        if self.output_shape is not None or self.build_shape is None:
            return self.compute_dtype
        return jax.tree.leaves(self._traced(self.build_shape),
                               is_leaf=lambda t: isinstance(t, KerasTensor))[0].dtype

    def init(self, rng, input_shape):
        return {}, {}, None if input_shape is None else self.sample_output_shape(input_shape)

    def _traced(self, input_shape):
        """The function's outputs as symbolic tensors, for inputs of this shape (per sample)
        and the dtypes seen (float32 where none were)."""
        dtypes = self.build_dtype if self.build_dtype is not None else jax.tree.map(
            lambda _: "float32", input_shape, is_leaf=is_shape)
        inputs = jax.tree.map(lambda s, d: KerasTensor((None,) + tuple(s), d), input_shape,
                              dtypes, is_leaf=is_shape)
        try:
            return trace_symbolic(lambda x: self.run(x), (inputs,), {})
        except ValueError as error:
            raise ValueError(f"the Lambda layer's function: {error}. Give output_shape=, or "
                             "write a Layer subclass") from None

    # -- configuration: functions by registered name only ---------------------------------------
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(function=_saved(self.function), arguments=self.arguments)
        if self.output_shape is not None:
            config["output_shape"] = (_saved(self.output_shape) if callable(self.output_shape)
                                      else list(self.output_shape))
        if self.mask is not None:
            config["mask"] = _saved(self.mask) if callable(self.mask) else self.mask.tolist()
        return config


def _function(value, argument):
    """A callable, or one registered under the name `value` (what a file holds)."""
    if isinstance(value, str):
        found = _registry.lookup(value)
        if found is None or not callable(found):
            raise ValueError(f"Lambda: {argument}={value!r} names no function registered with "
                             "kilnet.saving.register_serializable in this program. Register "
                             "it (the same package and name) before loading.")
        return found
    if not callable(value):
        raise TypeError(f"Lambda: {argument} must be a function. Received: {value!r:.100}")
    return value


def _saved(function):
    """A function in a configuration: its registered name, else the function itself, which
    lives in memory (clone_model) but cannot be written to a file."""
    return _registry.name_of(function) or function


def _shape(value):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(
            d is None or isinstance(d, int) and not isinstance(d, bool) and d >= 0
            for d in value):
        raise ValueError("output_shape must be a tuple of lengths without the batch axis, or "
                         f"a function of the input shape. Received: output_shape={value!r:.100}")
    return tuple(value)


def _parameter_names(function) -> set:
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):   # a builtin without a signature: inputs only
        return set()
