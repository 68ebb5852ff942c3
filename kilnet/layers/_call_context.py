"""What an error raised inside a layer's `call` says about that call, as Keras's does.

Why it exists: an error from deep inside your `call` (JAX's "cannot reshape array of shape
(3, 6, 8) into shape [24, 8]") does not say which layer failed or on what. Keras re-raises it
as the same kind of error with the layer's class and the arguments of the failing call
("Exception encountered when calling Switch.call(). ... Arguments received by Switch.call():
inputs=jnp.ndarray(shape=(3, 6, 8), dtype=float32)"); a layer of keras.io's Switch
Transformer that reshapes to a fixed batch, called with another batch size, fails that way in
both. Only the innermost failing call adds its context, as in Keras.
"""

from __future__ import annotations

import contextlib
import inspect

import jax

# The kinds of error given the call's context: Python's own, which take a message alone. Other
# kinds (JAX's concretization errors, KeyError's quoting, kilnet's errors with fields) are
# raised as they are, so that code catching them by kind still finds what it expects.
_EXPLAINED = (TypeError, ValueError, IndexError, RuntimeError)
# Longest description of one argument that is not an array (an option, a structure)
_MAX_ARGUMENT_CHARS = 200


@contextlib.contextmanager
def described_call(layer, args: tuple, kwargs: dict):
    """Run a block that calls `layer.call(*args, **kwargs)`: an error of one of Python's
    common kinds raised there comes out as the same kind, its message preceded by the call
    (`Exception encountered when calling Cls.call().`) and followed by the arguments it got.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> class Fixed(kilnet.layers.Layer):
        ...     def call(self, inputs):
        ...         return kilnet.ops.reshape(inputs, (4, 3))
        >>> try:
        ...     Fixed()(np.ones((1, 3), np.float32))
        ... except TypeError as error:
        ...     print(str(error).splitlines()[0])
        Exception encountered when calling Fixed.call().
    """
    try:
        yield
    except _EXPLAINED as error:
        if type(error) not in _EXPLAINED or getattr(error, "_kilnet_call_described", False):
            raise
        described = type(error)(_message(layer, args, kwargs, error))
        described._kilnet_call_described = True
        raise described.with_traceback(error.__traceback__) from None


def _message(layer, args, kwargs, error) -> str:
    name = f"{type(layer).__name__}.call()"
    message = error.args[0] if error.args else ""
    lines = [f"Exception encountered when calling {name}.", "", str(message)]
    arguments = _arguments(type(layer).call, layer, args, kwargs)
    if arguments:
        lines += ["", f"Arguments received by {name}:"] + [
            f"  • {key}={value}" for key, value in arguments]
    return "\n".join(lines)


def _arguments(call, layer, args, kwargs) -> list:
    """(name, description) of every parameter of `call` but self, as this call binds them
    (defaults included), or [] when the call cannot be bound to its signature."""
    try:
        signature = inspect.signature(call)
        bound = signature.bind(layer, *args, **kwargs)
    except (TypeError, ValueError):
        return []
    bound.apply_defaults()
    return [(key, _described(value)) for key, value in list(bound.arguments.items())[1:]]


def _described(value) -> str:
    """An argument as Keras's message shows it: an array (or a traced one) by its shape and
    dtype, a structure of them with each described, anything else by its repr (shortened)."""
    if isinstance(value, (list, tuple, dict)) and any(
            _is_array(leaf) for leaf in jax.tree.leaves(value)):
        return str(jax.tree.map(_described, value, is_leaf=_is_array))
    if _is_array(value):
        return f"jnp.ndarray(shape={tuple(value.shape)}, dtype={value.dtype})"
    text = repr(value)
    return text if len(text) <= _MAX_ARGUMENT_CHARS else text[:_MAX_ARGUMENT_CHARS] + "..."


def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")
