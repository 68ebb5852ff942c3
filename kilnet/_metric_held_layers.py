"""The layers a Metric kept as an attribute holds (keras.io's DDIM keeps a KID metric holding an
InceptionV3 encoder), and their weights by name, for kilnet's own files and checkpoints.

Why a module of its own: such layers are none of the model's sub-layers, so their weights are
in neither the model's trees nor its training state, yet a `.kilnet` file and a training
checkpoint must keep them: a loaded or resumed model would otherwise compute the metric with
another encoder. Model files, weights files and checkpoints name them all here, as

    held/<kind>/<metric>/<attribute>/.../<layer path>/<weight>

<kind> "params" or "state" as for the model's own arrays; <metric> where the metric is kept:
the key path of the sub-layer keeping it (none for the model itself), then the attribute
holding it (a list's or dict's entry by position or key); then the metric's attributes down to
the layer. Names follow attributes, never the metric's name, which a process numbers
(`kid_1` in a second model of one class), so two models of one class share them. A metric's
own state (its accumulators) is none of these: as in Keras's files, it is not kept.

The walk of a metric's attributes is this module's (`metric_attributes`, `walk_attribute`);
Keras's weights-file layout (kilnet.keras_files) walks them with it.
"""

from __future__ import annotations

import functools
import warnings

import jax
import numpy as np

from kilnet.layers import Layer
from kilnet.metrics import Metric

PREFIX = "held"
# Every kilnet Metric has these: its state and bookkeeping, no layer of yours. Named, so that
# making it takes no number from the process's count of unnamed metrics (`metric`, `metric_1`)
METRIC_BASE_ATTRIBUTES = frozenset(vars(Metric(name="metric")))


class HeldWeightsError(ValueError):
    """The held-layer arrays of a file or checkpoint do not fit the model's held layers."""


def held_layers(model) -> list:
    """(key path, layer) for each layer held by a Metric that `model` or one of its layers
    keeps as an attribute, in the order they are reached; a layer that is also one of the
    model's own is left out (its weights are the model's).

    Example:
        >>> import kilnet
        >>> class Kid(kilnet.metrics.Metric):
        ...     def __init__(self):
        ...         super().__init__(name="kid")
        ...         self.encoder = kilnet.Sequential([kilnet.Input((2,)),
        ...                                           kilnet.layers.Dense(1, name="d")])
        >>> class Net(kilnet.Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.dense = kilnet.layers.Dense(1)
        ...         self.kid = Kid()
        ...     def call(self, x):
        ...         return self.dense(x)
        >>> [path for path, _ in held_layers(Net())]
        [('kid', 'encoder')]
    """
    own = {id(layer) for _, layer in keyed_layers(model)}
    found, seen = [], set(own)
    for path, layer in keyed_layers(model):
        for attribute_path, metric in _metrics_by_attribute(layer):
            _walk_metric(metric, path + attribute_path, found, seen)
    return found


def held_weight_entries(model) -> list:
    """(array name, Variable) for every weight of `held_layers(model)`, in order; a held
    model whose input shapes are known is built first, as Keras has its weights from its
    construction.

    Example:
        >>> import kilnet
        >>> class Kid(kilnet.metrics.Metric):
        ...     def __init__(self):
        ...         super().__init__(name="kid")
        ...         self.encoder = kilnet.Sequential([kilnet.Input((2,)),
        ...                                           kilnet.layers.Dense(1, name="d")])
        >>> class Net(kilnet.Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.kid = Kid()
        ...     def call(self, x):
        ...         return x
        >>> [name for name, _ in held_weight_entries(Net())]
        ['held/params/kid/encoder/d/kernel', 'held/params/kid/encoder/d/bias']
    """
    entries, names = [], set()
    for path, layer in held_layers(model):
        if hasattr(layer, "build_if_shapes_known"):
            layer.build_if_shapes_known()
        for weight_path, kind, variable in layer.variable_paths(path):
            name = f"{PREFIX}/{kind}/{'/'.join(weight_path)}"
            if name in names:
                raise ValueError(f"Two weights held by metrics would be saved under the name "
                                 f"{name!r}; give the layers the metrics hold distinct names.")
            names.add(name)
            entries.append((name, variable))
    return entries


