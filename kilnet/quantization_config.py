"""Keras's quantizer and quantization-configuration classes (`keras.quantizers.Quantizer`,
`AbsMaxQuantizer`, `Int8QuantizationConfig`, ...), with their configs and Keras's
`get` / `serialize` / `deserialize`.

A configuration says how `quantize(config=...)` quantizes a layer: its `mode` ("int8", ...),
the quantizer of the weights and the quantizer of the inputs (None: weights only). kilnet
quantizes with the int8 mode; the other configurations exist so that they can be written,
read and compared as Keras's, and `quantize` refuses them with NotImplementedError.

Example:
    >>> from kilnet import quantizers
    >>> config = quantizers.Int8QuantizationConfig(
    ...     weight_quantizer=quantizers.AbsMaxQuantizer(value_range=(-100, 100), axis=0))
    >>> config.mode, quantizers.serialize(config)["config"]["weight_quantizer"]["config"]
    ('int8', {'value_range': (-100, 100), 'epsilon': 1e-07, 'output_dtype': 'int8', 'axis': (0,)})
"""

from __future__ import annotations

import re

from kilnet import _registry, _small_objects
from kilnet.quantization_ops import EPSILON, INT8_RANGE, abs_max_quantize

__all__ = ["AWQConfig", "AbsMaxQuantizer", "Float8QuantizationConfig", "GPTQConfig",
           "Int4QuantizationConfig", "Int8QuantizationConfig", "QuantizationConfig",
           "Quantizer", "deserialize", "get", "serialize"]


class Quantizer:
    """Base of the quantizers (Keras's `keras.quantizers.Quantizer`): called on a tensor, a
    quantizer returns its quantized form (the base class returns it unchanged). A subclass
    defines `__call__` and `get_config`.

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.Quantizer()(3.0), quantizers.Quantizer("int4").output_dtype
        (3.0, 'int4')
    """

    def __init__(self, output_dtype="int8"):
        self.output_dtype = output_dtype

    def __call__(self, x):
        return x

    @classmethod
    def from_config(cls, config):
        """The quantizer `get_config` describes."""
        return cls(**config)

    def get_config(self):
        """The quantizer's arguments, to rebuild it with `from_config` (a subclass must define
        it to be saved, as in Keras)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_config(): "
                                  "define it to return the arguments that rebuild it.")


class AbsMaxQuantizer(Quantizer):
    """Keras's abs-max quantizer: `q, scale = quantizer(x, axis=None, to_numpy=False)`
    quantizes `x` by its largest magnitude per slice along `axis` (the call's, else the one
    given here, else -1) into `value_range` (kilnet.quantizers.abs_max_quantize).

    Example:
        >>> import numpy as np
        >>> from kilnet import quantizers
        >>> q, scale = quantizers.AbsMaxQuantizer(value_range=(-100, 100))(
        ...     np.array([[0.5, -1.0]], np.float32))
        >>> np.asarray(q).tolist(), round(float(scale[0, 0]), 3)
        ([[50, -100]], 100.0)
    """

    def __init__(self, axis=None, value_range=INT8_RANGE, epsilon=EPSILON, output_dtype="int8"):
        super().__init__(output_dtype=output_dtype)
        self.axis = None if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
        self.value_range = value_range
        self.epsilon = epsilon
        if output_dtype == "int8" and (value_range[0] < -128 or value_range[1] > 127):
            raise ValueError("AbsMaxQuantizer(output_dtype='int8') requires value_range within "
                             f"[-128, 127]. Received: value_range={value_range}")

    def __call__(self, x, axis=None, to_numpy=False):
        axis = next(a for a in (axis, self.axis, -1) if a is not None)
        return abs_max_quantize(x, axis, self.value_range, self.output_dtype, self.epsilon,
                                to_numpy)

    def get_config(self):
        config = {"value_range": self.value_range, "epsilon": self.epsilon,
                  "output_dtype": self.output_dtype}
        if self.axis is not None:
            config["axis"] = self.axis
        return config

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"AbsMaxQuantizer({args})"


class QuantizationConfig:
    """Base of the quantization configurations (Keras's): a weight quantizer and an
    activation (inputs) quantizer; a subclass names its `mode`.

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.Int8QuantizationConfig().get_config()["weight_quantizer"] is None
        True
    """

    def __init__(self, weight_quantizer=None, activation_quantizer=None):
        self.weight_quantizer = weight_quantizer
        self.activation_quantizer = activation_quantizer

    @property
    def mode(self):
        raise NotImplementedError("QuantizationConfig is a base class: use a subclass such as "
                                  "Int8QuantizationConfig, which names its mode.")

    def get_config(self):
        return {"weight_quantizer": serialize(self.weight_quantizer),
                "activation_quantizer": serialize(self.activation_quantizer)}

    @classmethod
    def from_config(cls, config):
        return cls(weight_quantizer=deserialize(config.get("weight_quantizer")),
                   activation_quantizer=deserialize(config.get("activation_quantizer")))

    @staticmethod
    def weight_quantizer_or_default(config, default):
        """The weight quantizer `config` gives, else `default`."""
        if config is not None and config.weight_quantizer is not None:
            return config.weight_quantizer
        return default

    @staticmethod
    def activation_quantizer_or_default(config, default):
        """The inputs' quantizer of `config` (None there means none), else `default`."""
        return config.activation_quantizer if config is not None else default

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()!r})"


