"""Python values passed positionally to a layer, and a tensor passed positionally as its
`training`: refused before the call, as Keras 3 refuses them, with the form to write instead.

Why it exists: keras.io's focal_modulation_network passes `block(x, height, width, channels)`
with Python ints. Keras 3 refuses it at once ("Only input tensors may be passed as positional
arguments"); kilnet used to trace the ints as arrays and fail deep in JAX ("Shapes must be 1D
sequences of concrete values"), or say that arguments it had been given were missing. Values
passed by keyword (`block(x, height=3, width=5)`) reach `call` as the Python values they are.
Only the arguments after the first are checked: the first is the input, which kilnet takes
as NumPy does (a Python number or nested list becomes an array).

keras.io's masking guide ends with `model(x, np.random.random(...))`: the array lands on a
functional model's `training` (Keras's Functional.call(inputs, training=None, mask=None)),
which Keras refuses ("got multiple values for argument 'training'") and kilnet used to ignore.
"""

from __future__ import annotations

import functools
import inspect

import jax

# The kinds of value that are options, not tensors. NumPy scalars and arrays are tensors to
# Keras (they have __array__) and stay allowed; None is "no tensor" and stays allowed.
_PYTHON_VALUES = (bool, int, float, complex, str, bytes)


def refuse_positional_values(layer_name: str, names, args: tuple) -> None:
    """Raise a ValueError naming the first Python value among `args[1:]` (the positional
    arguments after the input of a call whose call() takes `names` by position: the
    layer's `positional_call_names()`), with the keyword form to pass it by; return None
    when there is none.

    Example:
        >>> import numpy as np
        >>> names = ("x", "height", "width")
        >>> refuse_positional_values("block", names, (np.ones(2), np.ones(1)))
        >>> try:
        ...     refuse_positional_values("block", names, (np.ones(2), 3, 5))
        ... except ValueError as error:
        ...     print(str(error).split(". ")[0])
        Layer 'block' takes only tensors as positional arguments, as Keras does: its argument 'height' was given the Python value 3 (int)
    """
    for position, argument in enumerate(args[1:], start=1):
        value = _first_python_value(argument)
        if value is None:
            continue
        name = names[position] if position < len(names) else None
        which = repr(name) if name else f"number {position + 1} (the input is 1)"
        example = (f", e.g. {_keyword_form(layer_name, names, args)}" if name
                   else ", under the name its call() gives it")
        raise ValueError(
            f"Layer {layer_name!r} takes only tensors as positional arguments, as Keras does: "
            f"its argument {which} was given the Python value {value!r} "
            f"({type(value).__name__}). Pass it by keyword instead{example}; it then reaches "
            "call() as the Python value it is.")


def refuse_positional_training(layer_name: str, names, args: tuple) -> None:
    """Raise a TypeError when a positional argument after the input lands on `training` (by
    `names`, as for refuse_positional_values) and is not None: Keras refuses it, and a tensor
    there is most often a second input passed beside the first.

    Example:
        >>> import numpy as np
        >>> names = ("inputs", "training", "mask")
        >>> refuse_positional_training("model", names, (np.ones(2), None))
        >>> try:
        ...     refuse_positional_training("model", names, (np.ones(2), np.ones((2, 3))))
        ... except TypeError as error:
        ...     print(str(error).split(". ")[0])
        Layer 'model' takes a Python bool or None as its argument 'training' (the mode: True runs dropout and the like), not a tensor
    """
    position = names.index("training") if "training" in names else 0
    if position == 0 or position >= len(args) or args[position] is None:
        return
    raise TypeError(
        f"Layer {layer_name!r} takes a Python bool or None as its argument 'training' (the "
        "mode: True runs dropout and the like), not a tensor. Received: argument number "
        f"{position + 1}, which is 'training', was {described(args[position])}. "
        + several_inputs_hint(layer_name))


def described(value) -> str:
    """A value as an error message names it: an array by its shape and dtype.

    Example:
        >>> import numpy as np
        >>> described(np.ones((2, 3))), described("yes")
        ('an array of shape (2, 3) (float64)', "'yes' (str)")
    """
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)} ({getattr(value, 'dtype', '?')})"
    return f"{value!r:.60} ({type(value).__name__})"


def several_inputs_hint(layer_name: str) -> str:
    """The fix for a second input passed where `training` goes."""
    return (f"To give several inputs, pass them as one list or dict ({layer_name}([x1, x2])); "
            f"to set the mode, pass a bool by keyword ({layer_name}(x, training=True)).")


@functools.lru_cache(maxsize=None)
def positional_parameter_names(call) -> tuple:
    """The names of `call`'s parameters after `self` that can be given positionally (the
    input first). Cached per function: every eager call of a layer taking several tensors (an
    attention's query and value) asks it.

    Example:
        >>> def call(self, x, training=None, *, mask=None): ...
        >>> positional_parameter_names(call)
        ('x', 'training')
    """
    try:
        parameters = list(inspect.signature(call).parameters.values())[1:]
    except (TypeError, ValueError):
        return ()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in positional)


def _first_python_value(argument):
    for leaf in jax.tree.leaves(argument):
        if isinstance(leaf, _PYTHON_VALUES):
            return leaf
    return None


def _keyword_form(layer_name: str, names: list, args: tuple) -> str:
    """`layer(x, height=3, width=5)`: the call written with its values by keyword."""
    parts = ["x"]
    for position, argument in enumerate(args[1:], start=1):
        name = names[position] if position < len(names) else "..."
        is_value = _first_python_value(argument) is not None
        parts.append(f"{name}={argument!r}" if is_value else f"{name}=...")
    return f"{layer_name}({', '.join(parts)})"
