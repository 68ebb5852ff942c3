"""Attention layers: MultiHeadAttention (the Transformer's) and Attention (Luong-style
dot-product attention), with Keras 3's arguments, weights and formulas.

Why they need more than a one-input layer:

- They take several inputs. Attention takes one list, `[query, value]` or `[query, value,
  key]`, which the base class handles as it does a merge layer's. MultiHeadAttention takes
  separate arguments, `mha(query, value, key=key)`, as Keras does, and its key and value
  projections need the key's and value's shapes: its `call_input_shape` gives all three, so it
  is built (in a model, eagerly or inside another layer's call) from every input.
- With return_attention_scores=True they return two tensors, `(output, scores)`: their
  `compute_call_output_shape` gives both shapes, so a call on symbolic tensors records two
  outputs.

Masks, as Keras: the sequence masks the inputs carry (Embedding(mask_zero=True), Masking) are
used. MultiHeadAttention gets them as query_mask / value_mask / key_mask (a model fills these
from its inputs' masks; they may also be given in the call) and combines them with
attention_mask and use_causal_mask; Attention gets mask=[query_mask, value_mask]. Both pass the
query's mask on to the next layer.

MultiHeadAttention also takes inputs of a higher rank, (batch, ..., features), attending over
its `attention_axes` as Keras's einsums do; it folds the other axes into the batch and the
attended ones into one sequence, so the same kernels (and their written-out gradient) serve,
and (batch, sequence, features) inputs keep their program unchanged.

Weights are named and shaped as Keras's: MultiHeadAttention holds projections named query,
key, (gate,) value and attention_output, each with a kernel and a bias, so
`keras_mha.set_weights(kilnet_mha.get_weights())` makes a Keras layer that computes the same.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from kilnet._custom_gradients import custom_vjp
from kilnet import _scope, constraints, initializers, random, regularizers
from kilnet._kernels import onednn_matmul
from kilnet.layers import _int8
from kilnet.layers._quantized_kernel import QuantizableKernel
from kilnet.layers._attention_names import KerasPrivateSettings, attention_equations
from kilnet.layers._base import Layer, is_shape, set_untracked
from kilnet.layers._dropout_masks import keep_mask
from kilnet.layers._einsum_dense import fans_over
from kilnet.layers._matmul import last_axes_product
from kilnet.layers._node import KerasTensor

# Keras pushes masked scores to -1e9 (float32) before the softmax.
_MASKED = -1e9


def kilnet_hook(method):
    """Mark `method` as kilnet's own version of one of Keras's attention hooks
    (`_compute_attention`, `_masked_softmax`, ...), so that the layer tells a subclass's
    override from it: kilnet's versions keep kilnet's fused kernels.

    Example:
        >>> @kilnet_hook
        ... def _masked_softmax(self, scores, mask=None):
        ...     return scores
        >>> _masked_softmax.kilnet_default
        True
    """
    method.kilnet_default = True
    return method


class _Projection(QuantizableKernel, Layer):
    """`activation(x @ kernel + bias)` contracting the last `in_axes` axes of x into the axes
    `units`: the einsum dense projections of MultiHeadAttention, with Keras's kernel shape
    (*contracted input axes, *units) and bias shape `units`. `model.quantize("int8")` (or
    "int4") quantizes it as Keras quantizes its EinsumDense projections."""

    def __init__(self, units, *, in_axes, use_bias, kernel_initializer, bias_initializer,
                 name, activation=None, kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None):
        super().__init__(name=name)
        self.activation = activation
        # As Keras passes them to its EinsumDense projections: each penalizes and constrains
        # its own kernel and bias (found by weight name, Layer.regularizer_for), and the
        # activity regularizer penalizes each projection's output.
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer
        self.activity_regularizer = activity_regularizer
        self.kernel_constraint, self.bias_constraint = kernel_constraint, bias_constraint
        self.units = units   # None until built for the output projection (the query's size)
        self.in_axes = in_axes
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def sample_output_shape(self, input_shape):
        return tuple(input_shape[:-self.in_axes]) + self.units

    def kernel_shape(self, input_shape) -> tuple:
        return tuple(input_shape[-self.in_axes:]) + self.units

    def init(self, rng, input_shape):
        kernel_shape = self.kernel_shape(input_shape)
        if self.quantization_mode:   # Keras's quantized build: no float kernel
            params, state = {}, self.quantized_state(input_shape)
        else:
            kernel_init = fans_over(initializers.get(self.kernel_initializer),
                                    range(self.in_axes), range(self.in_axes, len(kernel_shape)))
            kernel = initializers.initial_values(kernel_init, rng, kernel_shape)
            params, state = {"kernel": kernel}, {}
        if self.use_bias:
            params["bias"] = initializers.initial_values(self.bias_initializer, rng, self.units)
        return params, state, self.sample_output_shape(input_shape)

    def quantize(self, mode=None, type_check=True, config=None):
        """Quantize the kernel in place (int8 or int4), as Keras's EinsumDense.quantize."""
        _int8.quantize_layer(self, _Projection, mode, type_check, config)

    def kernel_contraction(self, input_ndim):
        return _int8.last_axes(input_ndim, self.in_axes + len(self.units), self.in_axes)

    def apply(self, params, state, x, sample_mask=None, **_):
        if self.quantization_mode:
            y = self.quantized_product(x, state)
            if self.use_bias:
                y = y + params["bias"]
        else:
            y = last_axes_product(x, params["kernel"],
                                  params["bias"] if self.use_bias else None,
                                  in_axes=self.in_axes)
        if self.activation is not None:
            y = self.activation(y)
        regularizers.add_layer_penalties(self, params, lambda: y, sample_mask)
        return y, state