def held_tensors(model) -> dict:
    """{array name: host array} of the weights `held_weight_entries` lists. Host sync."""
    entries = held_weight_entries(model)
    values = jax.device_get([variable.value for _, variable in entries])
    return {name: np.asarray(value) for (name, _), value in zip(entries, values)}


def checked_held(model, tensors) -> list:
    """(Variable, array) for each weight of the held layers, from `tensors` (a file's or
    checkpoint's arrays; names outside `held/` are ignored), all checked and none set: each
    weight present with its shape and dtype, and no held array left unused. HeldWeightsError
    otherwise. Callers check before they change anything, then assign.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
        >>> checked_held(model, {})   # no metric holding layers: nothing to set
        []
    """
    given = {name: array for name, array in tensors.items()
             if name.split("/")[0] == PREFIX}
    entries = held_weight_entries(model)
    for name, variable in entries:
        if name not in given:
            raise HeldWeightsError(f"the array {name!r} of a layer a metric holds is missing")
        found = given[name]
        if (found.shape, found.dtype) != (tuple(variable.shape), np.dtype(variable.dtype)):
            raise HeldWeightsError(f"the array {name!r} has shape {found.shape} and dtype "
                                   f"{found.dtype}; the layer a metric holds needs "
                                   f"{tuple(variable.shape)} {np.dtype(variable.dtype)}")
    extra = sorted(set(given) - {name for name, _ in entries})
    if extra:
        raise HeldWeightsError(f"it holds arrays for layers held by metrics that this model's "
                               f"metrics do not hold: {extra[:3]}")
    return [(variable, given[name]) for name, variable in entries]


def assign_held(model, pairs) -> None:
    """Set the held layers' weights from `pairs` (what `checked_held` returned) and have the
    model's compiled programs traced again: they read these weights as constants, being none
    of the training state they are given.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
        >>> assign_held(model, checked_held(model, {}))   # nothing to set
    """
    if not pairs:
        return
    for variable, array in pairs:
        variable.assign(array)
    retrace_after_held_change(model)


def retrace_after_held_change(model) -> None:
    """Have `model`'s compiled programs traced again when its metrics hold layers, whose
    weights were just set (by this module, or by a Keras weights file's loader): the
    programs read those weights as constants, being none of the training state.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
        >>> retrace_after_held_change(model)   # no metric holds layers: nothing to redo
    """
    trainer = getattr(model, "compiled", None)
    if trainer is not None and held_layers(model):
        trainer.drop_compiled_programs()


def has_held_arrays(tensors) -> bool:
    """Whether a file's or checkpoint's arrays include any for layers a metric holds (one
    written before kilnet kept them has none).

    Example:
        >>> has_held_arrays({"params/dense/kernel": None, "held/params/kid/encoder/d/bias": None})
        True
    """
    return any(name.split("/")[0] == PREFIX for name in tensors)


def warn_not_kept(model, source) -> None:
    """Warn, when `model`'s metrics hold layers, that `source` (a file or checkpoint written
    before kilnet kept their weights) has none for them, so they keep their present values.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
        >>> warn_not_kept(model, "m.kilnet")   # no metric holds layers: nothing to say
    """
    if held_weight_entries(model):
        warnings.warn(f"{source} holds no weights for the layers this model's metrics hold "
                      "(an earlier kilnet did not keep them): they keep the values they have "
                      "now.", stacklevel=3)