class Int8QuantizationConfig(QuantizationConfig):
    """Keras's int8 configuration: `weight_quantizer` (default: abs-max per output channel)
    and `activation_quantizer` ("default": `AbsMaxQuantizer()`; None: weights only).

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.Int8QuantizationConfig().activation_quantizer
        AbsMaxQuantizer(value_range=(-127, 127), epsilon=1e-07, output_dtype='int8')
    """

    def __init__(self, weight_quantizer=None, activation_quantizer="default"):
        if isinstance(activation_quantizer, str) and activation_quantizer == "default":
            activation_quantizer = AbsMaxQuantizer()
        super().__init__(weight_quantizer, activation_quantizer)
        if weight_quantizer is not None and weight_quantizer.output_dtype != "int8":
            raise ValueError("Int8QuantizationConfig requires a weight_quantizer with "
                             "output_dtype='int8'. Received: "
                             f"output_dtype={weight_quantizer.output_dtype}")

    @property
    def mode(self):
        return "int8"


class Int4QuantizationConfig(QuantizationConfig):
    """Keras's int4 configuration (weights only by default; `block_size` rows per group, None
    or -1 for one scale per output channel). kilnet does not quantize to int4: the class
    holds and round-trips Keras's configuration, and `quantize` refuses it.

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.Int4QuantizationConfig(block_size=None).get_config()
        {'weight_quantizer': None, 'activation_quantizer': None, 'block_size': None}
    """

    def __init__(self, weight_quantizer=None, activation_quantizer="default", block_size=128):
        if isinstance(activation_quantizer, str) and activation_quantizer == "default":
            activation_quantizer = None
        super().__init__(weight_quantizer, activation_quantizer)
        if block_size is not None and block_size != -1 and block_size <= 0:
            raise ValueError("Int4QuantizationConfig: block_size must be None, -1 or a positive "
                             f"integer. Received: block_size={block_size}")
        self.block_size = block_size
        custom = weight_quantizer is not None or self.activation_quantizer is not None
        if block_size is not None and block_size > 0 and custom:
            raise ValueError("Int4 sub-channel quantization (block_size > 0) does not support "
                             "custom quantizers: set block_size=None (or -1) for per-channel "
                             "quantization, or leave the quantizers out. Received: "
                             f"block_size={block_size}")   # Keras's rule
        if weight_quantizer is not None and (
                tuple(weight_quantizer.value_range) != (-8, 7)
                or weight_quantizer.output_dtype != "int8"):
            raise ValueError("Int4QuantizationConfig requires a weight_quantizer with "
                             "value_range=(-8, 7) and output_dtype='int8'. Received: "
                             f"value_range={weight_quantizer.value_range}, "
                             f"output_dtype={weight_quantizer.output_dtype}")

    @property
    def mode(self):
        return "int4"

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}

    @classmethod
    def from_config(cls, config):
        return cls(weight_quantizer=deserialize(config.get("weight_quantizer")),
                   activation_quantizer=deserialize(config.get("activation_quantizer")),
                   block_size=config.get("block_size"))


