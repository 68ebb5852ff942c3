"""Sequential: a chain of layers. Once its input shape is known it is a functional graph
(kilnet.Input -> each layer in turn), so it trains, saves and summarises like any Model."""

from __future__ import annotations

import jax
import numpy as np

from kilnet import _names
from kilnet.layers import Activation, InputLayer, Layer, Normalization, Rescaling
from kilnet.layers._base import set_untracked
from kilnet.layers._host_call import refuse_strings
from kilnet.layers._node import KerasTensor
from kilnet.layers._preprocessing import TakesOneImage
from kilnet.models._model import Model, kilnets_own, sample_shapes, shapes_of_data


class Sequential(Model):
    """A stack of layers, each taking the previous one's output, as `keras.Sequential`.

    Args:
        layers: the layers in order; the first may be kilnet.Input(shape=...) or carry
            input_shape=... so the model is built at once.
        name: the model's name.

    Example:
        >>> import kilnet
        >>> from kilnet import layers
        >>> model = kilnet.Sequential([kilnet.Input(shape=(28, 28)), layers.Flatten(),
        ...                            layers.Dense(10, activation="softmax")])
        >>> model.output_shape
        (None, 10)
        >>> [layer.name for layer in model.layers][-1].startswith("dense")
        True
    """

    def __init__(self, layers=None, name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        set_untracked(self, "_chain", [])
        set_untracked(self, "_input_layer", None)
        set_untracked(self, "_chain_names", _names.Names())
        for layer in layers or []:
            self._append(layer)
        self._rebuild_graph()  # once: a graph per added layer would cost n^2 layer calls

    @property
    def default_name(self) -> str:
        return "sequential"

    # -- structure ------------------------------------------------------------------------------
    def add(self, layer) -> None:
        """Append a layer (or kilnet.Input(...) as the first element)."""
        self._append(layer)
        self._rebuild_graph()

    def _append(self, layer) -> None:
        if isinstance(layer, KerasTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer
        if not isinstance(layer, Layer):
            raise TypeError(
                "Sequential takes kilnet layers, e.g. kilnet.layers.Dense(10). "
                f"Received: {layer!r} of type {type(layer).__name__}")
        if isinstance(layer, InputLayer):
            if self._chain or self._input_layer is not None:
                raise ValueError("kilnet.Input(...) must be the first element of a Sequential.")
            set_untracked(self, "_input_layer", layer)
            return
        if (isinstance(layer, Model) and layer.is_functional and len(layer.input_specs) == 1
                and not self._chain and self._input_layer is None):
            # a functional model first (a pretrained base): its input is the chain's, as Keras
            spec = layer.input_specs[0]
            set_untracked(self, "_input_layer", InputLayer(shape=spec.shape, dtype=spec.dtype))
        if layer.declared_input_shape is not None and not isinstance(layer, Model):
            if self._chain or self._input_layer is not None:
                raise ValueError(
                    f"input_shape={layer.declared_input_shape} was given to a layer that is not the "
                    "first; only the first layer may declare the input shape.")
            set_untracked(self, "_input_layer", InputLayer(shape=layer.declared_input_shape))
        names = self._chain_names  # kept as layers come: a set per layer was n^2 for a chain
        layer.take_name(names)
        if layer.name in names:
            raise ValueError(f"Two layers are named {layer.name!r}; layer names must be unique.")
        self._chain.append(layer)
        names.add(layer.name)

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._chain:
            raise TypeError("There are no layers in the model to pop.")
        layer = self._chain.pop()
        set_untracked(self, "_chain_names", _names.Names(existing.name for existing in self._chain))
        self._rebuild_graph()
        return layer

    def _rebuild_graph(self, keep_compiled=False):
        """The chain as a graph, once the input shape is known. A new layer invalidates what
        was compiled; declaring the input shape (build) does not."""
        set_untracked(self, "_sublayers", list(self._chain))
        set_untracked(self, "graph", None)
        self.built = False
        if not keep_compiled:
            if self.compiled is not None:
                self.compiled.release_variables()
            set_untracked(self, "compiled", None)
        if self._input_layer is None or not self._chain:
            self.build_shape = None if self._input_layer is None else self._input_layer.shape
            return
        x = self._input_layer.output_tensor
        for layer in self._chain:
            x = layer(x)
        self._set_graph(self._input_layer.output_tensor, x)

    @property
    def layers(self) -> list:
        """The layers in order (the input layer is not one of them, as in Keras)."""
        return list(self._chain)

    @property
    def operations(self) -> list:
        """The layers: a chain of layers records no ops between them."""
        return self.layers

    def call(self, inputs, training=None):
        """The chain applied in order: how a Sequential whose input shape is not declared runs
        when it is called (nested in another model, or on arrays)."""
        # a mode only where there is one: with None, each layer takes its own default (as
        # Keras's fallback passes it), where an explicit None would be that layer's mode
        mode = {} if training is None else {"training": training}
        x = inputs
        for layer in self._chain:
            x = layer(x, **mode)
        return x

    def __call__(self, *args, **kwargs):
        """Layer.__call__; one unbatched (height, width, channels) image (a tf.data map before
        `.batch` gives them) goes through a chain of image layers as a batch of one and comes
        back unbatched, as Keras's image layers take one image.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> resize = kilnet.Sequential([kilnet.layers.Rescaling(1 / 255),
            ...                             kilnet.layers.Resizing(4, 4)])
            >>> resize(np.zeros((8, 8, 3), np.float32)).shape
            (4, 4, 3)
        """
        if args and self.is_one_image(args[0]):
            return super().__call__(args[0][None], *args[1:], **kwargs)[0]
        return super().__call__(*args, **kwargs)

    def compute_output_shape(self, input_shape, *more_shapes, **options):
        """Model.compute_output_shape; for one image's (height, width, channels) shape, the
        shape of the one image the chain returns (see __call__)."""
        shape = input_shape
        if not more_shapes and self._takes_rank(shape):
            return super().compute_output_shape((1, *shape), **options)[1:]
        return super().compute_output_shape(input_shape, *more_shapes, **options)

    def is_one_image(self, x) -> bool:
        """Whether a call's input `x` is one unbatched image for this chain: an array of
        rank 3 (with values, not a symbolic tensor) reaching an image layer (Resizing,
        CenterCrop, the random image layers) through layers that keep any shape.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.layers.RandomFlip()])
            >>> model.is_one_image(np.zeros((8, 8, 3))), model.is_one_image(np.zeros((2, 8, 8, 3)))
            (True, False)
        """
        concrete = isinstance(x, (np.ndarray, jax.Array)) and not isinstance(x, jax.core.Tracer)
        return concrete and self._takes_rank(x.shape)

    def _takes_rank(self, shape) -> bool:
        """Whether `shape` is one image's for this chain (see is_one_image)."""
        return (isinstance(shape, (tuple, list)) and len(shape) == 3
                and all(d is None or isinstance(d, int) for d in shape)
                and _first_shaping_layer(self._chain) == "image")

    def call_on_strings(self, args, kwargs):
        """Called on a string tensor with no input declared: the chain starts from a string
        Input of that shape, as Keras builds a Sequential on its first call, so its string
        layers run on the host and the rest compiled (Model.call_on_strings).

        Example:
            >>> import kilnet
            >>> encoder = kilnet.Sequential([kilnet.layers.StringLookup(vocabulary=["u1"]),
            ...                              kilnet.layers.Embedding(2, 3)])
            >>> encoder(kilnet.Input((), dtype="string")).shape, encoder.inputs[0].dtype
            ((None, 3), 'string')
        """
        if self._input_layer is None and self._chain:
            if not getattr(self._chain[0], "runs_on_strings", False):
                refuse_strings(self._chain[0])   # the layer that would take the strings
            set_untracked(self, "_input_layer",
                          InputLayer(shape=args[0].sample_shape, dtype="string"))
            self._rebuild_graph(keep_compiled=True)
        return super().call_on_strings(args, kwargs)

    # Keras builds a Sequential's layers in its name scope ("sequential/dense/kernel")
    names_built_weights = True
    takes_keyed_inputs = False

    @kilnets_own
    def build(self, input_shape=None, *, seed: int | None = None) -> None:
        input_shape = shapes_of_data(input_shape)   # build(one_batch), as Keras allows
        if input_shape is not None and self._input_layer is None:
            set_untracked(self, "_input_layer", InputLayer(shape=sample_shapes(input_shape)))
            self._rebuild_graph(keep_compiled=True)
            input_shape = None
        if not self._chain:
            raise ValueError("The model has no layers; add some with model.add(layer).")
        if self.graph is None:
            super().build(input_shape, seed=seed)  # raises: the input shape is unknown
        super().build(input_shape, seed=seed)

    def get_config(self) -> dict:
        """{"name", "input_shape", "layers": [{"class_name", "config"}]}: the format of every
        kilnet version, with "batch_size" when the input has one (a stateful RNN's) and
        "input_dtype" when it takes strings (a StringLookup first); a nested
        model is a layer with class_name "Functional", "Sequential" or its registered name."""
        from kilnet.models import _config

        shape = None if self._input_layer is None else list(self._input_layer.shape)
        config = {"name": self.name, "input_shape": shape,
                  "layers": [_config.serialize(layer) for layer in self._chain]}
        if self._input_layer is not None and self._input_layer.batch_size is not None:
            config["batch_size"] = self._input_layer.batch_size
        if self._input_layer is not None and self._input_layer.dtype == "string":
            config["input_dtype"] = "string"   # a chain starting with a string layer
        return config

    @property
    def input_layer(self):
        return self._input_layer


# Layers that take inputs of any shape and keep it: they may come before the image layer that
# makes a rank-3 call one image (keras.io's Sequential([Rescaling(1 / 255), Resizing(...)]))
_KEEPS_ANY_SHAPE = (Rescaling, Normalization, Activation)


def _first_shaping_layer(chain):
    """"image" when the first layer of `chain` (nested Sequentials searched) that cares about
    its input's shape is an image layer, "other" when it is another layer, None when no layer
    of the chain cares."""
    for layer in chain:
        if isinstance(layer, TakesOneImage):
            return "image"
        if isinstance(layer, Sequential) and layer.input_layer is None:
            inner = _first_shaping_layer(layer.layers)
            if inner is not None:
                return inner
        elif not isinstance(layer, _KEEPS_ANY_SHAPE):
            return "other"
    return None
