"""Embedding: integer token ids -> learned vectors, one row of an (input_dim, output_dim) table
per id.

It is the layer whose inputs are integers. Give the model an integer input
(`kilnet.Input(shape=(None,), dtype="int32")`): the compiled programs cast each batch to its
Input's dtype (kilnet.programs), so the ids stay int32 on the device and are gathered with
`jnp.take`, whose gradient adds into the rows that were used. Float ids (a model declared
without an integer Input) are cast to int32 here, as Keras does.

An id outside [0, input_dim) has no row. Called eagerly on arrays the layer says so with a
ValueError; inside a compiled program it can only yield NaN for that row (the loss then turns
non-finite and fit() stops and reports it). Keras on JAX gives NaN too, but wraps negative ids
to the end of the table; here they get NaN like every other missing row.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

from kilnet import _scope, constraints, initializers, quantizers, regularizers
from kilnet.layers import _int4, _int8
from kilnet.layers._base import Layer


class Embedding(_int8.Int8Configured, Layer):
    """Turns integer ids into dense vectors: `output[..., :] = embeddings[id]`.

    Args:
        input_dim: size of the vocabulary, i.e. the largest id + 1.
        output_dim: size of each vector.
        embeddings_initializer: initializer name of the table (Keras's default "uniform":
            U(-0.05, 0.05)).
        mask_zero: id 0 is padding: the layers after it get a mask that is False there (in a
            functional model or Sequential), as Keras propagates it.
        input_length: accepted and ignored with a warning, as Keras 3 does.

    Input: integer ids of any shape, e.g. (batch, steps). Output: that shape + (output_dim,).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.Embedding(input_dim=10, output_dim=3)
        >>> layer(np.array([[1, 2, 2], [0, 9, 4]])).shape
        (2, 3, 3)
        >>> inputs = kilnet.Input(shape=(None,), dtype="int32")
        >>> kilnet.layers.Embedding(1000, 8)(inputs).shape
        (None, None, 8)
    """
    saves_declared_weights_only = True   # as Keras's save_own_variables does
    config_keys = ("input_dim", "output_dim", "embeddings_initializer", "embeddings_regularizer",
                   "activity_regularizer", "embeddings_constraint", "mask_zero",
                   "quantization_config")

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, lora_rank=None, lora_alpha=None, quantization_config=None,
                 input_length=None, **kwargs):
        super().__init__(**kwargs)
        for argument, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{argument} must be a positive integer. Received: "
                                 f"{argument}={value!r}")
        if not isinstance(mask_zero, bool):
            raise ValueError(f"mask_zero must be True or False. Received: mask_zero={mask_zero!r}")
        _refuse_unsupported(lora_rank=lora_rank, lora_alpha=lora_alpha)
        self.int4_config = _int8.check_quantization_config(quantization_config,
                                                           type(self).__name__)
        # Keras's `weights=[matrix]`: the table starts as the matrix (keras.io's masked
        # language model fixes sinusoidal position embeddings so), in every build
        self._given_table = None if weights is None else _given_table(weights, input_dim,
                                                                      output_dim)
        if input_length is not None:
            warnings.warn("Embedding: the argument input_length is deprecated in Keras 3 and "
                          "ignored; declare the sequence length with kilnet.Input(shape=...).",
                          stacklevel=2)
        initializers.set_layer_initializers(self, embeddings_initializer=embeddings_initializer)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.mask_zero = mask_zero
        regularizers.set_layer_regularizers(self, embeddings_regularizer=embeddings_regularizer)
        constraints.set_layer_constraints(self, embeddings_constraint=embeddings_constraint)
        self.supports_masking = mask_zero

    def compute_mask(self, inputs, previous_mask=None):
        """With mask_zero=True, id 0 is padding: the mask is False there."""
        if not self.mask_zero:
            return None
        return jnp.not_equal(jnp.asarray(inputs), 0)   # a Python list of ids, eagerly

    def integer_input_range(self):
        return (0, self.input_dim)

    def sample_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    @property
    def param_names(self):
        return () if self.quantization_mode else ("embeddings",)

    @property
    def state_names(self):
        if self.quantization_mode == "int4" and self.int4_block_size is not None:
            return ("embeddings", "embeddings_scale", "embeddings_zero", "g_idx")
        return ("embeddings", "embeddings_scale") if self.quantization_mode else ()

    def init(self, rng, input_shape):
        if self.quantization_mode == "int4":   # Keras's quantized build: no float table
            return {}, _int4.empty_table_state(self.input_dim, self.output_dim,
                                               self.int4_block_size), \
                self.sample_output_shape(input_shape)
        if self.quantization_mode == "int8":
            return {}, self.int8_state(), self.sample_output_shape(input_shape)
        table = (self._given_table.copy() if self._given_table is not None else
                 initializers.initial_values(self.embeddings_initializer,
                     rng, (self.input_dim, self.output_dim)))
        return {"embeddings": table}, {}, self.sample_output_shape(input_shape)

    # -- int8 and int4 (model.quantize; kilnet.layers._int8, kilnet.layers._int4) ----------
    quantization_modes = ("int8", "int4")

    def quantize(self, mode=None, type_check=True, config=None):
        """Quantize the table in place, as Keras's Embedding.quantize. "int8": int8
        `embeddings` with one float32 scale per row (`embeddings_scale`, (input_dim,)), both
        non-trainable; a lookup divides each row by its scale. "int4": each row packed two
        values a byte, (input_dim, ceil(output_dim / 2)), with a scale per row or, in groups
        of `block_size` values along the row (Keras's default 128), a scale and a zero point
        per group (`embeddings_zero`, `g_idx`).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> layer = kilnet.layers.Embedding(5, 2, embeddings_initializer="ones")
            >>> layer.build((None, 3))
            >>> layer.quantize("int8")
            >>> [(w.name, str(w.dtype)) for w in layer.weights]
            [('embeddings', 'int8'), ('embeddings_scale', 'float32')]
            >>> np.asarray(layer(np.array([[1, 4]]))).round(4).tolist()   # 127 / scale
            [[[1.0, 1.0], [1.0, 1.0]]]
        """
        _int8.quantize_layer(self, Embedding, mode, type_check, config)

    def int8_state(self, embeddings=None) -> dict:
        """The int8 table and its row scales: from the float table, or as a quantized build
        makes them (zeros and ones, which a file's arrays then replace)."""
        if embeddings is None:
            return {"embeddings": np.zeros((self.input_dim, self.output_dim), np.int8),
                    "embeddings_scale": np.ones((self.input_dim,), np.float32)}
        table, scale = _int8.quantize_rows(embeddings)
        return {"embeddings": table, "embeddings_scale": scale}

    def int8_weights(self) -> tuple:
        """(params, state) of the int8 form, from the float table."""
        return {}, self.int8_state(self.embeddings.numpy())

    def quantized_weights(self, mode) -> tuple:
        """(params, state) of the quantized form in `mode`, from the float table."""
        if mode == "int4":
            return {}, _int4.quantized_table(self.embeddings.numpy(), self.int4_block_size)
        return self.int8_weights()

    @property
    def int4_block_size(self):
        """The values of a group of an int4 row (None: one scale per row)."""
        return _int4.block_size_of(self.int4_config, self.dtype_policy)

    @property
    def quantization_config(self):
        if self.quantization_mode == "int4":
            return quantizers.serialize(self.int4_config)
        return super().quantization_config

    def get_config(self):
        config = regularizers.serialize_into(super().get_config(), self,
                                             ("embeddings_regularizer", "activity_regularizer"))
        return constraints.serialize_into(config, self, ("embeddings_constraint",))

    def apply(self, params, state, x, **_):
        regularizers.add_layer_penalties(self, params)
        ids = jnp.asarray(x).astype(jnp.int32)  # float ids too, as Keras
        if _scope.checkable_values(ids):   # an eager call on your ids, not a build's trial
            _check_ids(ids, self.input_dim)
        # jnp.take fills ids >= input_dim with NaN but wraps negative ones: send those past the
        # end of the table too, so that every missing row shows.
        ids = jnp.where(ids < 0, self.input_dim, ids)
        if self.quantization_mode == "int4":
            own = {name: state[name] for name in self.state_names}
            return _int4.looked_up_rows(own, ids, self.output_dim, self.compute_dtype), state
        if self.quantization_mode == "int8":
            return _int8.looked_up_rows(state["embeddings"], state["embeddings_scale"], ids,
                                        self.compute_dtype), state
        return jnp.take(params["embeddings"], ids, axis=0, mode="fill",
                        fill_value=jnp.nan), state


def _check_ids(ids, input_dim):
    """Concrete ids (an eager call) can be checked before they are looked up."""
    values = np.asarray(ids)
    bad = (values < 0) | (values >= input_dim)
    if bad.any():
        raise ValueError(
            f"Embedding ids must be in [0, input_dim) = [0, {input_dim}); raise input_dim to "
            f"the vocabulary size (largest id + 1). Received: {int(bad.sum())} ids out of "
            f"range, e.g. {int(values[bad][0])}")


def _given_table(weights, input_dim, output_dim) -> np.ndarray:
    """The starting table of Embedding(weights=...): one (input_dim, output_dim) matrix, alone
    or in a list (Keras's form), as float32."""
    matrix = weights[0] if isinstance(weights, (list, tuple)) and len(weights) == 1 else weights
    try:
        table = np.array(matrix, dtype=np.float32)
    except (TypeError, ValueError):
        table = None
    if table is None or table.shape != (input_dim, output_dim):
        raise ValueError(
            "Embedding: weights must be one matrix of shape (input_dim, output_dim) = "
            f"({input_dim}, {output_dim}), or a list holding it (weights=[matrix]). Received: "
            f"weights of shape {getattr(table, 'shape', None) or type(weights).__name__}")
    return table


def _refuse_unsupported(**options):
    """Keras arguments kilnet has no counterpart for yet: refused rather than ignored."""
    given = {name: value for name, value in options.items() if value is not None}
    if given:
        raise ValueError(
            f"Embedding does not support {', '.join(sorted(given))} yet. Received: "
            + ", ".join(f"{name}={value!r}" for name, value in sorted(given.items())))
