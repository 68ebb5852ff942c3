"""The layers a Metric kept as an attribute holds (keras.io's DDIM keeps a KID metric holding an
InceptionV3 encoder), and their weights by name, for kilnet's own files and checkpoints.

Why a module of its own: such layers are none of the model's sub-layers, so their weights are
in neither the model's trees nor its training state, yet a `.kilnet` file and a training
checkpoint must keep them: a loaded or resumed model would otherwise compute the metric with
another encoder. Model files, weights files and checkpoints name them all here, as

    held/<kind>/<metric>/<attribute>/.../<layer path>/<weight>

<kind> "params" or "state" as for the model's own arrays; <metric> the metric's name (numbered
apart, `kid_1`, where two metrics one layer keeps share a name), after the path of the
sub-layer keeping it when that is not the model itself; then the metric's attributes down to
the layer (a list's or dict's entries by position or key). A metric's own state (its
accumulators) is none of these: as in Keras's files, it is not kept.
"""

from __future__ import annotations

import jax
import numpy as np

from kilnet.layers import Layer
from kilnet.metrics import Metric

PREFIX = "held"
# Every kilnet Metric has these: its state and bookkeeping, no layer of yours
_METRIC_BASE_ATTRIBUTES = frozenset(vars(Metric()))


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
    own = {id(layer) for _, layer in _layers_of(model)}
    found, seen = [], set(own)
    for path, layer in _layers_of(model):
        for key, metric in _keyed(layer.own_metrics):
            _walk_metric(metric, path + (key,), found, seen)
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
                                 f"{name!r}; give the metrics or their layers distinct names.")
            names.add(name)
            entries.append((name, variable))
    return entries


def held_tensors(model) -> dict:
    """{array name: host array} of the weights `held_weight_entries` lists. Host sync."""
    entries = held_weight_entries(model)
    values = jax.device_get([variable.value for _, variable in entries])
    return {name: np.asarray(value) for (name, _), value in zip(entries, values)}


def assign_held(model, tensors) -> None:
    """Set the held layers' weights from `tensors` (a file's or checkpoint's arrays; names
    outside `held/` are ignored), all checked before any is set: each weight present with its
    shape and dtype, and no held array left unused. HeldWeightsError otherwise.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
        >>> assign_held(model, {})   # no metric holding layers: nothing to set
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
    for name, variable in entries:
        variable.assign(given[name])


def _layers_of(model) -> list:
    """(key path, layer) for the model (path ()) and every layer it holds, once each."""
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


def _keyed(metrics) -> list:
    """(key, metric): each metric under its name, numbered apart where names repeat."""
    used, keyed = set(), []
    for metric in metrics:
        key, n = metric.name, 0
        while key in used:
            n += 1
            key = f"{metric.name}_{n}"
        used.add(key)
        keyed.append((key, metric))
    return keyed


def _walk_metric(metric, path, found, seen) -> None:
    """The layers a metric's own attributes hold (inside lists, dicts and metrics too)."""
    if id(metric) in seen:
        return
    seen.add(id(metric))
    for attribute, value in vars(metric).items():
        if attribute not in _METRIC_BASE_ATTRIBUTES:
            _walk_value(value, path + (attribute,), found, seen)


def _walk_value(value, path, found, seen) -> None:
    if isinstance(value, Layer):
        if id(value) not in seen:
            seen.add(id(value))
            found.append((path, value))
    elif isinstance(value, Metric):
        _walk_metric(value, path, found, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk_value(item, path + (str(key),), found, seen)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _walk_value(item, path + (str(index),), found, seen)
