"""Keras 3 files in and out: `.keras` models, `.weights.h5` weights and legacy `.h5` models.

`kilnet.models.load_model("m.keras")`, `model.save("m.keras")`, `model.save_weights(
"m.weights.h5")` and `model.load_weights("m.weights.h5")` come here (kilnet.saving dispatches
on the extension). A Keras file is read as data: a closed table maps Keras's layer classes to
kilnet's, nothing in a file is imported or executed, and every size is bounded before memory is
allocated (see _archive, _h5, _config, _layout, _install, _import, _export).
"""

from kilnet.keras_files._archive import is_zip
from kilnet.keras_files._export import save_keras, save_keras_weights
from kilnet.keras_files._feature_space import save_feature_space
from kilnet.keras_files._import import load_keras, load_keras_weights
from kilnet.keras_files._legacy import load_legacy_h5
from kilnet.keras_files._legacy_export import save_legacy_h5
from kilnet.keras_files._optimizer import Unsupported, export_arrays

__all__ = ["load_keras", "load_keras_weights", "load_legacy_h5", "save_feature_space",
           "save_keras",
           "save_keras_weights", "save_legacy_h5",
           "is_keras_model_path", "is_keras_weights_path", "is_zip",
           "keras_optimizer_variables"]


def keras_optimizer_variables(trainer) -> list | None:
    """A compiled model's optimizer state as Keras's optimizer holds it (`optimizer.variables`:
    the step count, the learning rate, each trained weight's slots, ...), as NumPy arrays, or
    None where Keras has no such list (an Optax transformation of yours). Host sync.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet.keras_files import keras_optimizer_variables
        >>> model = kilnet.Sequential([kilnet.Input(shape=(4,)), kilnet.layers.Dense(3)])
        >>> model.compile(optimizer="adam", loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.ones((8, 3)), verbose=0)
        >>> sum(a.size for a in keras_optimizer_variables(model.compiled))   # 2 + 2 * 15
        32
    """
    try:
        return export_arrays(trainer)
    except Unsupported:
        return None


def is_keras_model_path(path) -> bool:
    """Whether a path names a Keras model file by its extension (.keras).

    Example:
        >>> from kilnet.keras_files import is_keras_model_path
        >>> is_keras_model_path("m.keras"), is_keras_model_path("m.kilnet")
        (True, False)
    """
    return str(path).lower().endswith(".keras")


def is_keras_weights_path(path) -> bool:
    """Whether a path names a Keras weights file by its extension (.h5, as in .weights.h5).

    Example:
        >>> from kilnet.keras_files import is_keras_weights_path
        >>> is_keras_weights_path("m.weights.h5"), is_keras_weights_path("m.kilnet")
        (True, False)
    """
    return str(path).lower().endswith((".h5", ".hdf5"))
