"""GroupedQueryAttention (Ainslie et al., 2023), as Keras 3's `keras.layers.GroupQueryAttention`.

Grouped-query attention is multi-head attention whose query heads share fewer key and value
heads: `num_query_heads` query heads in `num_key_value_heads` groups, each group attending
with one key head and one value head (one group: multi-query attention; as many groups as
query heads: multi-head attention). So it is MultiHeadAttention with smaller key and value
projections whose heads are repeated, each `num_query_heads // num_key_value_heads` times,
before the attention: masks (query/value/key masks from the inputs' masks, attention_mask,
use_causal_mask, sliding_window), dropout, the gate and the fused softmax are
MultiHeadAttention's, reused through its `heads_for_queries` hook rather than copied.

Keras's weights, names and order: projections query (feature, num_query_heads, head_dim), key
and value (feature, num_key_value_heads, head_dim), (gate,) attention_output (num_query_heads,
head_dim, feature), each with its bias where use_bias; the output has the query's feature size.
Keras exports the layer as GroupQueryAttention, the name its `.keras` configs give, but its
class is GroupedQueryAttention, the name of its default layer names and of its group in a
weights file (kilnet/keras_files/_layout.py maps it); kilnet has both names.

A subclass written for Keras's GroupedQueryAttention finds its hooks as Keras's has them:
`_compute_attention(query, key, value, attention_mask=None, training=None)` receives the key
and value heads already repeated, its einsum equations take (query, key) in that order
("bquh,bkuh->buqk"), and `_return_attention_scores` says whether the scores are asked for.
"""

from __future__ import annotations

import numbers

import jax.numpy as jnp

from kilnet.layers._attention import MultiHeadAttention, kilnet_hook
from kilnet.layers._base import set_untracked


