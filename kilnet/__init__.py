"""kilnet: Keras-style neural networks, compiled into whole-epoch XLA programs with JAX.

    import kilnet
    from kilnet import layers

    model = kilnet.Sequential([layers.Flatten(input_shape=(28, 28)),
                               layers.Dense(128, activation="relu"),
                               layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=5)
"""

from kilnet import _runtime  # noqa: F401  (configures JAX before any computation)
from kilnet import (
    activations,
    callbacks,
    datasets,
    distribution,
    initializers,
    insight,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
    random,
    regularizers,
    report,
    utils,
)
from kilnet._version import __version__
from kilnet.errors import (
    CheckpointMismatchError,
    InputError,
    InputTypeError,
    InputWarning,
    KilnetError,
    ModelFileError,
    NonFiniteError,
    SaveError,
)
from kilnet.layers import Input
from kilnet.models import Model, Sequential
from kilnet.plot import plot_history

__all__ = [
    "CheckpointMismatchError",
    "Input",
    "InputError",
    "InputTypeError",
    "InputWarning",
    "KilnetError",
    "Model",
    "ModelFileError",
    "NonFiniteError",
    "SaveError",
    "Sequential",
    "__version__",
    "activations",
    "callbacks",
    "datasets",
    "distribution",
    "initializers",
    "insight",
    "layers",
    "losses",
    "metrics",
    "models",
    "ops",
    "optimizers",
    "plot_history",
    "random",
    "regularizers",
    "report",
    "utils",
]
