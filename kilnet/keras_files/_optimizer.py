"""A compiled model's compile configuration and optimizer state in Keras 3's layout, both ways.

Why a module of its own: Keras keeps the optimizer's variables as a flat list in the weights
file (`optimizer/vars/0` the step count, `optimizer/vars/1` the learning rate, then each
trainable variable's slots in the model's trainable-variable order), while kilnet keeps them as
Optax state trees shaped like the params. kilnet.optimizers.keras_variables maps one to the
other (the same list `optimizer.variables` shows) for the optimizers whose update kilnet
computes exactly as Keras does, so a model trained a few steps in one continues in the other as
it would have; this module reads and writes that list for a compiled model. A state that cannot
be mapped is left out with a warning, and training starts from a fresh state.
"""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _registry
from kilnet import losses as losses_lib
from kilnet import metrics as metrics_lib
from kilnet import optimizers as optimizers_lib
from kilnet.optimizers import keras_variables
# Keras's layout of the slots, and its refusal, as this module's callers read them
from kilnet.optimizers.keras_variables import (
    Unsupported, has_rate_variable, scalar_names, slot_names)
from kilnet.keras_files import _config
from kilnet.trainer import KerasState

PREFIX = "optimizer/vars/"
COMPILE_EXTRAS = {"run_eagerly": False, "steps_per_execution": 1, "jit_compile": True}


def _layout(trainer) -> keras_variables.KerasLayout:
    """Keras's list of the trainer's optimizer variables (Unsupported where Keras has none)."""
    adapter = KerasState(trainer)
    return keras_variables.KerasLayout(trainer.optimizer, adapter.trained_variables(),
                                       adapter.trainable_list, adapter.with_trainable_list)


def export_arrays(trainer) -> list:
    """The optimizer's variables as Keras lists them (kilnet.optimizers.keras_variables), as
    NumPy arrays: float32, the step count and Adafactor's placeholders int32. Host sync.
    Unsupported if unmappable."""
    values = _layout(trainer).values(trainer.state.opt_state)
    return [np.asarray(a, _keras_dtype(a)) for a in jax.device_get(values)]


def keras_variable_paths(trainer, name) -> list:
    """The paths Keras gives the optimizer variables export_arrays lists, in the same order
    ("adam/iteration", "adam/learning_rate", "adam/dense_kernel_momentum", ...): a legacy .h5
    file lists them so (Keras reads them back by position).

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _optimizer
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.compile(optimizer="adam", loss="mse")
        >>> model.compiled.ensure_state()
        >>> _optimizer.keras_variable_paths(model.compiled, "adam")[:3]
        ['adam/iteration', 'adam/learning_rate', 'adam/sequential_dense_kernel_momentum']
    """
    return [path for _, path in _layout(trainer).names(name)]


def _keras_dtype(value):
    """Keras's dtype of a slot: float32, or int32 for the step count and Adafactor's
    placeholders."""
    return np.int32 if jnp.issubdtype(value.dtype, jnp.integer) else np.float32


def expected_shapes(trainer) -> list:
    """The shapes `import_arrays` needs, in order (for checking a file before reading it):
    those of the state's own slots, which are the weights' shapes except Adafactor's factors
    (a row and a column mean) and placeholders (scalars)."""
    values = jax.eval_shape(_layout(trainer).values, trainer.state.opt_state)
    return [tuple(v.shape) for v in values]


def import_arrays(trainer, arrays):
    """Set the trainer's optimizer state from Keras's list (see export_arrays)."""
    optimizer, state = trainer.optimizer, trainer.state
    opt_state = _layout(trainer).state(state.opt_state, [jnp.asarray(a) for a in arrays])
    if keras_variables.has_rate_variable(optimizer):
        optimizer.learning_rate = float(arrays[1])
    else:   # the rate a schedule gives at Keras's step, as callbacks read it
        opt_state = optimizers_lib.set_learning_rate(
            opt_state, float(optimizer.learning_rate(int(arrays[0]))))
    # One step count fills several of Optax's counts: copies, as the compiled step donates
    # each leaf's buffer and cannot donate one buffer twice.
    trainer.state = state._replace(opt_state=jax.tree.map(jnp.array, opt_state))


def fresh_arrays(optimizer):
    """The variables Keras's optimizer holds before its first update (it makes its slots
    when built): the step count 0, then the learning rate unless a schedule gives it; None for
    an optimizer Keras does not have (an Optax transformation, a class of yours).

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _optimizer
        >>> [a.tolist() for a in _optimizer.fresh_arrays(kilnet.optimizers.Adam(0.5))]
        [0, 0.5]
    """
    name = type(optimizer).__name__
    if not isinstance(optimizer, optimizers_lib.Optimizer) or \
            optimizers_lib.OPTIMIZER_TYPES.get(name) is not type(optimizer):
        return None
    arrays = [np.asarray(0, np.int32)]
    if has_rate_variable(optimizer):
        arrays.append(np.asarray(float(optimizer.learning_rate), np.float32))
    return arrays