class Float8QuantizationConfig(QuantizationConfig):
    """Keras's float8 (training) configuration, which takes no quantizers. kilnet does not
    implement float8: `quantize` refuses it.

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.Float8QuantizationConfig().mode
        'float8'
    """

    def __init__(self):
        super().__init__(None, None)

    @property
    def mode(self):
        return "float8"

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


class _CalibratedConfig(QuantizationConfig):
    """GPTQ's and AWQ's configurations: calibration settings (the dataset and tokenizer are
    not written in the config, as in Keras)."""
    settings: dict = {}

    def __init__(self, dataset, tokenizer, **settings):
        super().__init__()
        unknown = set(settings) - set(self.settings)
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(unknown)}; "
                            f"it takes dataset, tokenizer and {sorted(self.settings)}.")
        self.dataset, self.tokenizer = dataset, tokenizer
        for name, default in self.settings.items():
            setattr(self, name, settings.get(name, default))

    def get_config(self):
        return {"dataset": None, "tokenizer": None,
                **{name: getattr(self, name) for name in self.settings}}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def dtype_policy_string(self):
        """Keras's policy name of the mode, e.g. "gptq/4/128"."""
        return f"{self.mode}/{self.weight_bits}/{self.group_size}"


class GPTQConfig(_CalibratedConfig):
    """Keras's GPTQ configuration (`dataset`, `tokenizer` and the keyword settings). kilnet
    does not implement GPTQ: `quantize` refuses it.

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.GPTQConfig(None, None, weight_bits=8).dtype_policy_string()
        'gptq/8/128'
    """
    settings = {"weight_bits": 4, "num_samples": 128, "per_channel": True,
                "sequence_length": 512, "hessian_damping": 0.01, "group_size": 128,
                "symmetric": False, "activation_order": False,
                "quantization_layer_structure": None}

    @property
    def mode(self):
        return "gptq"


class AWQConfig(_CalibratedConfig):
    """Keras's AWQ configuration (`dataset`, `tokenizer` and the keyword settings). kilnet
    does not implement AWQ: `quantize` refuses it.

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.AWQConfig(None, None).get_config()["num_grid_points"]
        20
    """
    settings = {"weight_bits": 4, "num_samples": 128, "sequence_length": 512,
                "group_size": 128, "num_grid_points": 20, "quantization_layer_structure": None}

    @property
    def mode(self):
        return "awq"


_CLASSES = (Quantizer, AbsMaxQuantizer, QuantizationConfig, Int8QuantizationConfig,
            Int4QuantizationConfig, Float8QuantizationConfig, GPTQConfig, AWQConfig)
_BY_NAME = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME.update({re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower(): cls
                 for cls in _CLASSES})   # Keras's snake_case names too: "abs_max_quantizer"


def serialize(quantizer):
    """Keras's entry for a quantizer or a quantization configuration ({"module":
    "keras.quantizers", "class_name", "config", "registered_name"}); None stays None.

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.serialize(quantizers.AbsMaxQuantizer())["class_name"]
        'AbsMaxQuantizer'
    """
    if quantizer is None:
        return None
    return _registry.to_config_entry(quantizer, _BY_NAME, "keras.quantizers", "quantizer")


def deserialize(config, custom_objects=None):
    """The quantizer or configuration an entry describes (kilnet's classes, or one
    registered with kilnet.saving.register_serializable or given in `custom_objects`).

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.deserialize({"class_name": "AbsMaxQuantizer",
        ...                         "config": {"value_range": [-8, 7], "axis": [0]}}).axis
        (0,)
    """
    if config is None:
        return None
    known = {**_BY_NAME, **(custom_objects or {})}
    return _small_objects.deserialize(config, known, object, "quantizer")


def get(identifier, **kwargs):
    """A quantizer from None, an object, an entry, or a class name ("AbsMaxQuantizer",
    "abs_max_quantizer"; made with `kwargs`).

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.get("abs_max_quantizer", axis=0).axis
        (0,)
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    found = _BY_NAME.get(identifier) if isinstance(identifier, str) else identifier
    if isinstance(found, type):
        return found(**kwargs)
    if not callable(found):
        raise ValueError(f"Could not interpret quantizer identifier: {identifier!r}. Expected "
                         f"None, a quantizer, its config or one of {sorted(_BY_NAME)}.")
    return found