class MultiHeadAttention(KerasPrivateSettings, Layer):
    """Multi-head attention (Vaswani et al., 2017), as Keras's MultiHeadAttention.

    query, key and value are projected to `num_heads` heads (of `key_dim`, `key_dim` and
    `value_dim` features); each head computes `softmax(q k^T / sqrt(key_dim)) v`; the heads
    are concatenated and projected to the query's feature size (or `output_shape`).

    Args:
        num_heads: number of heads.
        key_dim: size of each head for query and key.
        value_dim: size of each head for value (default: key_dim).
        dropout: dropout rate on the attention probabilities (in training).
        use_bias: whether the projections have biases.
        output_shape: the output's feature shape (an int or a tuple); default: the query's
            feature size.
        attention_axes: the axes attended over, an int or a tuple of them (negative ones
            count from the end, as Keras's): the query's positions along them attend to the
            key's; the other axes between the batch and the features are batch-like. Default
            None: every axis between the batch and the features (the sequence axis of
            (batch, sequence, features) inputs). Once built, the layer keeps them resolved
            (non-negative), as Keras's config writes them.
        sliding_window: each query position attends only to key positions less than this far
            away (combine with use_causal_mask for a causal window).
        use_gate: gate the heads with `sigmoid(query @ gate_kernel + gate_bias)` before the
            output projection.
        kernel_initializer, bias_initializer: initializer names.
        kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
            bias_constraint: given to every projection (query, key, value, gate, output), as
            Keras gives them to its EinsumDense sub-layers: the activity penalty is of each
            projection's output.
        seed: the start of the dropout's SeedGenerator state (made when dropout > 0, as
            Keras's); a compiled step's key decides the draws there.

    Call arguments: `mha(query, value, key=None, attention_mask=None,
    return_attention_scores=False, training=None, use_causal_mask=False)` with query of shape
    (batch, T, dim), value and key of shape (batch, S, dim_v) and (batch, S, dim_k), and a
    boolean attention_mask of shape (batch, T, S) (True: may attend). Returns the output,
    (batch, T, dim) by default, and with return_attention_scores=True also the attention
    probabilities (batch, num_heads, T, S).

    Inputs of a higher rank, (batch, ..., features), all of one rank, attend over
    `attention_axes`, as Keras's: the probabilities have the shape (batch, <batch-like
    axes>, num_heads, <query's attended axes>, <key's attended axes>), normalized over the
    key's attended axes together, and an attention_mask broadcasts against it once Keras has
    given it the axes it lacks, just before its last 2 * len(attention_axes) axes (so
    (batch, T..., S...) gets the heads and batch-like axes). use_causal_mask and
    sliding_window order the positions of a single attended axis.

    Subclassing, as Keras's: the call runs through the methods subclasses written for Keras
    override, with Keras's arguments and results: `_compute_attention_mask` (the masks
    combined), `_compute_attention` (the heads' attention from the projected query, key and
    value), and within the default `_compute_attention`, `_masked_softmax` and the members
    `_build_attention` makes (`_dot_product_equation`, `_combine_equation`, `_softmax`,
    `_dropout_layer`); Keras's private settings (`_key_dim`, `_num_heads`, ...) read the
    layer's, and the projections are `query_dense`, `key_dense`, `value_dense` and
    `output_dense` (`_query_dense`, ...). Variables a subclass keeps are weights of the layer,
    trained and saved with it. Overriding none of these keeps kilnet's own kernels.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = kilnet.Input(shape=(8, 16))
        >>> mha = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        >>> y, scores = mha(x, x, return_attention_scores=True)
        >>> y.shape, scores.shape
        ((None, 8, 16), (None, 2, 8, 8))
        >>> cross = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        >>> cross(np.ones((1, 3, 6)), np.ones((1, 5, 7)), use_causal_mask=True).shape
        (1, 3, 6)
        >>> [(w.name, w.shape) for w in cross.weights[:4]]
        [('kernel', (6, 2, 4)), ('bias', (2, 4)), ('kernel', (7, 2, 4)), ('bias', (2, 4))]
        >>> patches = kilnet.Input(shape=(4, 9, 16))          # (batch, patches, tokens, dim)
        >>> axial = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=2)
        >>> y, scores = axial(patches, patches, return_attention_scores=True)
        >>> y.shape, scores.shape, axial.get_config()["attention_axes"]
        ((None, 4, 9, 16), (None, 4, 2, 9, 9), (2,))
    """

    # Keras's dropout generator sits on its inner Dropout layer, before the output projection
    seed_states_before = "_output_dense"
    config_keys = ("num_heads", "key_dim", "value_dim", "dropout", "use_bias", "use_gate",
                   "attention_axes", "sliding_window", "kernel_initializer",
                   "bias_initializer", "kernel_regularizer", "bias_regularizer",
                   "activity_regularizer", "kernel_constraint", "bias_constraint", "seed")
    # The arguments of a call besides query, value and key (training is the base class's).
    CALL_OPTIONS = ("attention_mask", "return_attention_scores", "training", "use_causal_mask")
    # As Keras's: a call takes the masks off its inputs (its later consumers see none), and
    # reads the query's mask from the query itself (an explicit query_mask is not used)
    consumes_masks_of = ("query", "value", "key")

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, attention_axes=None, sliding_window=None,
                 flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 use_gate=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # the query's mask passes on (Keras)
        regularizers.set_layer_regularizers(self, kernel_regularizer=kernel_regularizer,
                                            bias_regularizer=bias_regularizer,
                                            activity_regularizer=activity_regularizer)
        constraints.set_layer_constraints(self, kernel_constraint=kernel_constraint,
                                          bias_constraint=bias_constraint)
        if flash_attention:
            raise ValueError("MultiHeadAttention(flash_attention=True) is not supported: kilnet "
                             "computes attention with XLA operations. Received: "
                             f"flash_attention={flash_attention!r}")
        self.num_heads = _positive_int(num_heads, "num_heads")
        self.key_dim = _positive_int(key_dim, "key_dim")
        self.value_dim = self.key_dim if value_dim is None else _positive_int(value_dim,
                                                                              "value_dim")
        self.dropout = _rate(dropout)
        self.use_bias = _check_bool(use_bias, "use_bias")
        self.use_gate = _check_bool(use_gate, "use_gate")
        self._output_shape = _check_output_shape(output_shape)
        self.attention_axes = _check_attention_axes(attention_axes)
        self.sliding_window = (None if sliding_window is None
                               else _positive_int(sliding_window, "sliding_window"))
        initializers.set_layer_initializers(
            self, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer)
        # Keras keeps it on its inner Dropout layer, which comes before the output projection
        self.seed = seed   # kept for the config, as Keras's
        if self.dropout > 0:
            self.seed_generator = random.SeedGenerator(seed)
        # The projections, in Keras's weight order.
        common = dict(use_bias=self.use_bias, kernel_initializer=kernel_initializer,
                      bias_initializer=bias_initializer,
                      kernel_regularizer=self.kernel_regularizer,
                      bias_regularizer=self.bias_regularizer,
                      activity_regularizer=self.activity_regularizer,
                      kernel_constraint=self.kernel_constraint,
                      bias_constraint=self.bias_constraint)
        heads = self.num_heads
        self._query_dense = _Projection((heads, self.key_dim), in_axes=1, name="query",
                                        **common)
        self._key_dense = _Projection((heads, self.key_dim), in_axes=1, name="key", **common)
        self._gate_dense = (_Projection((heads, self.value_dim), in_axes=1, name="gate",
                                        activation=jax.nn.sigmoid, **common)
                            if self.use_gate else None)
        self._value_dense = _Projection((heads, self.value_dim), in_axes=1, name="value",
                                        **common)
        self._output_dense = _Projection(self._output_shape, in_axes=2,
                                         name="attention_output", **common)

    def get_config(self):
        return self._in_keras_order(constraints.serialize_into(regularizers.serialize_into(
            super().get_config(), self), self))

    def _in_keras_order(self, config):
        """Keras's MultiHeadAttention keeps its activity regularizer among its own settings
        (its base layer never sees it), and writes output_shape after use_gate."""
        config["output_shape"] = self._output_shape
        own = self.config_keys[:6] + ("output_shape",) + self.config_keys[6:]
        return {**{key: value for key, value in config.items() if key not in own},
                **{key: config[key] for key in own}}

    # -- shapes ----------------------------------------------------------------------------------
    def _input_shapes(self, input_shape):
        """(query, value, key) sample shapes from one shape (self-attention: all the same) or
        a list of two or three, each checked."""
        if is_shape(input_shape):
            shapes = [tuple(input_shape)] * 3
        else:
            shapes = [tuple(s) for s in input_shape]
            if len(shapes) == 2:
                shapes.append(shapes[1])  # as Keras: the key defaults to the value
        query, value, key = shapes
        for name, shape in (("query", query), ("value", value), ("key", key)):
            if len(shape) < 2 or shape[-1] is None:
                raise ValueError(
                    f"MultiHeadAttention takes {name} of shape (batch, sequence, features), or "
                    "of a higher rank (batch, ..., features), with a known number of features. "
                    f"Received: {name} of shape {(None,) + shape}")
        if not _same_sizes(value[:-1], key[:-1]):
            raise ValueError(f"value and key must have the same sequence length (every axis "
                             f"but the features alike). Received: value of shape "
                             f"{(None,) + value}, key of shape {(None,) + key}")
        self._check_batch_like_axes(query, value)
        return query, value, key

    def _check_batch_like_axes(self, query, value):
        """query and value of one rank, alike on the axes not attended over: those pair a
        query with its keys (Keras's einsum shares their letters)."""
        if len(query) != len(value):
            raise ValueError(f"query, value and key must have the same rank. Received: query "
                             f"of shape {(None,) + query}, value of shape {(None,) + value}")
        axes = _resolved_axes(self.attention_axes, len(query) + 1)
        batch_like = [axis for axis in range(1, len(query)) if axis not in axes]
        if not _same_sizes([query[a - 1] for a in batch_like], [value[a - 1] for a in batch_like]):
            raise ValueError(
                f"query and value must have the same sizes on the axes not attended over "
                f"{tuple(batch_like)} (attention_axes={axes}). Received: query of shape "
                f"{(None,) + query}, value of shape {(None,) + value}. Attend over those axes "
                f"too (attention_axes), or give inputs that agree there")

    def _scores_shape(self, query, value):
        """The attention probabilities' sample shape, Keras's: (<batch-like axes>, num_heads,
        <query's attended axes>, <key's attended axes>); (num_heads, T, S) for sequences."""
        axes = _resolved_axes(self.attention_axes, len(query) + 1)
        batch_like = tuple(query[a - 1] for a in range(1, len(query)) if a not in axes)
        return (batch_like + (self.num_heads,) + tuple(query[a - 1] for a in axes)
                + tuple(value[a - 1] for a in axes))

    def sample_output_shape(self, input_shape):
        query, _, _ = self._input_shapes(input_shape)
        return query[:-1] + (self._output_shape or (query[-1],))

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        """The output shape, as Keras's: the query's, value's and (optional) key's shapes,
        batch axis first.

        Example:
            >>> from kilnet import layers
            >>> layers.MultiHeadAttention(2, 4).compute_output_shape((None, 5, 3), (None, 6, 3))
            (None, 5, 3)
        """
        shapes = (query_shape, value_shape) + (() if key_shape is None else (key_shape,))
        return super().compute_output_shape(*shapes)

    # -- weights ---------------------------------------------------------------------------------
    def init(self, rng, input_shape):
        query, value, key = self._input_shapes(input_shape)
        # Keras's config writes the axes resolved once built: (1,) for sequences, not None
        self.attention_axes = _resolved_axes(self.attention_axes, len(query) + 1)
        # The output goes back to the query's feature size unless output_shape says otherwise:
        # only known now.
        self._output_dense.units = self._output_shape or (query[-1],)
        builds = [(self._query_dense, query), (self._key_dense, key)]
        if self.use_gate:
            builds.append((self._gate_dense, query))
        builds += [(self._value_dense, value),
                   (self._output_dense, query[:-1] + (self.num_heads, self.value_dim))]
        for projection, shape in builds:
            projection.build_weights(rng, shape)
        self._build_attention(len(query) + 2)
        return self.params_tree(), self.state_tree(), self.sample_output_shape(query)

    @property
    def query_dense(self) -> _Projection:
        """The query's projection (Keras's EinsumDense "query"): kernel (dim, heads,
        key_dim), bias (heads, key_dim).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> attention = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)
            >>> _ = attention(np.ones((1, 3, 6)), np.ones((1, 5, 6)))
            >>> attention.query_dense.kernel.shape, attention._query_dense.bias.shape
            ((6, 2, 4), (2, 4))
        """
        return self._query_dense

    @property
    def key_dense(self) -> _Projection:
        """The key's projection (Keras's EinsumDense "key"), as `query_dense`."""
        return self._key_dense

    @property
    def value_dense(self) -> _Projection:
        """The value's projection (Keras's EinsumDense "value"), as `query_dense`."""
        return self._value_dense

    @property
    def output_dense(self) -> _Projection:
        """The heads' projection to the output (Keras's EinsumDense "attention_output"):
        kernel (heads, value_dim, output features), as `query_dense`."""
        return self._output_dense

    @kilnet_hook
    def _build_attention(self, rank):
        """Keras's hook that makes what `_compute_attention` uses, for projections of `rank`
        axes (batch, ..., heads, features): the attention axes resolved, the einsum
        equations `_dot_product_equation` (key, query -> scores) and `_combine_equation`
        (probabilities, value -> output), `_softmax` (over the key's attended axes of the
        scores, taking a mask) and `_dropout_layer` (the dropout of the probabilities). A
        subclass overriding it (or `_masked_softmax`) has the default `_compute_attention`
        go through these members, as Keras's does, instead of kilnet's fused kernels.

        Example:
            >>> import kilnet
            >>> attention = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)
            >>> _ = attention(kilnet.Input((3, 6)), kilnet.Input((5, 6)))
            >>> attention._dot_product_equation, attention._combine_equation
            ('aecd,abcd->acbe', 'acbe,aecd->abcd')
        """
        self.attention_axes = _resolved_axes(self.attention_axes, rank - 1)
        dot_product, combine = attention_equations(rank, self.attention_axes)
        attended = len(self.attention_axes)
        scores_rank = rank - 1 + attended
        set_untracked(self, "_dot_product_equation", dot_product)
        set_untracked(self, "_combine_equation", combine)
        set_untracked(self, "_softmax", ScoresSoftmax(
            tuple(range(scores_rank - attended, scores_rank))))
        set_untracked(self, "_dropout_layer", ScoresDropout(self))

    # -- calling ---------------------------------------------------------------------------------
    def __call__(self, query=None, value=None, key=None, *, query_mask=None, value_mask=None,
                 key_mask=None, **options):
        if query is None or value is None:
            raise TypeError("MultiHeadAttention is called on a query and a value: "
                            "mha(query, value) or mha(query, value, key=key). Received: "
                            f"query={_kind(query)}, value={_kind(value)}")
        unknown = sorted(set(options) - set(self.CALL_OPTIONS))
        if unknown:
            raise TypeError(f"MultiHeadAttention got unexpected call arguments {unknown}; it "
                            f"takes query, value, key and {list(self.CALL_OPTIONS)}.")
        _check_flag(options.get("return_attention_scores", False), "return_attention_scores")
        _check_flag(options.get("use_causal_mask", False), "use_causal_mask")
        inputs = [query, value] + ([] if key is None else [key])
        samples = [_sample_shape(t) for t in inputs]
        self._check_built_for(samples)
        try:
            shapes = list(self._input_shapes(samples))
        except ValueError as error:
            raise ValueError(f"Layer {self.name!r} (MultiHeadAttention): {error}") from None
        if isinstance(options.get("attention_mask"), KerasTensor):
            self._check_symbolic_mask(options["attention_mask"].shape, *shapes[:2])
        if key is not None:
            options["key"] = key
        for name, mask, shape in (("query_mask", query_mask, shapes[0]),
                                  ("value_mask", value_mask, shapes[1]),
                                  ("key_mask", key_mask, shapes[2])):
            if mask is not None:
                _check_sequence_mask(name, tuple(mask.shape), shape[:-1])
                options[name] = mask
        return super().__call__(query, value, **options)

    def automatic_masks(self, args, kwargs, mask_of) -> dict:
        """Keras's mask arguments, except `query_mask`: Keras's MultiHeadAttention takes the
        mask the query carries, in place of a given one (None where the query carries none).

        Example:
            >>> import numpy as np
            >>> from kilnet import layers
            >>> x, m = np.ones((1, 2, 4)), np.array([[True, False]])
            >>> attention = layers.MultiHeadAttention(num_heads=1, key_dim=2)
            >>> attention.automatic_masks((x, x), {"query_mask": m}, lambda t: None)
            {'query_mask': None}
        """
        found = super().automatic_masks(args, kwargs, mask_of)
        if "query" in self.consumes_masks_of:
            query = args[0] if args else kwargs.get("query")
            found["query_mask"] = None if query is None else mask_of(query)
        return found

    def call_input_shape(self, args, kwargs):
        """The query's, value's and key's shapes: the weights are built from all three."""
        inputs = list(args[:2]) + ([kwargs["key"]] if kwargs.get("key") is not None else [])
        return list(self._input_shapes([_sample_shape(t) for t in inputs]))

    def pack_symbolic_outputs(self, tensors):
        return tuple(tensors)  # (output, scores), as apply returns them

    def compute_call_output_shape(self, input_shape, kwargs):
        output = self.sample_output_shape(input_shape)
        if not kwargs.get("return_attention_scores", False):
            return output
        query, value, _ = self._input_shapes(input_shape)
        return [output, self._scores_shape(query, value)]

    def _check_symbolic_mask(self, mask_shape, query, value):
        if len(query) == 2:
            _check_mask_shape(mask_shape, query[0], value[0])
        else:
            _expanded_mask_shape(tuple(mask_shape), (None,) + self._scores_shape(query, value),
                                 len(_resolved_axes(self.attention_axes, len(query) + 1)),
                                 "attention_mask")

    def _check_built_for(self, shapes):
        """A layer called again (shared) must get the rank and feature sizes its weights and
        attention axes are for."""
        if self.build_shape is None:
            return
        built = self._input_shapes(self.build_shape)
        for name, got, expected in zip(("query", "value", "key"), shapes, built):
            if len(got) != len(expected):
                raise ValueError(
                    f"Layer {self.name!r} (MultiHeadAttention) is built for {name} of rank "
                    f"{len(expected) + 1}, shape {(None,) + expected}. Received: {name} of "
                    f"shape {(None,) + got}. Use another MultiHeadAttention layer for it")
            if got[-1] != expected[-1]:
                raise ValueError(
                    f"Layer {self.name!r} (MultiHeadAttention) is built for {name} with "
                    f"{expected[-1]} features. Received: {name} of shape {(None,) + got}")

    def apply(self, params, state, query, value, key=None, *, training=False, rng=None,
              sample_mask=None, attention_mask=None, return_attention_scores=False,
              use_causal_mask=False, query_mask=None, value_mask=None, key_mask=None):
        key = value if key is None else jnp.asarray(key)
        mask = self._compute_attention_mask(
            query, value, query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
            attention_mask=attention_mask, use_causal_mask=use_causal_mask)
        project = functools.partial(self._project, params=params, state=state,
                                    sample_mask=sample_mask)
        q = project(self._query_dense, x=query)      # (batch, T, heads, key_dim)
        k = project(self._key_dense, x=key)          # (batch, S, heads, key_dim)
        v = project(self._value_dense, x=value)      # (batch, S, heads, value_dim)
        k, v = self.heads_for_queries(k, v)
        # The heads attend in a scope binding the layer's own Variables (a subclass's
        # learned temperature) and giving its random key, so that an overriding
        # _compute_attention reads them as Keras's does.
        scope = self.scope_for(params, state, training=training, rng=rng,
                               sample_mask=sample_mask)
        with _scope.opened(scope):
            context, probs = self.attend_heads(q, k, v, mask, training,
                                               return_attention_scores)
        if self.use_gate:
            context = context * project(self._gate_dense, x=query)   # sigmoid gate
        output = project(self._output_dense, x=context)
        assigned = {v.name: scope.assigned[id(v)] for v in self._non_trainable_vars
                    if id(v) in scope.assigned}
        return ((output, probs) if return_attention_scores else output), {**state, **assigned}

    def attend_heads(self, query, key, value, attention_mask, training,
                     return_attention_scores):
        """(output, probabilities or None) of the projected heads: `_compute_attention`
        called as Keras's MultiHeadAttention calls it, so an override receives Keras's
        arguments (GroupQueryAttention calls it as Keras's GroupedQueryAttention does).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> attention = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)
            >>> q = np.ones((1, 3, 2, 4), np.float32)
            >>> output, probs = attention.attend_heads(q, q, q, None, False, False)
            >>> output.shape, probs
            ((1, 3, 2, 4), None)
        """
        return self._compute_attention(query, key, value, attention_mask, training,
                                       return_attention_scores)

    @kilnet_hook
    def _compute_attention_mask(self, query, value, query_mask=None, value_mask=None,
                                key_mask=None, attention_mask=None, use_causal_mask=False):
        """Keras's hook for the mask `_compute_attention` receives: attention_mask ANDed with
        the query's, value's and key's masks (a query step attends where it is real, to
        steps that are real), the causal mask and the sliding window, as booleans
        broadcasting to (batch, T, S), or None where nothing masks. Inputs of a higher rank
        give (batch, <query's positions>, <key's positions>) in the same way; the causal mask
        and the window order the positions of the one attended axis.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> attention = kilnet.layers.MultiHeadAttention(num_heads=1, key_dim=2)
            >>> x = np.ones((1, 3, 2))
            >>> attention._compute_attention_mask(x, x, use_causal_mask=True).astype(int).tolist()
            [[[1, 0, 0], [1, 1, 0], [1, 1, 1]]]
        """
        masks = (attention_mask, query_mask, value_mask, key_mask)
        combined = _with_sequence_masks(*masks)
        query_shape, value_shape = jnp.shape(query), jnp.shape(value)
        if len(query_shape) == 3:
            if combined is not None:
                _check_mask_shape(combined.shape, query_shape[1], value_shape[1])
            return _both(combined, self._positions_mask(use_causal_mask, query_shape[1],
                                                        value_shape[1]))
        axes = _resolved_axes(self.attention_axes, len(query_shape))
        if use_causal_mask or self.sliding_window is not None:
            if len(axes) != 1:
                raise ValueError(
                    "use_causal_mask and sliding_window order the positions of one attended "
                    f"axis, as Keras's; this layer attends over attention_axes={axes}. Pass "
                    "use_causal_mask=False and sliding_window=None, and give the order as an "
                    "attention_mask, or attend over a single axis")
            combined = _both(combined, self._positions_mask(
                use_causal_mask, query_shape[axes[0]], value_shape[axes[0]]))
        if combined is not None:
            given = [name for name, mask in zip(
                ("attention_mask", "query_mask", "value_mask", "key_mask"), masks)
                if mask is not None]
            scores_shape = (query_shape[0],) + self._scores_shape(query_shape[1:],
                                                                  value_shape[1:])
            _expanded_mask_shape(combined.shape, scores_shape, len(axes),
                                 " & ".join(given) or "the causal mask")
        return combined

    @kilnet_hook
    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        """Keras's hook for the heads' attention, which a subclass overrides to change it
        (keras.io's vit_small_ds scales the queries by a learned temperature). It receives the
        projected query (batch, T, heads, key_dim), not yet scaled, key (batch, S, heads,
        key_dim) and value (batch, S, heads, value_dim) (inputs of a higher rank: (batch,
        ..., heads, dim)), the mask `_compute_attention_mask` made (or None), the training
        flag and whether the scores are asked for; it returns the heads' output, laid out as
        the query with value_dim features, and the probabilities (batch, heads, T, S), or None
        when they are not asked for. `use_causal_mask`: AND a causal mask over the sequence
        (Keras's flag for its fused kernel; kilnet's call passes it in the mask).

        kilnet's own softmax and product (a written gradient, the batch split in parts on
        CPU) compute it, unless the class overrides `_masked_softmax` or `_build_attention`:
        then Keras's steps run through them (`_dot_product_equation`, `_masked_softmax`,
        `_dropout_layer`, `_combine_equation`).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> attention = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)
            >>> q = k = v = np.ones((1, 3, 2, 4), np.float32)
            >>> output, probs = attention._compute_attention(q, k, v,
            ...                                              return_attention_scores=True)
            >>> output.shape, np.allclose(probs, 1 / 3)        # equal scores: equal weights
            ((1, 3, 2, 4), True)
        """
        query, key, value = (jnp.asarray(t) for t in (query, key, value))
        if use_causal_mask:
            if query.ndim != 4:
                raise ValueError(
                    "_compute_attention(use_causal_mask=True) orders the positions of "
                    "(batch, T, heads, dim) projections, as Keras's. Received: query of shape "
                    f"{query.shape}. Give the causal order in attention_mask "
                    "(_compute_attention_mask(..., use_causal_mask=True) makes it)")
            attention_mask = _both(None if attention_mask is None
                                   else jnp.asarray(attention_mask) != 0,
                                   self._positions_mask(True, query.shape[1], key.shape[1]))
        if training is None:
            training = _scope.training_flag()
        if self._overrides("_masked_softmax") or self._overrides("_build_attention"):
            return self._attention_by_equations(query, key, value, attention_mask, training)
        # Keras's arguments carry no random key: the dropout draws from the one apply gave,
        # which the scope apply opened holds (the same key as before the hooks existed)
        scope = _scope.current()
        rng = None if scope is None else scope.rng
        attend = self._attend_sequence if query.ndim == 4 else self._attend_over_axes
        return attend(query, key, value, attention_mask, bool(training), rng,
                      return_attention_scores)

    @kilnet_hook
    def _masked_softmax(self, attention_scores, attention_mask=None):
        """Keras's hook for the probabilities: `_softmax` of the scores, the mask given the
        axes it lacks just before its last 2 * len(attention_axes) axes (the heads', and the
        batch-like ones), as Keras's. A subclass overriding it has the default
        `_compute_attention` take Keras's steps through it.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> attention = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)
            >>> _ = attention(np.ones((1, 2, 4)), np.ones((1, 2, 4)))
            >>> mask = np.array([[[True, False], [True, True]]])
            >>> np.asarray(attention._masked_softmax(np.zeros((1, 2, 2, 2)), mask))[0, 1].tolist()
            [[1.0, 0.0], [0.5, 0.5]]
        """
        if attention_mask is not None:
            attention_mask = jnp.asarray(attention_mask)
            axis = -2 * len(self.attention_axes) - 1
            while attention_mask.ndim < jnp.ndim(attention_scores):
                attention_mask = jnp.expand_dims(attention_mask, axis)
        return self._softmax(attention_scores, mask=attention_mask)

    def _attention_by_equations(self, query, key, value, attention_mask, training):
        """Keras's attention step by step, through the members a subclass may replace: the
        query scaled, the scores by `_dot_product_equation`, `_masked_softmax`, the dropout
        of `_dropout_layer`, the output by `_combine_equation`."""
        query = query * jnp.asarray(self._inverse_sqrt_key_dim, query.dtype)
        probs = self._masked_softmax(self.dot_product(query, key), attention_mask)
        kept = self._dropout_layer(probs, training=training) if self.dropout > 0 else probs
        return jnp.einsum(self._combine_equation, kept, value), probs

    def dot_product(self, query, key):
        """The scores of the scaled query and the key by `_dot_product_equation`, whose
        operands come in Keras's order for the class (MultiHeadAttention's: key, query).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> attention = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)
            >>> _ = attention(np.ones((1, 3, 6)), np.ones((1, 5, 6)))
            >>> attention.dot_product(np.ones((1, 3, 2, 4)), np.ones((1, 5, 2, 4))).shape
            (1, 2, 3, 5)
        """
        return jnp.einsum(self._dot_product_equation, key, query)

    def _overrides(self, method: str) -> bool:
        """Whether a class of yours replaces kilnet's `method` (one of Keras's hooks)."""
        return not getattr(getattr(type(self), method), "kilnet_default", False)

    def _attend_sequence(self, q, k, v, mask, training, rng, return_attention_scores):
        """(context, probabilities or None) of (batch, sequence, heads, dim) projections and
        a mask broadcasting to (batch, T, S)."""
        q = q * (1.0 / math.sqrt(self.key_dim))
        if mask is not None:
            while mask.ndim < 4:   # the heads axis, then a batch axis
                mask = jnp.expand_dims(mask, -3)
            if self.dropout == 0 and not return_attention_scores:
                q, mask = _uniform_where_nothing_attended(q, mask)
        return self._attend_scaled(q, k, v, mask, training, rng, return_attention_scores)

    def _attend_over_axes(self, q, k, v, mask, training, rng, return_attention_scores):
        """Attention over `attention_axes` of projections of a higher rank, (batch, ...,
        heads, dim), as Keras's einsums compute it. The batch-like axes are folded into the
        batch and the attended ones into one sequence (`_AxesFolding`), so the sequence
        kernels and their written-out gradient serve: a softmax over the flattened key
        positions is Keras's softmax over the key's attended axes together."""
        folding = _AxesFolding(_resolved_axes(self.attention_axes, q.ndim - 1), q.shape,
                               k.shape)
        q, k, v = folding.fold(q), folding.fold(k), folding.fold(v)
        q = q * (1.0 / math.sqrt(self.key_dim))
        if mask is not None:
            mask = folding.fold_mask(mask, heads=q.shape[2])
        context, probs = self._attend_scaled(q, k, v, mask, training, rng,
                                            return_attention_scores)
        return (folding.unfold_context(context),
                None if probs is None else folding.unfold_scores(probs))

    def _attend_scaled(self, q, k, v, mask, training, rng, return_attention_scores):
        """(context, probabilities or None) for q (batch, T, heads, d) already scaled, k and v
        (batch, S, heads, d) and a boolean mask broadcasting to (batch, heads, T, S)."""
        if not return_attention_scores:
            # softmax and product with a written-out gradient (`attend`; the Transformer bench
            # epoch 1.04-1.09x faster, in-process A/B)
            keep = _dropout_scale((q.shape[0], q.shape[2], q.shape[1], k.shape[1]), q.dtype,
                                  self.dropout, training, rng, self)
            return attend_in_parts(q, k, v, mask, keep), None
        probs = attention_probabilities(_heads_product("btnh,bsnh->bnts", q, k), mask)
        kept = _dropout(probs, self.dropout, training, rng, self)
        return _heads_product("bnts,bsnh->btnh", kept, v), probs

    def heads_for_queries(self, k, v):
        """The key and value heads each query head attends with, (batch, S, num_heads, dim):
        here the projected ones; GroupedQueryAttention repeats its fewer shared heads."""
        return k, v

    def _project(self, projection, params, state, x, sample_mask=None):
        # the state holds a quantized projection's int8 kernel and scale
        return projection.apply(params[projection.name], state.get(projection.name, {}), x,
                                sample_mask=sample_mask)[0]

    def _positions_mask(self, use_causal_mask, t, s):
        """The boolean (1, T, S) mask of the (query, key) positions the causal mask and the
        sliding window allow (Keras's shape for them), or None where neither applies."""
        rows, cols = jnp.arange(t)[None, :, None], jnp.arange(s)[None, None, :]
        masks = []
        if use_causal_mask:
            masks.append(rows >= cols)
        if self.sliding_window is not None:
            masks.append(jnp.abs(rows - cols) < self.sliding_window)
        combined = None
        for mask in masks:
            combined = _both(combined, mask)
        return combined


