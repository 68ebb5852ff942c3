"""Weight and activity penalties with Keras's names: `L1`, `L2`, `L1L2` ("l1", "l2", "l1_l2").

Why a module of its own: a regularizer is a small configurable object that layers hold, save in
their configs and call on a weight (or an output) to get a scalar added to the training loss.
Layers add those scalars with `kilnet._scope.add_loss` inside `apply`, so the compiled step
collects them exactly as Keras adds `model.losses`. Every layer does it the same way,
`add_layer_penalties`, which finds each weight's regularizer by its name
(`Layer.regularizer_for`: Keras's `<weight>_regularizer` arguments, or
`add_weight(regularizer=)`):

- a weight penalty once per step (a layer called twice is penalized once, as Keras counts each
  weight once), not scaled by the batch size, and only while the layer is trainable (Keras
  penalizes `trainable_weights`);
- an activity penalty on the layer's output, divided by the batch size as Keras 3 divides it
  (`add_activity_penalty`); kilnet counts only the real samples of a padded last batch, which
  is what Keras sees on its shorter last batch.

In a saved config a regularizer is Keras's entry `{"module": "keras.regularizers", "class_name":
"L2", "config": {"l2": 0.01}, "registered_name": None}`, rebuilt by `get` from this module's own
classes and registered subclasses only (a file never names code to import).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _scope, _small_objects
from kilnet.ops import nn as ops_nn


def _factor(value, argument: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or value != value or value == float("inf"):
        raise ValueError(f"{argument} must be a non-negative finite number. "
                         f"Received: {argument}={value!r}")
    return float(value)


class Regularizer(_small_objects.SmallObject):
    """Base class: `regularizer(x)` returns a scalar penalty of the array `x`.

    Example:
        >>> import numpy as np
        >>> from kilnet import regularizers
        >>> float(regularizers.Regularizer()(np.ones((2, 2))))
        0.0
    """

    def __call__(self, x):
        return jnp.zeros((), jnp.float32)


class L1L2(Regularizer):
    """`l1 * sum(|x|) + l2 * sum(x**2)` (both default to 0, as Keras's `L1L2`).

    Example:
        >>> import numpy as np
        >>> from kilnet import regularizers
        >>> round(float(regularizers.L1L2(l1=0.1, l2=0.01)(np.full((2, 2), 2.0))), 4)
        0.96
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def __call__(self, x):
        x = jnp.asarray(x, jnp.float32)
        penalty = jnp.zeros((), x.dtype)
        if self.l1:
            penalty = penalty + self.l1 * jnp.sum(jnp.abs(x))
        if self.l2:
            penalty = penalty + self.l2 * jnp.sum(jnp.square(x))
        return penalty

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """`l1 * sum(|x|)` (default l1=0.01).

    Example:
        >>> import numpy as np
        >>> from kilnet import regularizers
        >>> round(float(regularizers.L1(0.1)(np.array([1.0, -2.0]))), 4)
        0.3
    """

    def __init__(self, l1=0.01):
        self.l1 = _factor(l1, "l1")

    def __call__(self, x):
        return self.l1 * jnp.sum(jnp.abs(jnp.asarray(x, jnp.float32)))

    def get_config(self) -> dict:
        # Keras's L1 holds its factor as a float32 tensor, so its configs and files hold the
        # float32 value (0.01 as 0.009999999776482582); the penalty is computed in float32
        return {"l1": float(np.float32(self.l1))}


class L2(Regularizer):
    """`l2 * sum(x**2)` (default l2=0.01).

    Example:
        >>> import numpy as np
        >>> from kilnet import regularizers
        >>> round(float(regularizers.L2(0.1)(np.array([1.0, -2.0]))), 4)
        0.5
    """

    def __init__(self, l2=0.01):
        self.l2 = _factor(l2, "l2")

    def __call__(self, x):
        return self.l2 * jnp.sum(jnp.square(jnp.asarray(x, jnp.float32)))

    def get_config(self) -> dict:
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """Pushes the rows (`mode="rows"`) or columns (`mode="columns"`) of a 2-D weight toward
    orthogonality: `factor` times half the mean absolute cosine between distinct rows (or
    columns), Keras's formula (each unordered pair counted twice, divided by the pair count).

    Args:
        factor: the penalty's weight, a non-negative number (default 0.01).
        mode: "rows" or "columns".

    Example:
        >>> import numpy as np
        >>> from kilnet import regularizers
        >>> float(regularizers.OrthogonalRegularizer(1.0)(np.eye(3)))   # orthogonal already
        0.0
        >>> round(float(regularizers.OrthogonalRegularizer(1.0)(np.ones((2, 3)))), 4)
        1.0
    """

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = _factor(factor, "factor")
        if mode not in ("rows", "columns"):
            raise ValueError('mode must be "rows" or "columns". '
                             f"Received: mode={mode!r}")
        self.mode = mode

    def __call__(self, x):
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 2:
            raise ValueError("OrthogonalRegularizer applies to rank-2 weights (a Dense "
                             f"kernel). Received: shape={x.shape}")
        vectors = x if self.mode == "rows" else x.T
        unit = ops_nn.normalize(vectors, axis=1)
        size = unit.shape[0]
        cosines = (unit @ unit.T) * (1.0 - jnp.eye(size, dtype=unit.dtype))
        pairs = size * (size - 1.0) / 2.0
        return self.factor * 0.5 * jnp.sum(jnp.abs(cosines)) / pairs

    def get_config(self) -> dict:
        return {"factor": self.factor, "mode": self.mode}


# Keras's lower-case functional aliases
l1, l2, l1_l2 = L1, L2, L1L2
orthogonal_regularizer = OrthogonalRegularizer

_BY_NAME = {"Regularizer": Regularizer, "L1": L1, "L2": L2, "L1L2": L1L2,
            "OrthogonalRegularizer": OrthogonalRegularizer,
            "l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2,
            "orthogonal_regularizer": OrthogonalRegularizer}


def serialize(regularizer):
    """A regularizer as Keras's `regularizers.serialize` writes it: {"module":
    "keras.regularizers", "class_name", "config", "registered_name": None} (a registered
    class of yours under its module and registered name); None and a name stay as they are.

    Example:
        >>> from kilnet import regularizers
        >>> regularizers.serialize(regularizers.L2(0.1))
        {'module': 'keras.regularizers', 'class_name': 'L2', 'config': {'l2': 0.1}, \
'registered_name': None}
    """
    return _small_objects.serialize(regularizer, _BY_NAME, Regularizer, "keras.regularizers",
                                    "regularizer")


def deserialize(config) -> Regularizer:
    """The regularizer a config names, as Keras's `regularizers.deserialize`: a name, a
    {"class_name", "config"} entry (Keras's own, with "module", too) of kilnet's classes or a
    registered Regularizer subclass.

    Example:
        >>> from kilnet import regularizers
        >>> regularizers.deserialize({"module": "keras.regularizers", "class_name": "L2",
        ...                           "config": {"l2": 0.1}, "registered_name": None})
        L2(l2=0.1)
    """
    return _small_objects.deserialize(config, _BY_NAME, Regularizer, "regularizer")


def get(identifier, argument: str = "regularizer"):
    """A regularizer from None, a name ("l1", "l2", "l1_l2"), a config dict, a Regularizer or
    a callable `f(x) -> scalar`."""
    return _small_objects.resolve(identifier, _BY_NAME, Regularizer, argument,
                                  "'l1', 'l2', 'l1_l2'")


def add_weight_penalties(regularized: dict, params: dict, owner) -> None:
    """Add `regularizer(params[name])` to the loss for each weight name -> regularizer of the
    layer `owner`, once a step: a layer called twice (a shared layer) is penalized once, as
    Keras adds each weight's penalty once."""
    for name, regularizer in regularized.items():
        if regularizer is not None and name in params:
            _scope.add_loss_once((id(owner), name), jnp.sum(regularizer(params[name])))


def current_weight_penalties(layer) -> list:
    """The weight-regularization part of Keras's `layer.losses`: each regularized trainable
    weight's penalty from its current value, the layer's own weights first, then its
    sub-layers' (a frozen layer's weights are not penalized, as in training).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> dense = kilnet.layers.Dense(1, kernel_regularizer=kilnet.regularizers.L2(0.5))
        >>> dense.build((None, 2))
        >>> _ = dense.kernel.assign(np.full((2, 1), 2.0))
        >>> [float(v) for v in current_weight_penalties(dense)]
        [4.0]
    """
    found = []
    if layer.trainable:
        for path, kind, variable in layer.variable_paths():
            regularizer = layer.regularizer_for(path[0]) if len(path) == 1 else None
            if kind == "params" and regularizer is not None:
                found.append(jnp.sum(regularizer(variable.value)))
    for sub in layer.sublayers:
        found.extend(current_weight_penalties(sub))
    return found


def activity_penalty(regularizer, outputs, sample_mask=None):
    """Keras's activity penalty of `outputs`: regularizer(outputs) / batch size, over the real
    samples only (`sample_mask`) when the batch is padded."""
    outputs = jnp.asarray(outputs)
    if outputs.ndim == 0:
        return jnp.sum(regularizer(outputs))
    sample_mask = _scope.rows_mask(sample_mask, outputs)
    if sample_mask is None:
        count = outputs.shape[0]
    else:
        keep = jnp.reshape(sample_mask, (-1,) + (1,) * (outputs.ndim - 1))
        outputs = jnp.where(keep, outputs, 0.0)
        count = jnp.maximum(jnp.sum(sample_mask.astype(jnp.float32)), 1.0)
    return jnp.sum(regularizer(outputs)) / count


def sums_each_sample(regularizer) -> bool:
    """Whether `regularizer`'s penalty of a batch is a sum of one penalty per sample, so that
    the zeroed padding rows of a padded last batch add nothing to it: kilnet's own L1, L2
    and L1L2 (a subclass of yours may compute anything). A regularizer of yours may take the
    batch as a whole (pointnet's OrthogonalRegularizer sums cross products of its rows).

    Example:
        >>> from kilnet import regularizers
        >>> sums_each_sample(regularizers.L2(0.01)), sums_each_sample(lambda x: x.sum() ** 2)
        (True, False)
    """
    return type(regularizer) in (L1, L2, L1L2)


def add_activity_penalty(regularizer, outputs, sample_mask=None) -> None:
    if regularizer is not None:
        _scope.add_loss(activity_penalty(regularizer, outputs, sample_mask))


def serialize_into(config: dict, layer, keys=None) -> dict:
    """Replace the regularizer objects of `keys` in a layer's config by their configs (default
    keys: every `*_regularizer` entry of the config)."""
    if keys is None:
        keys = [key for key in config if key.endswith("_regularizer")]
    for key in keys:
        config[key] = serialize(getattr(layer, key))
    return config


def set_layer_regularizers(layer, **given) -> None:
    """Resolve a layer's `*_regularizer` arguments (checked, named in the error) onto it."""
    for argument, value in given.items():
        setattr(layer, argument, get(value, argument))


def add_layer_penalties(layer, params, activate=None, sample_mask=None) -> None:
    """A layer's penalties inside `apply`, found by name, so every layer adds them alike:

    - each of the layer's own weights in `params` whose `layer.regularizer_for(name)` is set
      (`kernel_regularizer` for "kernel", `recurrent_regularizer` for "recurrent_kernel", ...)
      is penalized, while the layer is trainable (Keras penalizes `trainable_weights` only);
    - `activity_regularizer`, when set, penalizes each array `activate()` returns (the layer's
      outputs, computed only when needed; several outputs are each penalized, as Keras).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet import regularizers
        >>> layer = kilnet.layers.Dense(1, kernel_regularizer=regularizers.L1(0.5))
        >>> _ = layer(np.ones((1, 2)))
        >>> [round(float(loss), 4) for loss in layer.losses] == [
        ...     round(0.5 * float(np.abs(layer.kernel.numpy()).sum()), 4)]
        True
    """
    if layer.trainable:
        add_weight_penalties({name: layer.regularizer_for(name) for name, value in params.items()
                              if not isinstance(value, dict)}, params, layer)
    activity = getattr(layer, "activity_regularizer", None)
    if activity is not None and activate is not None:
        for output in jax.tree.leaves(activate()):
            add_activity_penalty(activity, output, sample_mask)
