"""x and y as users give them (one array, a list, a dict by name) and as the compiled
programs take them: one array per model input, one label array per output that is trained.

A single input or label stays a bare array all the way to the programs (the seed job's path
does not change); several travel as a tuple, in the model's input order and the objective's
target order (kilnet.objective).
"""

from __future__ import annotations

import jax
import numpy as np

from kilnet import data as data_lib
from kilnet.errors import InputError


def inputs_of(model, x, argument: str = "x") -> list:
    """x as a list with one entry per model input (names from model.input_names)."""
    specs = model.input_specs
    if specs is None and isinstance(x, dict) and getattr(model, "takes_keyed_inputs", False):
        return [x[key] for key in sorted(x)]   # its call takes the dict (see sample_batch)
    if specs is None or len(specs) == 1:
        if isinstance(x, dict):
            if specs is not None and len(x) == 1 and model.input_names[0] in x:
                return [x[model.input_names[0]]]
            raise InputError(f"{argument} is a dict but the model has one input"
                             + (f" named {model.input_names[0]!r}" if specs else "")
                             + f". Received: {argument} with keys {sorted(map(str, x))}")
        if (specs is not None and isinstance(x, (list, tuple)) and len(x) == 1
                and len(getattr(x[0], "shape", ())) == len(specs[0].shape) + 1):
            return [x[0]]   # [array] for a model of one input (made with inputs=[...]), as Keras
        if (specs is None and isinstance(x, (list, tuple)) and len(x) > 1
                and all(len(getattr(item, "shape", ())) >= 1 for item in x)):
            return list(x)   # a subclassed model's inputs, one array each (Keras's structure)
        return [x]
    names = model.input_names
    if isinstance(x, dict):
        return _from_dict(x, names, argument, "inputs")
    if isinstance(x, (list, tuple)) and not _looks_like_one_array(x, len(names)):
        if len(x) != len(names):
            raise InputError(f"The model has {len(names)} inputs {names}; {argument} must give "
                             f"one array for each, in a list or a dict by name. Received: a "
                             f"{type(x).__name__} of {len(x)}")
        return list(x)
    raise InputError(f"The model has {len(names)} inputs {names}; {argument} must give one "
                     f"array for each, e.g. {argument}={{{names[0]!r}: ..., {names[1]!r}: ...}}. "
                     f"Received: {type(x).__name__}")


def targets_of(objective, y, argument: str = "y", own_step: bool = False) -> list:
    """y as a list with one label array per output that has a loss or metrics. `own_step`:
    the model's own train_step / test_step reads y, so with no loss or metric to say which
    outputs have labels, y is kept as given (Keras's JAX guide compiles with no loss)."""
    heads = objective.targets
    names = [h.name for h in heads]
    if not heads:   # no loss or metric reads labels (a model trained on its add_loss terms)
        if own_step and isinstance(y, dict):
            raise InputError(
                f"With no loss or metric in compile(), {argument} goes to the model's own step "
                "as an array or a list of arrays, not a dict (no output is named by a loss). "
                f"Pass a list in the outputs' order. Received: {argument} with keys "
                f"{sorted(map(str, y))}")
        if own_step and y is not None:
            return list(y) if isinstance(y, (list, tuple)) else [y]
        return []
    if len(heads) == 1:
        if isinstance(y, dict):
            if names[0] in y:
                return [y[names[0]]]
            raise InputError(f"{argument} is a dict but no key is the trained output's name "
                             f"{names[0]!r}. Received: {argument} with keys {sorted(map(str, y))}")
        if isinstance(y, (list, tuple)) and len(y) == len(objective.heads) and \
                len(objective.heads) > 1 and not _looks_like_one_array(y, len(objective.heads)):
            return [y[heads[0].index]]
        return [y]
    if isinstance(y, dict):
        return _from_dict(y, names, argument, "outputs with a loss")
    if isinstance(y, (list, tuple)) and not _looks_like_one_array(y, len(objective.heads)):
        if len(y) == len(objective.heads):  # one entry per output: keep those trained
            return [y[h.index] for h in heads]
        if len(y) == len(heads):
            return list(y)
        raise InputError(f"The model has {len(objective.heads)} outputs; {argument} must give "
                         f"labels for {names}, in a list or a dict by name. Received: a "
                         f"{type(y).__name__} of {len(y)}")
    raise InputError(f"The model has {len(heads)} trained outputs {names}; {argument} must give "
                     f"labels for each, e.g. {argument}={{{names[0]!r}: ..., {names[1]!r}: ...}}. "
                     f"Received: {type(y).__name__}")


def sample_batch(model, x, xs: list):
    """A batch of one sample of inputs_of(model, x), abstractly (jax.ShapeDtypeStruct, in
    the dtype each array has on the device), as build(one_batch) takes it, so that the
    model is built for the data's shapes and traced on its dtypes (integer ids stay
    integers): one array, a list, or a dict by key when the model's call takes x as a dict
    (a subclassed model; its Keras form `call(inputs)` then reads inputs["title"])."""
    specs = [jax.ShapeDtypeStruct((1,) + tuple(np.shape(a)[1:]), data_lib.device_dtype(
        np.asarray(a[:1]))) for a in xs]
    if isinstance(x, dict) and getattr(model, "takes_keyed_inputs", False) and not isinstance(
            model.input_specs, list):
        return dict(zip(sorted(x), specs))
    return specs[0] if len(specs) == 1 else specs


def pack(arrays: list):
    """What the programs take: the array itself for one, a tuple for several."""
    return arrays[0] if len(arrays) == 1 else tuple(arrays)


def unpack(data) -> list:
    return list(data) if isinstance(data, tuple) else [data]


def input_argument_names(model, count: int, argument: str = "x") -> list[str]:
    """How messages name each of `count` inputs: by the model's input names, or (a
    subclassed model not built yet, given several arrays) by position."""
    names = model.input_names or (["x"] if count == 1 else [str(i) for i in range(count)])
    return argument_names(argument, names)


def argument_names(argument: str, names: list) -> list[str]:
    """How error messages name each entry: x, or x['title'] for several."""
    return [argument] if len(names) == 1 else [f"{argument}[{n!r}]" for n in names]


def _from_dict(data: dict, names: list, argument: str, what: str) -> list:
    missing = [n for n in names if n not in data]
    if missing:
        raise InputError(f"{argument} must have one entry per model {what} {names}; missing "
                         f"{missing}. Received: {argument} with keys {sorted(map(str, data))}")
    return [data[n] for n in names]


def _looks_like_one_array(value, count: int) -> bool:
    """A list of numbers (one array written as nested lists) rather than a list of arrays."""
    if not value:
        return True
    first = value[0]
    return not hasattr(first, "shape") and not isinstance(first, (list, tuple, dict))