class ScoresSoftmax:
    """Keras's Softmax layer as MultiHeadAttention keeps it in `_softmax`: `softmax(scores,
    mask=None)` over `axis`, the last axes of the scores (the key's attended ones, together),
    masked positions (False, or at most 0.5) getting no weight and a row masked throughout
    giving zeros. kilnet's attention softmax computes it.

    Example:
        >>> import numpy as np
        >>> softmax = ScoresSoftmax((2, 3))
        >>> np.asarray(softmax(np.zeros((1, 1, 2, 2)), mask=np.array([[1, 1], [1, 0]])))
        array([[[[0.33333334, 0.33333334],
                 [0.33333334, 0.        ]]]], dtype=float32)
    """

    def __init__(self, axis):
        self.axis = tuple(axis)

    def __call__(self, inputs, mask=None):
        inputs = jnp.asarray(inputs)
        if mask is not None:
            mask = jnp.asarray(mask)
            if not _broadcasts(mask.shape, inputs.shape):
                raise ValueError(
                    f"the mask of the attention softmax must broadcast to the scores, of shape "
                    f"{inputs.shape}. Received: mask of shape {mask.shape}. Give it the "
                    "scores' axes (size 1 where it is shared)")
            mask = mask if mask.dtype == jnp.bool_ else mask > 0.5   # Keras's rule
        rows = inputs.shape[:inputs.ndim - len(self.axis)] + (-1,)
        if mask is not None and len(self.axis) > 1:
            mask = jnp.broadcast_to(mask, inputs.shape).reshape(rows)
        return attention_probabilities(inputs.reshape(rows), mask).reshape(inputs.shape)