def keras_built(trainer) -> bool:
    """Whether Keras's optimizer would be built (hold its slots) where this compiled model's
    is: Keras builds it at its first update, so before that its files and load_weights know
    only the step count and learning rate. kilnet makes a state (of zeros) already at
    compile() of a built model, so its step count tells. An optimizer Keras lacks (its step
    count not where kilnet reads it) counts as built once its state exists."""
    if trainer.state is None:
        return False
    accumulation = optimizers_lib.accumulation_state(trainer.state.opt_state)
    return fresh_arrays(trainer.optimizer) is None or \
        optimizers_lib.step_count(trainer.state.opt_state) > 0 or \
        (accumulation is not None and int(accumulation.count) > 0)


def holds_more_once_built(optimizer) -> bool:
    """Whether Keras's optimizer makes variables when built (slots, use_ema's averages,
    Nadam's scalar), so that its variables before and after its first update differ in
    number; plain SGD keeps its step count and learning rate only."""
    return bool(slot_names(optimizer) or optimizer.use_ema or scalar_names(optimizer)
                or optimizer.gradient_accumulation_steps)


# -- the compile configuration, kilnet -> Keras -------------------------------------------------
def keras_compile_config(trainer) -> dict:
    """Keras's `compile_config` for a kilnet Trainer; Unsupported for what Keras cannot
    express (an Optax transformation, a loss or metric of the user's, a schedule).

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _optimizer
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(1)])
        >>> model.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
        >>> config = _optimizer.keras_compile_config(model.compiled)
        >>> config["optimizer"]["class_name"], config["loss"], config["metrics"]
        ('SGD', 'mse', ['mae'])
    """
    optimizer = trainer.optimizer
    if not isinstance(optimizer, optimizers_lib.Optimizer):
        raise Unsupported("the optimizer is an Optax transformation, which Keras does not have")
    name = type(optimizer).__name__
    if optimizers_lib.OPTIMIZER_TYPES.get(name) is not type(optimizer):
        raise Unsupported(f"the optimizer {name} is not one of kilnet's (Keras's) optimizers")
    try:
        config = optimizer.get_config()
    except ValueError as error:
        raise Unsupported(str(error)) from None
    if callable(optimizer.learning_rate):
        schedule = config["learning_rate"]
        if schedule["class_name"] not in optimizers_lib.schedules.SCHEDULES:
            raise Unsupported(f"the learning-rate schedule {schedule['class_name']} is yours, "
                              "not one of Keras's")
        config["learning_rate"] = _entry("keras.optimizers.schedules", schedule["class_name"],
                                         schedule["config"])
    elif trainer.state is not None:
        config["learning_rate"] = optimizers_lib.get_learning_rate(trainer.state.opt_state)
    return {"optimizer": _entry("keras.optimizers", name, {"name": optimizer.name, **config}),
            "loss": _objects(_names_kept(getattr(trainer, "given_loss", None), trainer.loss),
                             losses_lib.LOSS_TYPES, "keras.losses", "loss"),
            "loss_weights": trainer.loss_weights,
            "metrics": _objects(trainer.metric_ids or None, metrics_lib.METRIC_TYPES,
                                "keras.metrics", "metric"),
            "weighted_metrics": _objects(trainer.weighted_metric_ids or None,
                                         metrics_lib.METRIC_TYPES, "keras.metrics", "metric"),
            **COMPILE_EXTRAS}


def _names_kept(given, resolved):
    """compile()'s loss with the names it was given kept where Keras reads them (Keras writes
    compile's arguments as given, and a loaded model's `loss` reads 'mse' again), and a
    registered function of yours as given (written by its name); the rest as the resolved
    Loss objects."""
    if isinstance(given, str):
        return resolved if given in losses_lib.NOT_KERAS_NAMES else given
    if inspect.isroutine(given) and (isinstance(resolved, losses_lib.LossFunctionWrapper)
                                     or _config.keras_function_entry(given) is not None):
        return given   # a function of yours by its registered name; kilnet's as Keras's
    if isinstance(given, dict) and isinstance(resolved, dict):
        return {k: _names_kept(given.get(k), v) for k, v in resolved.items()}
    if isinstance(given, (list, tuple)) and isinstance(resolved, (list, tuple)) \
            and len(given) == len(resolved):
        return [_names_kept(g, r) for g, r in zip(given, resolved)]
    return resolved


def _entry(module, class_name, config):
    return {"module": module, "class_name": class_name, "config": config,
            "registered_name": None}


def _objects(value, types, module, what):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_objects(v, types, module, what) for v in value]
    if isinstance(value, dict):
        return {k: _objects(v, types, module, what) for k, v in value.items()}
    if inspect.isroutine(value):   # kilnet's, as Keras writes its own; else yours, by its
        own = _config.keras_function_entry(value)   # registered name, as Keras
        if own is not None and _registry.name_of(value) is None:
            return own
        try:
            return _registry.function_entry(value, what)
        except ValueError as error:
            raise Unsupported(str(error)) from None
    name = type(value).__name__
    if types.get(name) is not type(value):
        raise Unsupported(f"the {what} {value!r:.80} is not one of Keras's {what} classes")
    try:
        return _entry(module, name, value.get_config())
    except (ValueError, NotImplementedError) as error:
        raise Unsupported(str(error)) from None


def warn_left_out(path, reason, stacklevel=4):
    """Warn that a Keras file holds the model without (part of) its training setup."""
    warnings.warn(f"{path}: {reason}; the Keras file keeps the architecture and weights, "
                  "save as .kilnet to keep everything.", stacklevel=stacklevel)
