"""Optimizers a model or its layers keep as attributes (a GAN's `self.d_optimizer = Adam()`,
a block's `self.opt`), and their state in kilnet's own model files.

Why a module of its own: such optimizers are none of the compiled one, whose state the
training state holds; a training loop of yours builds them and updates their variables
(`optimizer.variables`: the step count, the learning rate, the slots). A `.kilnet` file keeps
those variables, so that a GAN resumed from it goes on from its optimizers' moments, as

    heldopt/<key path of the holder>/<attribute>/<i>   (the model's own: heldopt/<attribute>/<i>)

<i> the variable's place in `optimizer.variables`. Names follow where the optimizer is kept,
never its name, which a process numbers. An optimizer not built when saved (never used) has
nothing to keep: its configuration is your code's. Keras's weights files place the same
optimizers by Keras's walk instead (kilnet.keras_files._held_optimizers).
"""

from __future__ import annotations

import warnings

import jax
import numpy as np

from kilnet import optimizers as optimizers_lib
from kilnet._metric_held_layers import keyed_layers
from kilnet.errors import ModelFileError

PREFIX = "heldopt"


def held_optimizers(owner) -> list:
    """[(attribute name, optimizer)] of the optimizers `owner` (a model or layer) keeps as
    attributes other than a model's compiled one, by name, each once.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
        >>> model.g_optimizer = kilnet.optimizers.Adam()
        >>> [name for name, _ in held_optimizers(model)]
        ['g_optimizer']
    """
    compiled = getattr(owner, "compiled", None)
    found, seen = [], {id(compiled.optimizer if compiled is not None else None)}
    for name in sorted(vars(owner)):
        value = vars(owner)[name]
        if name.startswith("_") or not isinstance(value, optimizers_lib.Optimizer) or \
                id(value) in seen:
            continue
        seen.add(id(value))
        found.append((name, value))
    return found


def named_held_optimizers(model) -> list:
    """[(array name prefix, optimizer)] of the optimizers `model` and its layers keep as
    attributes, each once, where it is first reached.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2, name="d")])
        >>> model.g_optimizer = kilnet.optimizers.Adam()
        >>> model.layers[0].opt = kilnet.optimizers.SGD()
        >>> [name for name, _ in named_held_optimizers(model)]
        ['heldopt/g_optimizer', 'heldopt/d/opt']
    """
    found, seen = [], set()
    for path, layer in keyed_layers(model):
        for attribute, optimizer in held_optimizers(layer):
            if id(optimizer) not in seen:
                seen.add(id(optimizer))
                found.append(("/".join((PREFIX,) + tuple(path) + (attribute,)), optimizer))
    return found


def held_optimizer_tensors(model) -> dict:
    """{array name: host array} of the variables of the built optimizers `model` and its
    layers keep as attributes. Host sync.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
        >>> model.g_optimizer = kilnet.optimizers.SGD(0.5)
        >>> sorted(held_optimizer_tensors(model))   # not built: nothing to keep
        []
        >>> model.g_optimizer.build(model.trainable_variables)
        >>> sorted(held_optimizer_tensors(model))
        ['heldopt/g_optimizer/0', 'heldopt/g_optimizer/1']
    """
    entries = [(f"{prefix}/{index}", variable)
               for prefix, optimizer in named_held_optimizers(model) if optimizer.built
               for index, variable in enumerate(optimizer.variables)]
    values = jax.device_get([variable.value for _, variable in entries])
    return {name: np.asarray(value) for (name, _), value in zip(entries, values)}


def restore_held_optimizers(model, tensors, source) -> None:
    """Give the optimizers `model` and its layers keep as attributes their state from
    `tensors` (a file's arrays; names outside `heldopt/` are ignored): a built one now, one
    not yet built at its build (Optimizer.restore_variables, which skips state that does not
    fit, with a warning); arrays of optimizers the model does not keep (a compile() of yours
    that makes them not called yet) are skipped with a warning naming them.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
        >>> model.g_optimizer = kilnet.optimizers.SGD(0.5)
        >>> model.g_optimizer.build(model.trainable_variables)
        >>> restore_held_optimizers(model, {"heldopt/g_optimizer/0": np.int64(7),
        ...                                 "heldopt/g_optimizer/1": np.float32(0.5)}, "m.kilnet")
        >>> int(model.g_optimizer.iterations.numpy())
        7
    """
    stored = _stored_by_optimizer(tensors, source)
    for prefix, optimizer in named_held_optimizers(model):
        if prefix in stored:
            optimizer.restore_variables(stored.pop(prefix), source)
    if stored:
        warnings.warn(f"{source}: skipped the saved state of the optimizers kept at "
                      f"{sorted(stored)[:3]}, which the model does not keep (yet): call the "
                      "compile() of yours that makes them before loading, or load into a "
                      "model whose __init__ makes them.", stacklevel=3)


def _stored_by_optimizer(tensors, source) -> dict:
    """{array name prefix: [arrays in order]} of the `heldopt/` arrays of `tensors`."""
    by_prefix = {}
    for name, array in tensors.items():
        if name.split("/")[0] != PREFIX:
            continue
        prefix, _, index = name.rpartition("/")
        if not index.isdigit() or prefix == PREFIX:
            raise ModelFileError(source, f"it holds the array {name!r}; an optimizer's "
                                         "variables are named heldopt/<where it is kept>/<i>.")
        by_prefix.setdefault(prefix, {})[int(index)] = array
    return {prefix: [arrays[i] for i in sorted(arrays)] for prefix, arrays in by_prefix.items()}