class ScoresDropout:
    """Keras's Dropout layer as MultiHeadAttention keeps it in `_dropout_layer`:
    `dropout(probabilities, training=None)` zeroes them with the layer's `rate` in training
    (None: the running call's flag) and scales the rest by 1 / (1 - rate), drawing from the
    running call's key.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> attention = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5)
        >>> dropout = ScoresDropout(attention)
        >>> dropout.rate, np.asarray(dropout(np.ones((2, 2)), training=False)).tolist()
        (0.5, [[1.0, 1.0], [1.0, 1.0]])
    """

    def __init__(self, layer):
        self.layer = layer

    @property
    def rate(self) -> float:
        return self.layer.dropout

    def __call__(self, inputs, training=None):
        inputs = jnp.asarray(inputs)
        if training is None:
            training = _scope.training_flag()
        if not training or self.rate == 0.0:
            return inputs
        return _dropout(inputs, self.rate, True, _scope.next_rng(), self.layer)


class Attention(Layer):
    """Dot-product attention (Luong-style), as Keras's Attention: called on `[query, value]`
    or `[query, value, key]` (the key defaults to the value),
    `output = softmax(query @ key^T) @ value`.

    Args:
        use_scale: learn a scalar `scale` multiplying the scores.
        score_mode: "dot" (`query @ key^T`) or "concat" (`concat_score_weight *
            sum(tanh(scale * (query + key)))` over features, per query and key position).
        dropout: dropout rate on the attention probabilities (in training).
        seed: the start of the dropout's SeedGenerator state (made when dropout > 0, as
            Keras's); a compiled step's key decides the draws there.

    Call arguments: `layer([query, value, key], mask=None, return_attention_scores=False,
    training=None, use_causal_mask=False)` with query (batch, Tq, dim), value (batch, Tv,
    dim_v), key (batch, Tv, dim). `mask=[query_mask, value_mask]`, booleans of shapes (batch,
    Tq) and (batch, Tv), must be given in the call (kilnet does not carry sequence masks from
    layer to layer yet): value positions masked out get no attention, query positions masked
    out give zeros. Returns (batch, Tq, dim_v), and with return_attention_scores=True also the
    probabilities (batch, Tq, Tv).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> query = np.array([[[1.0, 0.0]]])
        >>> value = np.array([[[100.0, 0.0], [0.0, 1.0]]])
        >>> out, scores = kilnet.layers.Attention()([query, value], return_attention_scores=True)
        >>> np.round(np.asarray(scores), 3).tolist()
        [[[1.0, 0.0]]]
        >>> kilnet.layers.Attention()(
        ...     [kilnet.Input(shape=(3, 4)), kilnet.Input(shape=(5, 6)),
        ...      kilnet.Input(shape=(5, 4))]).shape
        (None, 3, 6)
    """

    config_keys = ("use_scale", "score_mode", "dropout", "seed")
    CALL_OPTIONS = ("mask", "return_attention_scores", "training", "use_causal_mask")

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"score_mode must be 'dot' or 'concat'. Received: "
                             f"score_mode={score_mode!r}")
        self.use_scale = _check_bool(use_scale, "use_scale")
        self.score_mode = score_mode
        self.dropout = _rate(dropout)
        self.seed = seed   # kept for the config, as Keras's
        if self.dropout > 0:   # as Keras's
            self.seed_generator = random.SeedGenerator(seed)

    @property
    def param_names(self):
        return ((("scale",) if self.use_scale else ())
                + (("concat_score_weight",) if self.score_mode == "concat" else ()))

    def _input_shapes(self, input_shape):
        if is_shape(input_shape) or not isinstance(input_shape, (list, tuple)) or not (
                2 <= len(input_shape) <= 3):
            raise ValueError("Attention is called on a list [query, value] or [query, value, "
                             f"key]. Received: inputs of shape {input_shape}")
        query, value = (tuple(s) for s in input_shape[:2])
        key = tuple(input_shape[2]) if len(input_shape) == 3 else value
        for name, shape in (("query", query), ("value", value), ("key", key)):
            if len(shape) != 2:
                raise ValueError(f"Attention takes {name} of shape (batch, steps, features). "
                                 f"Received: {name} of shape {(None,) + shape}")
        if None not in (value[0], key[0]) and value[0] != key[0]:
            raise ValueError(f"value and key must have the same number of steps. Received: "
                             f"value of shape {(None,) + value}, key of shape {(None,) + key}")
        if None not in (query[-1], key[-1]) and query[-1] != key[-1]:
            raise ValueError(f"query and key must have the same number of features (their "
                             f"scores compare them). Received: query of shape "
                             f"{(None,) + query}, key of shape {(None,) + key}")
        return query, value, key

    def sample_output_shape(self, input_shape):
        query, value, _ = self._input_shapes(input_shape)
        return query[:-1] + (value[-1],)

    def init(self, rng, input_shape):
        self._input_shapes(input_shape)
        params = {name: initializers.initial_values("ones", rng, ()) for name in self.param_names}
        return params, {}, self.sample_output_shape(input_shape)

    def pack_symbolic_outputs(self, tensors):
        return tuple(tensors)  # (output, scores), as apply returns them

    def compute_mask(self, inputs, previous_mask=None):
        """The query's mask passes on (Keras)."""
        return None if previous_mask is None else list(previous_mask)[0]

    def compute_call_output_shape(self, input_shape, kwargs):
        unknown = sorted(set(kwargs) - set(self.CALL_OPTIONS))
        if unknown:
            raise TypeError(f"Attention got unexpected call arguments {unknown}; it takes "
                            f"inputs and {list(self.CALL_OPTIONS)}.")
        _check_flag(kwargs.get("return_attention_scores", False), "return_attention_scores")
        _check_flag(kwargs.get("use_causal_mask", False), "use_causal_mask")
        _check_mask_list(kwargs.get("mask"))
        output = self.sample_output_shape(input_shape)
        if not kwargs.get("return_attention_scores", False):
            return output
        query, value, _ = self._input_shapes(input_shape)
        return [output, (query[0], value[0])]

    def apply(self, params, state, inputs, *, training=False, rng=None, sample_mask=None,
              mask=None, return_attention_scores=False, use_causal_mask=False):
        self._input_shapes([tuple(jnp.shape(t))[1:] for t in _as_list(inputs)])
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) == 3 else value
        query_mask, value_mask = _check_mask_list(mask)
        scores = self._scores(params, query, key)                 # (batch, Tq, Tv)
        allowed = None
        if value_mask is not None:
            allowed = (jnp.asarray(value_mask) != 0)[:, None, :]
        if use_causal_mask:
            tq, tv = scores.shape[-2:]
            causal = (jnp.arange(tq)[:, None] >= jnp.arange(tv)[None, :])[None]
            allowed = causal if allowed is None else allowed & causal
        if allowed is not None:
            # As Keras's Attention: masked scores lowered by 1e9 (no zeroing afterwards).
            scores = jnp.where(allowed, scores, scores - 1e9)
        probs = jax.nn.softmax(scores, axis=-1)
        output = _stacked_product(_dropout(probs, self.dropout, training, rng, self),
                                  value)
        if query_mask is not None:
            output = jnp.where((jnp.asarray(query_mask) != 0)[..., None], output, 0.0)
        return ((output, probs) if return_attention_scores else output), state

    def _scores(self, params, query, key):
        if self.score_mode == "dot":
            scores = _stacked_product(query, key, transpose_b=True)
            return scores * params["scale"] if self.use_scale else scores
        pairs = query[:, :, None, :] + key[:, None, :, :]      # (batch, Tq, Tv, dim)
        if self.use_scale:
            pairs = params["scale"] * pairs
        return params["concat_score_weight"] * jnp.tanh(pairs).sum(axis=-1)