def metric_attributes(metric) -> dict:
    """{attribute: value} of the attributes of `metric` that are yours (the layers and metrics
    a KID-like metric holds), without the state and bookkeeping every Metric has. This module
    and Keras's weights-file layout (kilnet.keras_files) walk these.

    Example:
        >>> import kilnet
        >>> class Kid(kilnet.metrics.Metric):
        ...     def __init__(self):
        ...         super().__init__(name="kid")
        ...         self.encoder = kilnet.layers.Dense(1)
        >>> list(metric_attributes(Kid()))
        ['encoder']
    """
    return {name: value for name, value in vars(metric).items()
            if name not in METRIC_BASE_ATTRIBUTES}


def walk_attribute(value, path, seen) -> list:
    """(key path, item) for each Layer or Metric in an attribute's `value`, itself or inside
    lists, tuples and dicts (entries keyed by position or key), in order. Containers already
    in `seen` (ids) are skipped and those walked are added, so a list that holds itself ends.

    Example:
        >>> import kilnet
        >>> dense = kilnet.layers.Dense(1)
        >>> blocks = [dense, {"m": kilnet.metrics.Mean(name="m")}]
        >>> blocks.append(blocks)
        >>> [(path, type(item).__name__) for path, item in walk_attribute(blocks, ("b",), set())]
        [(('b', '0'), 'Dense'), (('b', '1', 'm'), 'Mean')]
    """
    if isinstance(value, (Layer, Metric)):
        return [(path, value)]
    if not isinstance(value, (list, tuple, dict)) or id(value) in seen:
        return []
    seen.add(id(value))
    keyed = value.items() if isinstance(value, dict) else enumerate(value)
    return [found for key, item in keyed
            for found in walk_attribute(item, path + (str(key),), seen)]


@functools.cache
def layer_base_attributes() -> frozenset:
    """The attributes every kilnet layer and model has: its bookkeeping, never a place of
    yours, so neither held names here nor Keras's weights-file layout (kilnet.keras_files)
    walk them, and names never depend on what kilnet keeps there.

    Example:
        >>> "_held_metrics" in layer_base_attributes(), "encoder" in layer_base_attributes()
        (True, False)
    """
    # imported here: kilnet.models imports saving, which imports this module
    from kilnet.models import Model
    return frozenset(vars(Layer())) | frozenset(vars(Model()))


def keyed_layers(model) -> list:
    """(key path, layer) for the model (path ()) and every layer it holds, once each: the
    objects whose attributes kilnet's files search for what they keep (the metrics here, the
    optimizers in kilnet._optimizer_attributes).

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1, name="d")])
        >>> [path for path, _ in keyed_layers(model)]
        [(), ('d',)]
    """
    found, seen = [], set()

    def visit(layer, path):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        found.append((path, layer))
        for key, sub in layer.keyed_sublayers():
            visit(sub, path + (key,))

    visit(model, ())
    return found


def _metrics_by_attribute(layer) -> list:
    """(attribute path, metric) for each metric `layer` keeps as an attribute, named by where
    it is kept (`kid`, `trackers/0`), not by its name, which a process numbers (`kid_1` in a
    second model of one class) and so would not match between two models."""
    own = {id(metric) for metric in layer.own_metrics}
    found, seen = [], set()
    for attribute, value in vars(layer).items():
        if attribute in layer_base_attributes():
            continue
        for path, item in walk_attribute(value, (attribute,), seen):
            if isinstance(item, Metric) and id(item) in own:
                found.append((path, item))
    return found


def _walk_metric(metric, path, found, seen) -> None:
    """The layers a metric's own attributes hold (inside lists, dicts and metrics too)."""
    if id(metric) in seen:
        return
    seen.add(id(metric))
    for attribute, value in metric_attributes(metric).items():
        for item_path, item in walk_attribute(value, path + (attribute,), seen):
            if isinstance(item, Metric):
                _walk_metric(item, item_path, found, seen)
            elif id(item) not in seen:
                seen.add(id(item))
                found.append((item_path, item))
