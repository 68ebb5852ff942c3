"""Layers without weights: Input, Flatten, Reshape, Activation, Dropout, Rescaling."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from kilnet import random
from kilnet.layers._base import ActivatedLayer, Layer, as_shape, check_channels_last
from kilnet.layers._dropout_masks import inverted_dropout, mask_shape
from kilnet.layers._node import KerasTensor, Node


_INPUT_DTYPES = ("float32", "int32", "int64", "uint8", "bool", "string")


class InputLayer(Layer):
    """The layer behind `kilnet.Input`: it produces the symbolic tensor a model starts from."""

    config_keys = ("shape", "dtype")

    def __init__(self, shape=None, *, name=None, dtype="float32", batch_size=None,
                 input_shape=None, batch_shape=None, sparse=None, ragged=None, optional=False,
                 **kwargs):
        if shape is None and batch_shape is not None:
            shape = tuple(batch_shape)[1:]
            batch_size = batch_size if batch_size is not None else tuple(batch_shape)[0]
        # None for any batch (fit, evaluate and predict choose it); a size given here is
        # the model's, as Keras's (a stateful RNN's states are made for it)
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                       or isinstance(batch_size, bool) or batch_size < 1):
            raise ValueError("An Input's batch_size must be a positive integer or None. "
                             f"Received: batch_size={batch_size!r}")
        if shape is None:
            shape = input_shape
        for argument, value in (("sparse", sparse), ("ragged", ragged), ("optional", optional)):
            if value:
                raise ValueError(f"Inputs that are {argument} are not supported (kilnet's "
                                 f"inputs are dense arrays, always given); leave {argument} "
                                 f"out. Received: {argument}={value!r}")
        shape = as_shape(shape, "shape")
        if dtype in ("string", "str", str):
            # text: the layers that take it run on the host before the compiled program
            # (kilnet.models._host_stage)
            dtype = "string"
        elif isinstance(dtype, str) and dtype == "object":
            raise ValueError("An Input of Python objects is not supported; for text, give "
                             "dtype='string'. Received: dtype='object'")
        else:
            dtype = "float32" if dtype is None else str(np.dtype(dtype))
        if dtype not in _INPUT_DTYPES:
            raise ValueError(f"Input dtype must be one of {list(_INPUT_DTYPES)}. Received: "
                             f"dtype={dtype!r}")
        super().__init__(name=name, input_shape=shape, **kwargs)
        self.shape = shape
        self.dtype = dtype
        self.batch_size = None if batch_size is None else int(batch_size)
        self.built = True
        self.output_tensor = KerasTensor((self.batch_size,) + shape, dtype, name=self.name)
        self._inbound_nodes.append(Node(self, (), {}, self.output_tensor))

    @property
    def default_name(self) -> str:
        return "input_layer"

    def get_config(self):
        # Keras's: the shape with its batch axis, and the options kilnet takes at their defaults
        return {"batch_shape": (self.batch_size,) + tuple(self.shape), "dtype": self.dtype,
                "sparse": False, "ragged": False, "name": self.name, "optional": False}

    def compute_output_dtype(self, input_dtype):
        return self.dtype

    def apply(self, params, state, x, **_):
        return x, state


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None):
    """A symbolic input of a model, as `keras.Input`: call layers on it, then make a model with
    `kilnet.Model(inputs, outputs)`. Also accepted as the first element of a Sequential.

    Args:
        shape: the shape of one sample, without the batch axis, e.g. (28, 28).
        batch_size: the model's fixed batch size, or None (default) for any: a stateful RNN
            needs it. fit, evaluate and predict then take batches of that size.
        dtype: "float32" (default), an integer dtype for token ids, or "string" for text,
            which only the string layers (TextVectorization, StringLookup, Hashing,
            HashedCrossing) may take: they run on the host before the compiled model.
        batch_shape: the shape with the batch axis first, e.g. (32, 28, 28): the batch size
            and shape in one, as Keras's.
        name: the input's name (the key of its array when fit() gets a dict).

    Returns:
        A KerasTensor whose batch axis is batch_size (None unless given).

    Example:
        >>> import kilnet
        >>> x = kilnet.Input(shape=(4,))
        >>> y = kilnet.layers.Dense(2)(x)
        >>> y.shape
        (None, 2)
    """
    if tensor is not None:
        raise ValueError("Input(tensor=...) is not supported. Received: a tensor argument")
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                       batch_shape=batch_shape, name=name)
    return layer.output_tensor


class Flatten(Layer):
    config_keys = ("data_format",)

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_channels_last(data_format)

    def sample_output_shape(self, input_shape):
        if any(d is None for d in input_shape):   # an axis of any length: as Keras, unknown
            return (None,)
        return (math.prod(input_shape),)

    def apply(self, params, state, x, **_):
        return x.reshape(x.shape[0], -1), state


class Reshape(Layer):
    config_keys = ("target_shape",)

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target_shape = tuple(target_shape)
        if not all(isinstance(d, int) and (d > 0 or d == -1) for d in target_shape) or (
            target_shape.count(-1) > 1
        ):
            raise ValueError(
                "target_shape must hold positive integers and at most one -1. "
                f"Received: target_shape={target_shape!r}"
            )
        self.target_shape = target_shape

    def sample_output_shape(self, input_shape):
        if any(d is None for d in input_shape):
            # an axis of any length (a sequence's time steps, keras.io's CTC speech model):
            # the -1 axis is unknown too, as Keras's; the arrays are checked when they come
            return tuple(None if d == -1 else d for d in self.target_shape)
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(self._mismatch(input_shape))
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ValueError(self._mismatch(input_shape))
        return self.target_shape

    def _mismatch(self, input_shape):
        return (
            f"Reshape cannot turn an input of shape {input_shape} ({math.prod(input_shape)} "
            f"values per sample) into target_shape={self.target_shape}."
        )

    def apply(self, params, state, x, **_):
        return x.reshape((x.shape[0],) + self.sample_output_shape(x.shape[1:])), state


class Activation(ActivatedLayer):
    _supports_masking = True  # passes a sequence mask on, as Keras
    config_keys = ("activation",)

    def __init__(self, activation, **kwargs):
        super().__init__(activation=activation, **kwargs)

    def pre_activation(self, params, state, x, **_):
        return x, state


class Dropout(Layer):
    """Zeroes a fraction `rate` of inputs in training and rescales the rest; identity otherwise."""

    _supports_masking = True  # passes a sequence mask on, as Keras

    config_keys = ("rate", "seed", "noise_shape")

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"rate must be a number in [0, 1). Received: rate={rate!r}")
        self.rate = float(rate)
        self.seed = seed   # kept for the config, as Keras's
        # As Keras's: a generator only when something is dropped. A compiled step's key
        # decides the draws; the generator's state serves stateless_call and eager draws.
        if self.rate > 0:
            self.seed_generator = random.SeedGenerator(seed)
        # The drop mask's shape (a None entry: the input's size there), e.g. (None, 1, 1, 1)
        # drops whole samples, as EfficientNet's residual blocks do.
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)   # as Keras's

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        if not training or self.rate == 0.0:
            return x, state
        key = self.random_key(rng)
        return inverted_dropout(x, key, self.rate, mask_shape(self.noise_shape, x.shape)), state


class Rescaling(Layer):
    """y = x * scale + offset, e.g. Rescaling(1/255) for images in 0-255. `scale` and
    `offset` may also be lists, one value per channel (the last axis), as in Keras (e.g.
    EfficientNet's division by ImageNet's per-channel deviation).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> np.asarray(kilnet.layers.Rescaling([1.0, 0.5])(np.array([[4.0, 4.0]]))).tolist()
        [[4.0, 2.0]]
    """

    _supports_masking = True  # passes a sequence mask on, as Keras

    config_keys = ("scale", "offset")

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = _number_or_list(scale, "scale")
        self.offset = _number_or_list(offset, "offset")

    def apply(self, params, state, x, **_):
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        scale, offset = jnp.asarray(self.scale, dtype), jnp.asarray(self.offset, dtype)
        return x.astype(dtype) * scale + offset, state


def _number_or_list(value, argument):
    """A number as a float, per-channel values as a list of floats (as Keras's config holds
    them)."""
    try:
        values = np.asarray(value, dtype="float32")
    except (TypeError, ValueError):
        raise ValueError(f"{argument} must be a number or a list of numbers (one per channel). "
                         f"Received: {argument}={value!r}") from None
    return float(value) if values.ndim == 0 else np.asarray(value, "float64").tolist()


class Masking(Layer):
    """Masks the time steps whose features all equal `mask_value`: their outputs become 0 and
    the layers after it (in a functional model or Sequential) get a mask that is False there,
    as keras.layers.Masking.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.array([[[1.0, 2.0], [0.0, 0.0]]])
        >>> np.asarray(kilnet.layers.Masking()(x)).tolist()
        [[[1.0, 2.0], [0.0, 0.0]]]
    """

    config_keys = ("mask_value",)

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float)):
            raise ValueError(f"mask_value must be a number. Received: mask_value={mask_value!r}")
        self.mask_value = float(mask_value)

    def compute_mask(self, inputs, previous_mask=None):
        return jnp.any(jnp.not_equal(inputs, self.mask_value), axis=-1)

    def apply(self, params, state, x, **_):
        keep = jnp.any(jnp.not_equal(x, self.mask_value), axis=-1, keepdims=True)
        return jnp.where(keep, x, 0.0).astype(x.dtype), state
