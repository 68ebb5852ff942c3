"""Python values passed positionally to a layer: refused before the call, as Keras 3 refuses
them, with the keyword form to write instead.

Why it exists: keras.io's focal_modulation_network passes `block(x, height, width, channels)`
with Python ints. Keras 3 refuses it at once ("Only input tensors may be passed as positional
arguments"); kilnet used to trace the ints as arrays and fail deep in JAX ("Shapes must be 1D
sequences of concrete values"), or say that arguments it had been given were missing. Values
passed by keyword (`block(x, height=3, width=5)`) reach `call` as the Python values they are.
Only the arguments after the first are checked: the first is the input, which kilnet takes
as NumPy does (a Python number or nested list becomes an array).
"""

from __future__ import annotations

import inspect

import jax

# The kinds of value that are options, not tensors. NumPy scalars and arrays are tensors to
# Keras (they have __array__) and stay allowed; None is "no tensor" and stays allowed.
_PYTHON_VALUES = (bool, int, float, complex, str, bytes)


def refuse_positional_values(layer_name: str, call, args: tuple) -> None:
    """Raise a ValueError naming the first Python value among `args[1:]` (the positional
    arguments after the input of a call to `call`, the layer's call method), with the keyword
    form to pass it by; return None when there is none.

    Example:
        >>> import numpy as np
        >>> def call(self, x, height, width): ...
        >>> refuse_positional_values("block", call, (np.ones(2), np.ones(1)))
        >>> try:
        ...     refuse_positional_values("block", call, (np.ones(2), 3, 5))
        ... except ValueError as error:
        ...     print(str(error).split(". ")[0])
        Layer 'block' takes only tensors as positional arguments, as Keras does: its argument 'height' was given the Python value 3 (int)
    """
    for position, argument in enumerate(args[1:], start=1):
        value = _first_python_value(argument)
        if value is None:
            continue
        # the signature is read only to word the error: every eager call of a layer taking
        # several tensors (an attention's query and value) passes through here
        names = _call_parameter_names(call)
        name = names[position] if position < len(names) else None
        which = repr(name) if name else f"number {position + 1} (the input is 1)"
        example = (f", e.g. {_keyword_form(layer_name, names, args)}" if name
                   else ", under the name its call() gives it")
        raise ValueError(
            f"Layer {layer_name!r} takes only tensors as positional arguments, as Keras does: "
            f"its argument {which} was given the Python value {value!r} "
            f"({type(value).__name__}). Pass it by keyword instead{example}; it then reaches "
            "call() as the Python value it is.")


def _first_python_value(argument):
    for leaf in jax.tree.leaves(argument):
        if isinstance(leaf, _PYTHON_VALUES):
            return leaf
    return None


def _call_parameter_names(call) -> list:
    """The names of `call`'s parameters after `self` that can be given positionally."""
    try:
        parameters = list(inspect.signature(call).parameters.values())[1:]
    except (TypeError, ValueError):
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in positional]


def _keyword_form(layer_name: str, names: list, args: tuple) -> str:
    """`layer(x, height=3, width=5)`: the call written with its values by keyword."""
    parts = ["x"]
    for position, argument in enumerate(args[1:], start=1):
        name = names[position] if position < len(names) else "..."
        is_value = _first_python_value(argument) is not None
        parts.append(f"{name}={argument!r}" if is_value else f"{name}=...")
    return f"{layer_name}({', '.join(parts)})"