class AdditiveAttention(Attention):
    """Bahdanau-style additive attention, as Keras's AdditiveAttention: scores
    `sum(scale * tanh(query + key))` over the features, for every query and key position,
    then Attention's softmax, masks, dropout and weighted sum of the values.

    Args:
        use_scale: learn a per-feature `scale` (shape (dim,), Glorot-uniform initialized, as
            Keras's); False: scale 1.
        dropout: dropout rate on the attention probabilities (in training).

    Call arguments as Attention's: `layer([query, value, key], mask=None,
    return_attention_scores=False, training=None, use_causal_mask=False)`.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.AdditiveAttention()
        >>> out = layer([np.ones((2, 3, 4)), np.ones((2, 5, 4))])
        >>> out.shape, [w.shape for w in layer.weights]
        ((2, 3, 4), [(4,)])
    """

    config_keys = ("use_scale", "dropout", "seed")

    def __init__(self, use_scale=True, dropout=0.0, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    @property
    def param_names(self):
        return ("scale",) if self.use_scale else ()

    def init(self, rng, input_shape):
        query, _, _ = self._input_shapes(input_shape)
        params = ({"scale": initializers.initial_values("glorot_uniform", rng, (query[-1],))}
                  if self.use_scale else {})
        return params, {}, self.sample_output_shape(input_shape)

    def _scores(self, params, query, key):
        pairs = jnp.tanh(query[:, :, None, :] + key[:, None, :, :])    # (batch, Tq, Tv, dim)
        return (params["scale"] * pairs if self.use_scale else pairs).sum(axis=-1)


# -- helpers ---------------------------------------------------------------------------------------
def _check_mask_shape(shape, t, s):
    """attention_mask is (batch, T, S), or a shape that broadcasts to it ((T, S), (batch, 1,
    S), ...); None stands for a size not known yet."""
    def fits(got, wanted):
        return got is None or wanted is None or got in (wanted, 1)

    if not 2 <= len(shape) <= 4 or not (fits(shape[-2], t) and fits(shape[-1], s)):
        raise ValueError(f"attention_mask must have the shape (batch, T, S) = (batch, {t}, "
                         f"{s}) or broadcast to it. Received: attention_mask of shape "
                         f"{tuple(shape)}")


class _AxesFolding:
    """How projections of a higher rank, (batch, ..., heads, dim), attend over `axes` with the
    sequence kernels: the batch-like axes (neither the batch, attended, heads nor dim) join
    the batch, the attended ones become one sequence, in the order `axes` lists them (Keras's
    order for the scores' axes), and back.

    Example:
        >>> import numpy as np
        >>> q = np.zeros((2, 3, 5, 4, 8))               # (batch, patches, tokens, heads, dim)
        >>> folding = _AxesFolding((2,), q.shape, q.shape)
        >>> folding.fold(q).shape                          # tokens attend, patches batch-like
        (6, 5, 4, 8)
        >>> folding.unfold_scores(np.zeros((6, 4, 5, 5))).shape
        (2, 3, 4, 5, 5)
    """

    def __init__(self, axes, query_shape, key_shape):
        rank = len(query_shape)
        self.axes = tuple(axes)
        batch_like = tuple(a for a in range(1, rank - 2) if a not in self.axes)
        self.order = (0,) + batch_like + self.axes + (rank - 2, rank - 1)
        self.lead = tuple(query_shape[a] for a in (0,) + batch_like)
        self.query_positions = tuple(query_shape[a] for a in self.axes)
        self.key_positions = tuple(key_shape[a] for a in self.axes)

    def fold(self, x):
        """(batch, ..., heads, dim) -> (batch * batch-like sizes, positions, heads, dim)."""
        x = jnp.transpose(x, self.order)
        positions = math.prod(x.shape[len(self.lead):-2])
        return x.reshape((math.prod(self.lead), positions) + x.shape[-2:])

    def unfold_context(self, context):
        """The folded (batch, T, heads, dim) back in the query's layout."""
        context = context.reshape(self.lead + self.query_positions + context.shape[-2:])
        return jnp.transpose(context, tuple(np.argsort(self.order)))

    def unfold_scores(self, probs):
        """The folded (batch, heads, T, S) as Keras's (batch, <batch-like axes>, heads,
        <query's attended axes>, <key's attended axes>)."""
        return probs.reshape(self.lead + probs.shape[1:2] + self.query_positions
                             + self.key_positions)

    def fold_mask(self, mask, heads, what="attention_mask"):
        """A boolean mask, Keras-expanded and checked against the scores, folded to (batch or
        1, heads or 1, T, S) for the sequence kernels."""
        scores_shape = self.lead + (heads,) + self.query_positions + self.key_positions
        mask = mask.reshape(_expanded_mask_shape(mask.shape, scores_shape, len(self.axes),
                                                 what))
        lead = len(self.lead)
        # a mask shared by every sample stays one, not a copy per sample
        shared = all(size == 1 for size in mask.shape[:lead])
        lead_shape = mask.shape[:lead] if shared else self.lead
        mask = jnp.broadcast_to(mask, lead_shape + mask.shape[lead:lead + 1]
                                + self.query_positions + self.key_positions)
        return mask.reshape((math.prod(lead_shape), mask.shape[lead],
                             math.prod(self.query_positions), math.prod(self.key_positions)))


def _expanded_mask_shape(shape, scores_shape, attended, what) -> tuple:
    """The mask's shape with the axes it lacks, as Keras adds them: one at a time just before
    its last 2 * attended axes (the query's and key's attended positions), so (batch, T...,
    S...) gets the heads and batch-like axes; checked to broadcast to the scores. None stands
    for a size not known yet."""
    shape, tail = tuple(shape), 2 * attended
    missing = len(scores_shape) - len(shape)
    expanded = shape[:len(shape) - tail] + (1,) * missing + shape[len(shape) - tail:]
    if missing < 0 or (missing and len(shape) < tail) or not all(
            got in (None, 1, wanted) or wanted is None
            for got, wanted in zip(expanded, scores_shape)):
        named = ", ".join("batch" if size is None else str(size) for size in scores_shape)
        raise ValueError(
            f"{what} must broadcast to the attention scores, of shape (batch, <batch-like "
            f"axes>, heads, <query's attended axes>, <key's attended axes>) = ({named}), once "
            f"the axes it lacks are added before its last {tail} axes, as Keras adds them (a "
            f"(batch, <query's attended axes>, <key's attended axes>) mask gets the heads and "
            f"batch-like axes). Received: {what} of shape {shape}")
    return expanded


# XLA's CPU backend computes a batched matrix product's batch elements one after another on one
# core; the products of two halves of the batch are independent and XLA runs them side by side.
# The bench Transformer's 10-step epochs 1.10-1.24x faster with two parts, 0.99-1.03x with four
# (three in-process A/Bs, 2-core AMD EPYC); its full epoch 35.0 -> 27.2 s with the 2-D Dense.
_CPU_ATTENTION_PARTS = 2


def attend_in_parts(q, k, v, mask=None, keep=None):
    """`attend` on the batch split in parts (on CPU), the outputs joined again; a per-sample
    mask and the dropout factors are split with the batch, a mask shared by every sample is
    given whole to each part.

    Example:
        >>> import numpy as np
        >>> q, k, v = (np.random.default_rng(0).normal(size=(4, 3, 2, 5)) for _ in range(3))
        >>> bool(np.allclose(attend_in_parts(q, k, v), attend(q, k, v)))
        True
    """
    parts = min(_CPU_ATTENTION_PARTS, q.shape[0]) if (
        jax.default_backend() == "cpu" and isinstance(q.shape[0], int)) else 1
    if parts < 2:   # (one part too for a symbolic batch size, while shapes are traced)
        return attend(q, k, v, mask, keep)
    per_sample = mask is not None and mask.ndim == 4 and mask.shape[0] > 1
    masks = jnp.array_split(mask, parts) if per_sample else [mask] * parts
    keeps = [None] * parts if keep is None else jnp.array_split(keep, parts)
    return jnp.concatenate([attend(*part) for part in zip(
        *(jnp.array_split(t, parts) for t in (q, k, v)), masks, keeps)])


@custom_vjp(eager_compiled=True)   # an eager call: one program, not a dozen operations
def attend(q, k, v, mask=None, keep=None):
    """softmax(q k^T) v per head, for q (batch, T, heads, d) already scaled, k (batch, S,
    heads, d) and v (batch, S, heads, dv): (batch, T, heads, dv). `mask`, None or booleans
    broadcasting to (batch, heads, T, S), says which keys each query may attend to, as Keras's
    masked softmax: masked keys get no weight, and a query allowed no key gives zeros. `keep`,
    None or (batch, heads, T, S) factors, multiplies the probabilities (dropout's kept
    entries scaled by 1 / (1 - rate), the rest 0).

    Its gradient is written out (as flash attention's): with e = exp(s - max s) and l its row
    sums, the forward pass keeps e and divides the (T, dv) output by l instead of the (T, S)
    probabilities, and the backward pass gets the softmax's row term from the output,
    `D = sum(dout * out)` over dv, where JAX's derivative sums over the (T, S) scores.

    Example:
        >>> import numpy as np
        >>> q = k = np.ones((1, 2, 1, 1)); v = np.array([[[[1.0]], [[3.0]]]])
        >>> attend(q, k, v).ravel().tolist()      # equal scores: the mean of the values
        [2.0, 2.0]
        >>> causal = np.tril(np.ones((2, 2), bool))
        >>> attend(q, k, v, causal).ravel().tolist()
        [1.0, 2.0]
    """
    probs = attention_probabilities(_heads_product("btnh,bsnh->bnts", q, k), mask)
    return _heads_product("bnts,bsnh->btnh", probs if keep is None else _times(probs, keep), v)


def _uniform_where_nothing_attended(q, mask):
    """(q, mask) for which a query allowed no key attends to every key alike, as Keras's
    fused path (`ops.dot_product_attention`, taken without dropout or returned scores) does:
    its scores are all the same large negative number there, so the weights are uniform (the
    mean of the values), where Keras's einsum path, and `attend`, give zeros. That query's
    scores become 0 (its row of q zeroed) and its keys all allowed; the gradient reaching q
    and k through it is 0, as through Keras's constant scores. q: (batch, T, heads, d);
    mask: booleans broadcasting to (batch, heads, T, S).

    Example:
        >>> import numpy as np
        >>> q = np.ones((1, 2, 1, 1), np.float32)
        >>> mask = np.array([[[[True, False], [False, False]]]])
        >>> q2, mask2 = _uniform_where_nothing_attended(q, mask)
        >>> q2.ravel().tolist(), mask2.tolist()
        ([1.0, 0.0], [[[[True, False], [True, True]]]])
    """
    mask = jnp.asarray(mask)
    nothing = ~jnp.any(mask, axis=-1, keepdims=True)             # (batch, heads, T, 1)
    q = jnp.where(jnp.swapaxes(nothing, 1, 2), jnp.zeros((), q.dtype), q)
    return q, mask | nothing


def attention_probabilities(scores, mask=None):
    """softmax over the last axis, as Keras's masked Softmax where `mask` (booleans) is given:
    masked scores pushed to -1e9, masked probabilities zeroed (so a fully masked row attends
    to nothing rather than to everything).

    Example:
        >>> import numpy as np
        >>> scores = np.zeros((2, 2))
        >>> attention_probabilities(scores, np.array([[True, False], [False, False]])).tolist()
        [[1.0, 0.0], [0.0, 0.0]]
    """
    if mask is None:
        return _softmax(scores)
    return jnp.where(mask, _softmax(jnp.where(mask, scores, _MASKED)), 0.0)


def _softmax(scores):
    """softmax over the last axis, its row maxima taken by `row_max`."""
    e = jnp.exp(scores - jax.lax.stop_gradient(row_max(scores)))
    return e / e.sum(axis=-1, keepdims=True)


# XLA's CPU backend rewrites a reduction over more than 32 numbers into a windowed reduction
# (its tree reduction pass, for accuracy) that it runs one window at a time, unvectorized: the
# bench Transformer's row maxima of the (32, 2, 200, 200) scores took 4.4 ms a step each. A
# maximum is the same whatever the order, so `row_max` takes it as the elementwise maximum of a
# row's slices (at most `_ROW_SLICES` of them, at least 8 numbers wide: one fused, vectorized
# loop), then the maximum of that one short slice. (Two reductions in a row are merged back
# into one by XLA, and rewritten again.)
_ROW_SLICES = 32


def row_max(x):
    """`x.max(axis=-1, keepdims=True)`, the same numbers, taken in slices on the CPU.

    Example:
        >>> import numpy as np
        >>> x = np.arange(600.0).reshape(2, 300) % 257
        >>> row_max(x).tolist() == x.max(axis=-1, keepdims=True).tolist()
        True
    """
    x = jnp.asarray(x)
    length = x.shape[-1]
    if jax.default_backend() != "cpu" or length <= 32:
        return x.max(axis=-1, keepdims=True)
    per_slice = -(-length // _ROW_SLICES)          # ceil: at most _ROW_SLICES slices
    width = max(8, -(-per_slice // 8) * 8)          # whole vectors of 8 float32
    whole = length - length % width
    maxima = functools.reduce(jnp.maximum, [x[..., i:i + width] for i in range(0, whole, width)])
    maxima = maxima.max(axis=-1, keepdims=True)
    if whole < length:
        maxima = jnp.maximum(maxima, x[..., whole:].max(axis=-1, keepdims=True))
    return maxima


def _attend_forward(q, k, v, mask, keep):
    scores = _heads_product("btnh,bsnh->bnts", q, k)
    if mask is None:
        e = jnp.exp(scores - row_max(scores))
    else:
        allowed = jnp.where(mask, scores, _MASKED)
        e = jnp.where(mask, jnp.exp(scores - row_max(allowed)), 0.0)
    # The row sums come out of the output's product, as a column of ones appended to v: one
    # pass over the (T, S) scores fewer (XLA CPU runs a reduction that long as a slow
    # reduce-window): Transformer epoch 1.04-1.06x, in-process A/B.
    ones = jnp.ones(v.shape[:-1] + (1,), v.dtype)
    if keep is None:
        product = _heads_product("bnts,bsnh->btnh", e, jnp.concatenate([v, ones], axis=-1))
        unscaled, row_sums = product[..., :-1], product[..., -1:]     # (batch, T, heads, 1)
    else:  # dropout: the row sums are of the undropped e
        unscaled = _heads_product("bnts,bsnh->btnh", _times(e, keep), v)
        row_sums = _heads_product("bnts,bsnh->btnh", e, ones)
    if mask is not None:  # a query allowed no key: unscaled is 0, and so is its output
        row_sums = jnp.where(row_sums > 0, row_sums, 1.0)
    out = unscaled / row_sums
    return out, (q, k, v, e, row_sums, out, keep)


def _attend_backward(residuals, d_out):
    """With dropout factors m on the probabilities p = e / l (out = (p m) v), the row term
    sum(p m dP') is still sum(dout * out): ds = e (m dP' - D) / l, with dP' = dout v^T."""
    q, k, v, e, row_sums, out, keep = residuals
    d_scaled = d_out / row_sums                                       # dout / l
    row_term = jnp.sum(d_out * out, axis=-1, keepdims=True) / row_sums  # D / l
    d_v = _heads_product("bnts,btnh->bsnh", e if keep is None else _times(e, keep), d_scaled)
    d_e = _heads_product("btnh,bsnh->bnts", d_scaled, v)
    if keep is not None:
        d_e = _times(d_e, keep)
    d_scores = e * (d_e - jnp.transpose(row_term, (0, 2, 1, 3)))     # 0 where e is masked
    d_q = _heads_product("bnts,bsnh->btnh", d_scores, k)
    d_k = _heads_product("bnts,btnh->bsnh", d_scores, q)
    return d_q, d_k, d_v, None, None


attend.defvjp(_attend_forward, _attend_backward)


# The three products per head, as (batch * heads) stacks of matrices: pattern -> (how each operand
# becomes a stack, transpose_a, transpose_b, how the result's stack is laid out).
_STACKED = {
    "btnh,bsnh->bnts": ("heads", "heads", False, True, "scores"),
    "bnts,bsnh->btnh": ("scores", "heads", False, False, "heads"),
    "bnts,btnh->bsnh": ("scores", "heads", True, False, "heads"),
}


def _stacked_product(a, b, transpose_b=False):
    """a @ b (b transposed where asked) for (batch, rows, cols) stacks: Attention's products,
    bfloat16 ones on oneDNN where it takes them (see `_heads_product`)."""
    if onednn_matmul.accepts(a, b, False, transpose_b):
        return onednn_matmul.batched_matmul_onednn(a, b, False, transpose_b)
    return a @ (jnp.swapaxes(b, -2, -1) if transpose_b else b)


def _heads_product(pattern, x, y):
    """jnp.einsum(pattern, x, y) for MultiHeadAttention's products per head. bfloat16 ones
    (mixed_bfloat16) run on oneDNN where it takes them (`onednn_matmul.accepts`): XLA's CPU
    backend computes a bfloat16 product in float32. Bench Transformer under mixed_bfloat16
    (1,280 samples, in-process A/B, 2-core Xeon with AMX): epoch 2.57 -> 1.74 s. float32
    ones stay XLA's: oneDNN's float32 stacks measured 0.98-1.04x there (1.73 against 1.77 s
    on one thread, 1.67 against 1.61 on two)."""
    x_form, y_form, transpose_x, transpose_y, out_form = _STACKED[pattern]
    if x.dtype != jnp.bfloat16 or y.dtype != jnp.bfloat16:
        return jnp.einsum(pattern, x, y)
    a, b = _as_stack(x, x_form), _as_stack(y, y_form)
    if not onednn_matmul.accepts(a, b, transpose_x, transpose_y):
        return jnp.einsum(pattern, x, y)
    product = onednn_matmul.batched_matmul_onednn(a, b, transpose_x, transpose_y)
    batch, heads = x.shape[0], (x.shape[1] if x_form == "scores" else x.shape[2])
    product = product.reshape((batch, heads) + product.shape[1:])
    return product if out_form == "scores" else jnp.transpose(product, (0, 2, 1, 3))


def _as_stack(array, form):
    """(batch, steps, heads, width) per-head arrays, or (batch, heads, T, S) scores, as a
    (batch * heads, rows, cols) stack of matrices."""
    if form == "heads":
        array = jnp.transpose(array, (0, 2, 1, 3))
    return array.reshape((-1,) + array.shape[2:])


def _dropout(probs, rate, training, rng, layer):
    """Keras's attention dropout: zero probabilities with `rate` in training, scale the rest."""
    keep = _dropout_scale(probs.shape, probs.dtype, rate, training, rng, layer)
    return probs if keep is None else _times(probs, keep)


def _times(x, keep):
    """x times the dropout factors, in x's dtype."""
    return (x * keep).astype(x.dtype)


def _dropout_scale(shape, dtype, rate, training, rng, layer):
    """None outside training or without dropout, else the factors dropout multiplies the
    probabilities by: 0 with probability `rate`, else 1 / (1 - rate)."""
    if not training or rate == 0.0:
        return None
    keep = keep_mask(layer.random_key(rng), 1.0 - rate, shape)
    # float32 at least: in bfloat16 1 / (1 - rate) would be off by up to 0.4%, a bias
    return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(jnp.promote_types(dtype,
                                                                           jnp.float32))


def _sample_shape(tensor) -> tuple:
    """The shape of an input without its batch axis (symbolic tensors, arrays, lists)."""
    shape = tensor.shape if isinstance(tensor, KerasTensor) else np.shape(tensor)
    if len(shape) < 1:
        raise ValueError(f"attention inputs need a batch axis. Received: an input of shape "
                         f"{tuple(shape)}")
    return tuple(None if d is None else int(d) for d in shape[1:])


def _as_list(inputs):
    if not isinstance(inputs, (list, tuple)):
        raise ValueError("Attention is called on a list [query, value] or [query, value, key]. "
                         f"Received: {type(inputs).__name__}")
    return list(inputs)


def _check_mask_list(mask):
    """Attention's mask: None, or [query_mask, value_mask] (either may be None)."""
    if mask is None:
        return None, None
    if not isinstance(mask, (list, tuple)) or not 2 <= len(mask) <= 3:
        raise ValueError("Attention's mask must be a list [query_mask, value_mask] (either may "
                         f"be None). Received: mask={mask!r:.200}")
    return mask[0], mask[1]


def _check_sequence_mask(name, shape, positions):
    """A query/value/key mask: (batch, *positions), one flag per position of its input (every
    axis but the features; (batch, steps) for a sequence)."""
    if len(shape) != len(positions) + 1 or not _same_sizes(shape[1:], positions):
        raise ValueError(f"{name} must have the shape (batch, "
                         f"{', '.join(str(size) for size in positions)}): one flag per step "
                         f"of its input (all its axes but the features). Received: {name} of "
                         f"shape {shape}")


def _same_sizes(sizes, others) -> bool:
    """Two shapes of one rank, alike where both sizes are known."""
    return len(sizes) == len(others) and all(
        a is None or b is None or a == b for a, b in zip(sizes, others))


def _with_sequence_masks(attention_mask, query_mask, value_mask, key_mask):
    """attention_mask (batch, T, S) ANDed with the sequence masks, as Keras's MultiHeadAttention
    combines them: a query step attends where it is real, to value/key steps that are real.
    (Inputs of a higher rank: the masks have all their axes but the features, the same way.)"""
    combined = None if attention_mask is None else jnp.asarray(attention_mask) != 0
    for mask, axis in ((query_mask, -1), (value_mask, -2), (key_mask, -2)):
        if mask is not None:
            mask = jnp.expand_dims(jnp.asarray(mask) != 0, axis)
            combined = mask if combined is None else combined & mask
    return combined


def _both(mask, other):
    """mask & other, either of which may be None (nothing masked)."""
    if mask is None:
        return other
    return mask if other is None else mask & other


def _broadcasts(shape, target) -> bool:
    """Whether an array of `shape` broadcasts to `target` (no more axes, each 1 or equal)."""
    return len(shape) <= len(target) and all(
        size in (1, wanted) for size, wanted in zip(shape[::-1], target[::-1]))


def _check_flag(value, argument):
    if not isinstance(value, bool):
        raise TypeError(f"{argument} must be True or False. Received: {argument}={value!r:.100}")


def _kind(value):
    return "None" if value is None else type(value).__name__


def _positive_int(value, argument: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{argument} must be a positive integer. Received: "
                         f"{argument}={value!r}")
    return value


def _rate(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (
            0 <= dropout < 1):
        raise ValueError(f"dropout must be a number in [0, 1). Received: dropout={dropout!r}")
    return float(dropout)


def _check_bool(value, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{argument} must be True or False. Received: {argument}={value!r}")
    return value


def _check_output_shape(output_shape):
    """None, or a tuple of positive integers (an int n means (n,)), as Keras keeps it."""
    if output_shape is None:
        return None
    shape = (output_shape,) if isinstance(output_shape, int) else output_shape
    if (not isinstance(shape, (list, tuple)) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ValueError("output_shape must be a positive integer or a tuple of them. "
                         f"Received: output_shape={output_shape!r}")
    return tuple(shape)


_AXES_EXPECTED = ("None, an axis or a tuple of distinct axes between the batch axis (0) and "
                  "the features (-1), e.g. 1 for a sequence, (1, 2) for an image's rows and "
                  "columns")


def _check_attention_axes(attention_axes):
    """None, or the axes as given (an int n: (n,), as Keras keeps it; a list stays a list
    until the layer is built, as in Keras's config), refusing what no rank allows: the batch
    axis 0, the features -1, repeats, an empty tuple, non-integers."""
    if attention_axes is None:
        return None
    axes = (attention_axes,) if isinstance(attention_axes, int) else attention_axes
    if (not isinstance(axes, (list, tuple)) or not axes
            or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes)
            or len(set(axes)) != len(axes) or 0 in axes or -1 in axes):
        raise ValueError(f"attention_axes must be {_AXES_EXPECTED}. Received: "
                         f"attention_axes={attention_axes!r}")
    return axes


def _resolved_axes(attention_axes, rank) -> tuple:
    """The attended axes of inputs of `rank` (batch axis included), non-negative, in the
    order given (Keras's order for the scores' axes): default every axis between the batch
    and the features. Negative axes count from the end of the input, as Keras's do."""
    if attention_axes is None:
        return tuple(range(1, rank - 1))
    resolved = tuple(axis + rank if axis < 0 else axis for axis in attention_axes)
    if not all(1 <= axis <= rank - 2 for axis in resolved) or len(set(resolved)) != len(
            resolved):
        raise ValueError(
            f"attention_axes must be {_AXES_EXPECTED}; inputs of rank {rank} have them from 1 "
            f"to {rank - 2} (or {-(rank - 1)} to -2). Received: attention_axes="
            f"{attention_axes!r}. Give axes of the inputs between their batch and features")
    return resolved

