"""ReversibleEmbedding: an Embedding that can also be called in reverse, projecting vectors of
output_dim back to input_dim logits (a language model's output layer tied to its input
embedding), as Keras's ReversibleEmbedding.

Why it builds on Embedding: the forward call is Embedding's (ids checked, looked up, the
padding mask of mask_zero); only the reverse call is new, a matmul with the table's transpose
(tie_weights=True) or with a separate trainable `reverse_embeddings` (output_dim, input_dim).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from kilnet import initializers
from kilnet.layers import _int8
from kilnet.layers._embedding import Embedding


class ReversibleEmbedding(Embedding):
    """An Embedding that `call(inputs, reverse=True)` turns into the projection from
    output_dim back to input_dim, as Keras's ReversibleEmbedding.

    Args:
        input_dim, output_dim, embeddings_initializer, embeddings_regularizer,
            embeddings_constraint, mask_zero: as Embedding's.
        tie_weights: True (default): the reverse projection is the transpose of `embeddings`;
            False: a separate trainable `reverse_embeddings` weight (output_dim, input_dim),
            drawn with embeddings_initializer.
        reverse_dtype: the dtype the reverse projection computes in (its inputs and kernel
            are cast to it); default: the layer's compute dtype.
        logit_soft_cap: if set, reverse logits become `tanh(logits / cap) * cap`.

    Call arguments:
        inputs: integer ids (forward), or vectors (..., output_dim) with reverse=True.
        reverse: False (default) embeds the ids; True gives logits (..., input_dim).

    The forward call's output carries the mask_zero mask, as Embedding's; the reverse call's
    carries none, as in Keras.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> embedding = kilnet.layers.ReversibleEmbedding(100, 8)
        >>> hidden = embedding(np.array([[1, 2, 3]]))
        >>> hidden.shape, embedding(hidden, reverse=True).shape
        ((1, 3, 8), (1, 3, 100))
        >>> untied = kilnet.layers.ReversibleEmbedding(10, 4, tie_weights=False)
        >>> _ = untied(np.array([0, 1]))
        >>> [(w.name, w.shape) for w in untied.weights]
        [('embeddings', (10, 4)), ('reverse_embeddings', (4, 10))]
    """

    config_keys = Embedding.config_keys + ("tie_weights", "reverse_dtype", "logit_soft_cap")
    quantization_modes = ("int8",)   # Keras's int4 reverse projection is not implemented

    def __init__(self, input_dim, output_dim, tie_weights=True,
                 embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, reverse_dtype=None,
                 logit_soft_cap=None, **kwargs):
        super().__init__(input_dim, output_dim, embeddings_initializer=embeddings_initializer,
                         embeddings_regularizer=embeddings_regularizer,
                         embeddings_constraint=embeddings_constraint, mask_zero=mask_zero,
                         **kwargs)
        if not isinstance(tie_weights, bool):
            raise ValueError("tie_weights must be True or False. Received: "
                             f"tie_weights={tie_weights!r}")
        if reverse_dtype is not None:
            _check_float_dtype(reverse_dtype)
        if logit_soft_cap is not None and (isinstance(logit_soft_cap, bool) or not isinstance(
                logit_soft_cap, (int, float)) or logit_soft_cap <= 0):
            raise ValueError("logit_soft_cap must be a positive number (logits are squashed "
                             "into (-cap, cap)) or None. Received: "
                             f"logit_soft_cap={logit_soft_cap!r}")
        self.tie_weights = tie_weights
        self.reverse_dtype = reverse_dtype
        self.logit_soft_cap = logit_soft_cap

    @property
    def param_names(self):
        if self.quantization_mode or self.tie_weights:
            return super().param_names
        return ("embeddings", "reverse_embeddings")

    @property
    def state_names(self):
        reverse = () if self.tie_weights else ("reverse_embeddings", "reverse_embeddings_scale")
        return super().state_names + reverse if self.quantization_mode else ()

    def init(self, rng, input_shape):
        params, state, _ = super().init(rng, input_shape)
        if not self.tie_weights and self.quantization_mode is None:
            params["reverse_embeddings"] = initializers.initial_values(self.embeddings_initializer,
                rng, (self.output_dim, self.input_dim))
        return params, state, self.sample_output_shape(input_shape)

    # -- int8 (model.quantize("int8"); kilnet.layers._int8) ---------------------------------
    def quantize(self, mode=None, type_check=True, config=None):
        """Quantize in place, as Keras's ReversibleEmbedding.quantize: the table as
        Embedding's (int8 rows, a scale per row), and an untied `reverse_embeddings` to int8
        with a scale per column (`reverse_embeddings_scale`, (input_dim,)); the reverse call
        then quantizes its inputs per vector and multiplies in integers.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> layer = kilnet.layers.ReversibleEmbedding(6, 3, tie_weights=False)
            >>> layer.build((None, 2))
            >>> layer.quantize("int8")
            >>> [w.name for w in layer.weights]
            ['embeddings', 'embeddings_scale', 'reverse_embeddings', 'reverse_embeddings_scale']
            >>> layer(np.ones((1, 3), np.float32), reverse=True).shape
            (1, 6)
        """
        _int8.quantize_layer(self, ReversibleEmbedding, mode, type_check, config)

    def int8_state(self, embeddings=None, reverse=None) -> dict:
        state = super().int8_state(embeddings)
        if not self.tie_weights:
            contraction = _int8.last_axes(2, 2)
            if reverse is None:
                state["reverse_embeddings"] = np.zeros((self.output_dim, self.input_dim),
                                                       np.int8)
                state["reverse_embeddings_scale"] = np.ones((self.input_dim,), np.float32)
            else:
                kernel, scale = _int8.quantize_kernel(contraction, reverse)
                state["reverse_embeddings"] = kernel
                state["reverse_embeddings_scale"] = scale.reshape(self.input_dim)
        return state

    def int8_weights(self) -> tuple:
        reverse = None if self.tie_weights else self.reverse_embeddings.numpy()
        return {}, self.int8_state(self.embeddings.numpy(), reverse)

    def compute_mask(self, inputs, previous_mask=None):
        """The mask_zero mask of a forward call (integer ids); none after a reverse call,
        whose inputs are vectors."""
        inputs = jnp.asarray(inputs)
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            return None
        return super().compute_mask(inputs, previous_mask)

    def sample_output_shape(self, input_shape, reverse=False):
        if reverse:
            return tuple(input_shape[:-1]) + (self.input_dim,)
        return super().sample_output_shape(input_shape)

    def compute_call_output_shape(self, input_shape, kwargs):
        return self.sample_output_shape(input_shape, reverse=bool(kwargs.get("reverse")))

    def apply(self, params, state, x, *, reverse=False, **kwargs):
        if not reverse:
            return super().apply(params, state, x, **kwargs)
        x = jnp.asarray(x)
        if self.quantization_mode == "int8":
            logits = self._int8_reverse(state, x)
        else:
            kernel = (params["embeddings"].T if self.tie_weights
                      else params["reverse_embeddings"])
            if self.reverse_dtype is not None:
                x, kernel = x.astype(self.reverse_dtype), kernel.astype(self.reverse_dtype)
            logits = jnp.matmul(x, kernel)
        if self.logit_soft_cap is not None:
            logits = jnp.tanh(logits / self.logit_soft_cap) * self.logit_soft_cap
        return logits, state

    def _int8_reverse(self, state, x):
        """Keras's int8 reverse call: the int8 table's transpose (tied; its row scales become
        column scales) or reverse_embeddings, in the compute dtype (reverse_dtype is not
        applied, as in Keras), with no gradient reaching the inputs, as Keras's has none."""
        if self.tie_weights:
            kernel, scale = state["embeddings"].T, state["embeddings_scale"]
        else:
            kernel, scale = state["reverse_embeddings"], state["reverse_embeddings_scale"]
        return _int8.product(_int8.last_axes(x.ndim, 2), x, kernel, scale)


def _check_float_dtype(dtype):
    try:
        ok = jnp.issubdtype(jnp.dtype(dtype), jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError("reverse_dtype must be a floating dtype name such as 'float32' or "
                         f"'bfloat16', or None. Received: reverse_dtype={dtype!r}")
    return dtype