class GroupQueryAttention(MultiHeadAttention):
    """Grouped-query attention, as Keras's GroupQueryAttention.

    query is projected to `num_query_heads` heads, key and value to `num_key_value_heads`
    heads (all of `head_dim` features); each key/value head serves `num_query_heads //
    num_key_value_heads` consecutive query heads; each head computes `softmax(q k^T /
    sqrt(head_dim)) v`, and the heads are projected back to the query's feature size.

    Args:
        head_dim: size of each head.
        num_query_heads: number of query heads.
        num_key_value_heads: number of key and value heads; must divide num_query_heads.
        dropout: dropout rate on the attention probabilities (in training).
        use_bias: whether the projections have biases.
        sliding_window: each query attends only to keys less than this many positions away.
        flash_attention: None or False; kilnet computes attention with XLA operations.
        kernel_initializer, bias_initializer: the projections' initializers.
        kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
            bias_constraint: given to every projection, as Keras gives them.
        use_gate: gate the heads with `sigmoid(query @ gate_kernel + gate_bias)` before the
            output projection.
        seed: saved in the config; starts the dropout's SeedGenerator state (as Keras's).

    Call arguments: `gqa(query, value, key=None, query_mask=None, value_mask=None,
    key_mask=None, attention_mask=None, return_attention_scores=False, training=None,
    use_causal_mask=False)`, as MultiHeadAttention's. query (batch, T, dim), value and key
    (batch, S, dim) with value's features equal to query's. Returns (batch, T, dim), and with
    return_attention_scores=True also the probabilities (batch, num_query_heads, T, S).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> gqa = kilnet.layers.GroupQueryAttention(head_dim=4, num_query_heads=4,
        ...                                         num_key_value_heads=2)
        >>> out, scores = gqa(np.ones((1, 3, 8)), np.ones((1, 5, 8)),
        ...                   return_attention_scores=True)
        >>> out.shape, scores.shape
        ((1, 3, 8), (1, 4, 3, 5))
        >>> [w.shape for w in gqa.weights if w.name == "kernel"]
        [(8, 4, 4), (8, 2, 4), (8, 2, 4), (4, 4, 8)]
    """

    # Keras's GroupedQueryAttention leaves its inputs' masks on them and uses a given query_mask
    consumes_masks_of = ()
    config_keys = ("head_dim", "num_query_heads", "num_key_value_heads", "use_bias",
                   "use_gate", "sliding_window", "dropout", "kernel_initializer",
                   "bias_initializer", "kernel_regularizer", "bias_regularizer",
                   "activity_regularizer", "kernel_constraint", "bias_constraint", "seed")

    def __init__(self, head_dim, num_query_heads, num_key_value_heads, dropout=0.0,
                 use_bias=True, sliding_window=None, flash_attention=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, use_gate=False, seed=None,
                 **kwargs):
        self.head_dim = _positive_int(head_dim, "head_dim")
        self.num_query_heads = _positive_int(num_query_heads, "num_query_heads")
        self.num_key_value_heads = _positive_int(num_key_value_heads, "num_key_value_heads")
        if num_query_heads % num_key_value_heads:
            raise ValueError(
                "num_query_heads must be a multiple of num_key_value_heads (each key/value "
                f"head serves a group of query heads). Received: num_query_heads="
                f"{num_query_heads}, num_key_value_heads={num_key_value_heads}")
        super().__init__(num_heads=num_query_heads, key_dim=head_dim, value_dim=head_dim,
                         dropout=dropout, use_bias=use_bias, sliding_window=sliding_window,
                         flash_attention=flash_attention, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer,
                         kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                         use_gate=use_gate, seed=seed, **kwargs)
        if seed is not None and (not isinstance(seed, numbers.Integral)
                                 or isinstance(seed, bool)):
            raise TypeError(f"seed must be an integer or None. Received: seed={seed!r}")
        self.seed = seed
        # key and value are projected to the shared heads only
        self._key_dense.units = (self.num_key_value_heads, self.head_dim)
        self._value_dense.units = (self.num_key_value_heads, self.head_dim)
        # Keras's: whether the running call asked for the scores, which its
        # _compute_attention reads rather than takes
        set_untracked(self, "_return_attention_scores", False)

    @property
    def _inverse_sqrt_head_dim(self) -> float:
        """Keras's private name for the scale of the queries, 1 / sqrt(head_dim)."""
        return self._inverse_sqrt_key_dim

    @property
    def default_name(self) -> str:
        return "grouped_query_attention"   # Keras's, from its class name

    def _in_keras_order(self, config):
        # Keras's GroupQueryAttention gives its activity regularizer to its base layer, and
        # has no output_shape (always the query's feature size)
        return config

    def _input_shapes(self, input_shape):
        query, value, key = super()._input_shapes(input_shape)
        if len(query) != 2:   # Keras's attends over the sequence only
            raise ValueError(
                f"GroupQueryAttention takes query, value and key of shape (batch, sequence, "
                f"features). Received: query of shape {(None,) + query}. For inputs of a "
                f"higher rank use MultiHeadAttention (attention_axes)")
        if query[-1] != value[-1]:
            raise ValueError(
                f"GroupQueryAttention needs value with as many features as query (its output "
                f"has the query's). Received: query of shape {(None,) + query}, value of "
                f"shape {(None,) + value}")
        return query, value, key

    @kilnet_hook
    def _build_attention(self, rank):
        """MultiHeadAttention's members, with Keras's GroupedQueryAttention's equations,
        whose scores take the query first.

        Example:
            >>> import numpy as np
            >>> gqa = GroupQueryAttention(head_dim=2, num_query_heads=2, num_key_value_heads=1)
            >>> _ = gqa(np.ones((1, 3, 4)), np.ones((1, 3, 4)))
            >>> gqa._dot_product_equation, gqa._combine_equation
            ('bquh,bkuh->buqk', 'buqk,bkuh->bquh')
        """
        super()._build_attention(rank)
        set_untracked(self, "_dot_product_equation", "bquh,bkuh->buqk")
        set_untracked(self, "_combine_equation", "buqk,bkuh->bquh")

    def dot_product(self, query, key):
        """The scores by Keras's GroupedQueryAttention's `_dot_product_equation`: query,
        then key."""
        return jnp.einsum(self._dot_product_equation, query, key)

    def attend_heads(self, query, key, value, attention_mask, training,
                     return_attention_scores):
        """`_compute_attention` called as Keras's GroupedQueryAttention calls it: the mask
        and training flag by keyword, the scores asked for in `_return_attention_scores`."""
        set_untracked(self, "_return_attention_scores", return_attention_scores)
        return self._compute_attention(query, key, value, attention_mask=attention_mask,
                                       training=training)

    @kilnet_hook
    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           use_causal_mask=False):
        """Keras's GroupedQueryAttention's hook, taking its arguments: MultiHeadAttention's
        attention of the query heads with the repeated key and value heads."""
        return super()._compute_attention(query, key, value, attention_mask, training,
                                          self._return_attention_scores, use_causal_mask)

    def heads_for_queries(self, k, v):
        """Each shared key/value head repeated for the query heads of its group (Keras's
        order: query heads 0..g-1 use key/value head 0, the next g head 1, ...)."""
        repeats = self.num_query_heads // self.num_key_value_heads
        return jnp.repeat(k, repeats, axis=2), jnp.repeat(v, repeats, axis=2)


# Keras's class behind the export name (keras.src.layers.GroupedQueryAttention).
GroupedQueryAttention = GroupQueryAttention


def _positive_int(value, argument: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"GroupQueryAttention: {argument} must be a positive integer. "
                         f"Received: {argument}={value!r}")
    return int(value)
