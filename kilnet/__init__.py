"""kilnet: Keras-style neural networks, compiled into whole-epoch XLA programs with JAX.

    import kilnet
    from kilnet import layers

    model = kilnet.Sequential([layers.Flatten(input_shape=(28, 28)),
                               layers.Dense(128, activation="relu"),
                               layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=5)

`import kilnet` is cheap: it does not import JAX (about 2 s). Every public name is resolved on
first use (PEP 562's module `__getattr__`), which first configures JAX (kilnet._runtime), so the
`kilnet` command can print its first line before JAX has loaded.

>>> import kilnet
>>> kilnet.Sequential.__name__, kilnet.layers.Dense.__name__
('Sequential', 'Dense')
"""

import importlib

from kilnet._version import __version__
from kilnet.errors import (  # exceptions: cheap, and `except kilnet.InputError` needs them
    CheckpointMismatchError,
    InputError,
    InputTypeError,
    InputWarning,
    KerasQuirkWarning,
    KilnetError,
    ModelFileError,
    NonFiniteError,
    SaveError,
)

# Keras's import makes `PIL.Image` reachable after a bare `import PIL` (its image utilities
# import it), and keras.io's examples rely on that (`PIL.Image.BICUBIC` in the sub-pixel
# super-resolution example): so does kilnet's, for about 9 ms. Pillow is a dependency.
try:
    import PIL.Image  # noqa: F401
except ImportError:   # a broken install: kilnet's image utilities say so when used
    pass

# Public names defined in a submodule: name -> the module that defines it.
_NAMES = {
    "Input": "kilnet.layers",
    "Model": "kilnet.models",
    "Sequential": "kilnet.models",
    "plot_history": "kilnet.plot",
    # Keras 3's top-level base classes (`class MyLayer(keras.Layer)`), the same objects as in
    # their modules
    "Layer": "kilnet.layers",
    "Loss": "kilnet.losses",
    "Metric": "kilnet.metrics",
    "Optimizer": "kilnet.optimizers",
    "Initializer": "kilnet.initializers",
    "Regularizer": "kilnet.regularizers",
    "Variable": "kilnet.variables",
    "DTypePolicy": "kilnet.dtype_policies",
    "KerasTensor": "kilnet.layers",
    "InputSpec": "kilnet.layers",
    "Operation": "kilnet.layers",
    "FloatDTypePolicy": "kilnet.dtype_policies",
    "device": "kilnet.distribution",
    "version": "kilnet._version",
}
# Submodules reachable as attributes (`kilnet.layers.Dense`) without importing them first.
_SUBMODULES = (
    "activations", "backend", "callbacks", "checkpoint", "config", "constraints", "datasets",
    "applications", "distribution",
    "dtype_policies", "errors", "initializers", "insight", "layers", "losses", "metrics",
    "mixed_precision", "models", "ops",
    "optimizers", "plot", "preprocessing", "quantizers", "random", "regularizers",
    "report", "saving", "tree",
    "utils", "variables",
)

__all__ = [
    "CheckpointMismatchError",
    "DTypePolicy",
    "Initializer",
    "Input",
    "InputError",
    "InputTypeError",
    "InputSpec",
    "InputWarning",
    "KerasQuirkWarning",
    "KerasTensor",
    "FloatDTypePolicy",
    "Operation",
    "device",
    "version",
    "KilnetError",
    "Layer",
    "Loss",
    "Metric",
    "Model",
    "ModelFileError",
    "NonFiniteError",
    "Optimizer",
    "Regularizer",
    "SaveError",
    "Sequential",
    "Variable",
    "__version__",
    "activations",
    "applications",
    "backend",
    "callbacks",
    "config",
    "datasets",
    "distribution",
    "dtype_policies",
    "initializers",
    "insight",
    "layers",
    "losses",
    "metrics",
    "mixed_precision",
    "models",
    "ops",
    "optimizers",
    "plot_history",
    "preprocessing",
    "quantizers",
    "random",
    "regularizers",
    "report",
    "tree",
    "utils",
]


def __getattr__(name):
    """Import the submodule behind a public name on first use, and keep it in the namespace."""
    if name in _NAMES:
        module, attribute = _NAMES[name], name
    elif name in _SUBMODULES:
        module, attribute = f"kilnet.{name}", None
    else:
        raise AttributeError(f"module 'kilnet' has no attribute {name!r}")
    importlib.import_module("kilnet._runtime")  # configures JAX before any computation
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES) | set(_SUBMODULES))
