"""ConvLSTM1D, ConvLSTM2D and ConvLSTM3D: LSTMs whose input and recurrent transformations are
convolutions, for sequences of sequences, images or volumes (next-frame video prediction),
with Keras 3's arguments, configs, weights and numbers.

Why an RNN over a cell: as Keras builds them, a ConvLSTM layer is kilnet's generic `RNN`
(kilnet/layers/_rnn.py, one `jax.lax.scan`) running a `ConvLSTMCell`, so sequence masks,
go_backwards, return_state, initial_state and Bidirectional behave as they do for every other
recurrent layer; one cell serves the three ranks. The cell shares LSTM's settings and gate
arithmetic (`LSTMKind`: gates i, f, c, o, unit_forget_bias; `_rnn_cells.lstm_cell`); only its
two matmuls become convolutions:

    z = conv(x_t, kernel, strides, padding, dilation) + bias + conv(h, recurrent_kernel, "same")

Weights as Keras's, kept by the cell (a Keras file holds them under `cell/`): kernel
(*kernel_size, in_channels, 4 * filters), recurrent_kernel (*kernel_size, filters,
4 * filters), bias (4 * filters,). The states h and c have the output's shape per step
(*conv output size, filters). Dropout: as Keras, one mask per gate, of the whole step's shape
(per position and channel), drawn once per sequence.

Channels-last only, as kilnet's other convolutions; stateful=True as for the other recurrent
layers (kilnet.layers._recurrent.StatefulStates).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kilnet import initializers, regularizers
from kilnet.layers import _rnn_cells as cells
from kilnet.layers._base import Layer, as_pair, check_padding, is_shape
from kilnet._kernels.conv import conv2d, dilated_span, output_size, too_small
from kilnet.layers._conv1d import check_channels_last, conv1d
from kilnet.layers._conv_base import as_single, check_filters, check_no_dilated_strides
from kilnet.layers._conv3d import as_triple, conv3d
from kilnet.layers._node import KerasTensor
from kilnet.layers._recurrent import (LSTMKind, check_bool, check_call_options,
                                      regularization_arguments)
from kilnet.layers._rnn import RNN

_AS_TUPLE = {1: as_single, 2: as_pair, 3: as_triple}
# What a step is, by rank: its name and its axes (for error messages).
_STEPS = {1: ("sequences", "steps, channels"), 2: ("images", "height, width, channels"),
          3: ("volumes", "depth, height, width, channels")}


def convolve(x, kernel, strides, padding, dilation):
    """The channels-last convolution kilnet's Conv1D/2D/3D layers run (fast inside loops on
    CPU), chosen by the number of spatial axes of the (spatial..., in, out) kernel.

    Example:
        >>> import numpy as np
        >>> convolve(np.ones((1, 5, 5, 2), np.float32), np.ones((3, 3, 2, 4), np.float32),
        ...          (1, 1), "valid", (1, 1)).shape
        (1, 3, 3, 4)
    """
    rank = kernel.ndim - 2
    if rank == 1:
        return conv1d(x, kernel, strides[0], dilation[0], padding)
    if rank == 2:
        return conv2d(x, kernel, tuple(strides), padding, tuple(dilation))
    return conv3d(x, kernel, tuple(strides), padding, tuple(dilation))


def gates_convolution(x, kernel, masks, strides, padding, dilation):
    """The four gates' convolution of x: one convolution by the whole kernel, or, with
    dropout masks (4, *x.shape), each gate's block of the kernel on x through its mask.

    Example:
        >>> import numpy as np
        >>> x, kernel = np.ones((1, 4, 2), np.float32), np.ones((3, 2, 8), np.float32)
        >>> masks = np.stack([np.ones_like(x)] * 3 + [np.zeros_like(x)])
        >>> gates_convolution(x, kernel, masks, (1,), "same", (1,))[0, 1].tolist()
        [6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 0.0, 0.0]
    """
    if masks is None:
        return convolve(x, kernel, strides, padding, dilation)
    blocks = jnp.split(kernel, len(masks), axis=-1)
    return jnp.concatenate([convolve(x * m, k, strides, padding, dilation)
                            for m, k in zip(masks, blocks)], axis=-1)


class ConvLSTMCell(LSTMKind, Layer):
    """One step of a ConvLSTM, for `RNN(cell)`: the LSTM's gates (i, f, c, o) from
    convolutions of the step's input and of the previous h. Two states [h, c], each of the
    step's output shape (conv output size, filters); `state_size` gives their channels
    (Keras's cell leaves it undefined). Arguments as kilnet.layers.ConvLSTM2D's, with
    `rank` (1, 2 or 3) first.

    Example:
        >>> import numpy as np
        >>> from kilnet.layers._conv_lstm import ConvLSTMCell
        >>> cell = ConvLSTMCell(2, filters=3, kernel_size=3, padding="same")
        >>> zeros = [np.zeros((1, 4, 4, 3), np.float32)] * 2
        >>> h, (h_again, c) = cell(np.ones((1, 4, 4, 2), np.float32), zeros)
        >>> h.shape, c.shape, [w.shape for w in cell.weights]
        ((1, 4, 4, 3), (1, 4, 4, 3), [(3, 3, 2, 12), (3, 3, 3, 12), (12,)])
    """

    config_keys = ("rank", "filters", "kernel_size", "strides", "padding", "data_format",
                   "dilation_rate", "activation", "recurrent_activation", "use_bias",
                   "kernel_initializer", "recurrent_initializer", "bias_initializer",
                   "unit_forget_bias", "kernel_regularizer", "recurrent_regularizer",
                   "bias_regularizer", "kernel_constraint", "recurrent_constraint",
                   "bias_constraint", "dropout", "recurrent_dropout", "seed")

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(rank, bool) or rank not in (1, 2, 3):
            raise ValueError("ConvLSTMCell's rank is the number of spatial axes: 1, 2 or 3. "
                             f"Received: rank={rank!r}")
        self.rank = rank
        self._set_cell_settings(
            check_filters(filters), activation=activation,
            recurrent_activation=recurrent_activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer, dropout=dropout,
            recurrent_dropout=recurrent_dropout, seed=seed,
            regularization=regularization_arguments(
                kernel_regularizer, recurrent_regularizer, bias_regularizer, None,
                kernel_constraint, recurrent_constraint, bias_constraint))
        self.filters = self.units
        as_tuple = _AS_TUPLE[rank]
        self.kernel_size = as_tuple(kernel_size, "kernel_size")
        self.strides = as_tuple(strides, "strides")
        self.dilation_rate = as_tuple(dilation_rate, "dilation_rate")
        check_no_dilated_strides(self.strides, self.dilation_rate)
        self.padding = check_padding(padding)
        self.data_format = check_channels_last(data_format)
        self.unit_forget_bias = check_bool(unit_forget_bias, "unit_forget_bias")

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def state_size(self) -> list:
        """Each state's channels (h and c: filters); their spatial size follows the input."""
        return [self.filters, self.filters]

    @property
    def output_size(self) -> int:
        return self.filters

    def check_step_shape(self, step_shape):
        """A step's shape (spatial..., channels), all known, or a ValueError that says so."""
        if not is_shape(step_shape) or len(step_shape) != self.rank + 1 or None in step_shape:
            what, axes = _STEPS[self.rank]
            raise ValueError(
                f"A rank-{self.rank} ConvLSTM takes steps that are {what} ({axes}) of known "
                f"sizes: inputs (batch, time, {axes}). Received: a step of shape {step_shape}")

    def state_shape(self, step_shape) -> tuple:
        """The shape of h, c and each step's output for steps of `step_shape`."""
        self.check_step_shape(step_shape)
        sizes = tuple(output_size(step_shape[i], dilated_span(self.kernel_size[i],
                                                              self.dilation_rate[i]),
                                  self.strides[i], self.padding) for i in range(self.rank))
        if too_small(*sizes):
            raise ValueError(f"ConvLSTM kernel_size={self.kernel_size} does not fit steps of "
                             f"shape {tuple(step_shape)} with padding='{self.padding}'; use "
                             "padding='same' or a smaller kernel.")
        return sizes + (self.filters,)

    def get_initial_state(self, batch_size=None):
        """Zeros for [h, c], (batch_size, *state shape), once the cell knows its steps' shape."""
        if not is_shape(self.build_shape):
            raise ValueError(f"ConvLSTMCell {self.name!r} learns its states' shape from its "
                             "first input: call it (or its layer) once before asking for "
                             "its initial state.")
        shape = (batch_size,) + self.state_shape(self.build_shape)
        return [jnp.zeros(shape, self.compute_dtype) for _ in range(self.STATES)]

    def sample_output_shape(self, input_shape):
        return self.state_shape(input_shape)

    # -- weights ---------------------------------------------------------------------------------
    def weight_shapes(self, channels: int) -> dict:
        """{weight name: shape} for steps of `channels` channels, as Keras's (what a Keras
        file's arrays are checked against before anything is built)."""
        width = self.GATES * self.filters
        shapes = {"kernel": self.kernel_size + (channels, width),
                  "recurrent_kernel": self.kernel_size + (self.filters, width)}
        if self.use_bias:
            shapes["bias"] = (width,)
        return shapes

    def init(self, rng, input_shape):
        shape = self.state_shape(input_shape)
        shapes = self.weight_shapes(input_shape[-1])
        params = {
            "kernel": initializers.initial_values(self.kernel_initializer, rng, shapes["kernel"]),
            "recurrent_kernel": initializers.initial_values(self.recurrent_initializer,
                rng, shapes["recurrent_kernel"]),
        }
        if self.use_bias:
            params["bias"] = self._initial_bias(rng)
        return params, {}, shape

    # -- one step --------------------------------------------------------------------------------
    def apply(self, params, state, inputs, states, *, training=False, rng=None,
              sample_mask=None):
        x = jnp.asarray(inputs)
        given = list(states) if isinstance(states, (list, tuple)) else [states]
        channels = params["kernel"].shape[-2]
        wanted = (x.shape[0],) + self.state_shape(tuple(x.shape[1:-1]) + (channels,))
        if x.shape[-1] != channels or len(given) != self.STATES or any(
                tuple(jnp.shape(s)) != wanted for s in given):
            raise ValueError(
                f"ConvLSTMCell {self.name!r} takes a step with {channels} channels and "
                f"[h, c] of shape {wanted}. Received: input of shape {tuple(x.shape)} and "
                f"states of shapes {[tuple(jnp.shape(s)) for s in given]}")
        input_masks, recurrent_masks = self._gate_masks(training, rng, x.shape, wanted)
        z = gates_convolution(x, params["kernel"], input_masks, self.strides, self.padding,
                              self.dilation_rate)
        if self.use_bias:
            z = z + params["bias"]
        ones = (1,) * self.rank
        z = z + gates_convolution(given[0], params["recurrent_kernel"], recurrent_masks, ones,
                                  "same", ones)
        output, new_states = self._cell()(z, tuple(given))
        regularizers.add_layer_penalties(self, params, None, sample_mask)
        return (output, list(new_states)), state

    def _gate_masks(self, training, rng, input_shape, state_shape):
        """(input masks, recurrent masks), each None or (4, *shape): as Keras's ConvLSTMCell,
        one mask per gate, drawn once per sequence (the RNN passes the same key each step)."""
        if not training or (self.dropout == 0.0 and self.recurrent_dropout == 0.0):
            return None, None
        input_key, recurrent_key = jax.random.split(self.random_key(rng))
        input_masks = (cells.dropout_masks(input_key, self.dropout, self.GATES, input_shape)
                       if self.dropout > 0.0 else None)
        recurrent_masks = (cells.dropout_masks(recurrent_key, self.recurrent_dropout,
                                               self.GATES, state_shape)
                           if self.recurrent_dropout > 0.0 else None)
        return input_masks, recurrent_masks


def step_mask(mask):
    """A sequence mask as (batch, time): Masking before a ConvLSTM masks each position of a
    frame ((batch, time, *spatial)); a step counts as kept where any of its positions is, as
    Masking keeps a step of a plain sequence where any feature differs from mask_value.
    (Keras 3.15's ConvLSTM fails on any mask under JAX.)

    Example:
        >>> import numpy as np
        >>> step_mask(np.array([[[True, False], [False, False]]])).tolist()
        [[True, False]]
    """
    if mask is None or jnp.ndim(mask) <= 2:
        return mask
    return jnp.any(jnp.asarray(mask), axis=tuple(range(2, jnp.ndim(mask))))


def _cell_setting(name: str):
    """A read-only view of the cell's setting `name`, as Keras's ConvLSTM exposes them."""
    return property(lambda self: getattr(self.cell, name),
                    doc=f"The cell's {name} (kept by the ConvLSTMCell).")


# What the layer's config holds of its cell's settings, in Keras's order.
CELL_SETTINGS = ("filters", "kernel_size", "strides", "padding", "data_format",
                 "dilation_rate", "activation", "recurrent_activation", "use_bias",
                 "kernel_initializer", "recurrent_initializer", "bias_initializer",
                 "unit_forget_bias", "kernel_regularizer", "recurrent_regularizer",
                 "bias_regularizer", "activity_regularizer", "kernel_constraint",
                 "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout",
                 "seed")


class ConvLSTM(RNN):
    """What ConvLSTM1D/2D/3D share: an RNN of one ConvLSTMCell of rank RANK, configured as
    Keras's (the cell's settings in the layer's config, no `cell` entry); the layer shows the
    cell's settings as its own attributes.

    Example:
        >>> import kilnet
        >>> layer = kilnet.layers.ConvLSTM2D(4, 3)
        >>> isinstance(layer, ConvLSTM), layer.kernel_size, layer.cell.name
        (True, (3, 3), 'conv_lstm_cell')
    """

    RANK = 2
    config_keys = RNN.config_keys + CELL_SETTINGS

    # Keras's signature and defaults, the same for the three ranks.
    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, **kwargs):
        cell = ConvLSTMCell(
            self.RANK, filters, kernel_size, strides=strides, padding=padding,
            data_format=data_format, dilation_rate=dilation_rate, activation=activation,
            recurrent_activation=recurrent_activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer, unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
            name="conv_lstm_cell", dtype=kwargs.get("dtype"))
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, **kwargs)
        regularizers.set_layer_regularizers(self, activity_regularizer=activity_regularizer)

    filters = _cell_setting("filters")
    kernel_size = _cell_setting("kernel_size")
    strides = _cell_setting("strides")
    padding = _cell_setting("padding")
    data_format = _cell_setting("data_format")
    dilation_rate = _cell_setting("dilation_rate")
    activation = _cell_setting("activation")
    recurrent_activation = _cell_setting("recurrent_activation")
    use_bias = _cell_setting("use_bias")
    kernel_initializer = _cell_setting("kernel_initializer")
    recurrent_initializer = _cell_setting("recurrent_initializer")
    bias_initializer = _cell_setting("bias_initializer")
    unit_forget_bias = _cell_setting("unit_forget_bias")
    kernel_regularizer = _cell_setting("kernel_regularizer")
    recurrent_regularizer = _cell_setting("recurrent_regularizer")
    bias_regularizer = _cell_setting("bias_regularizer")
    kernel_constraint = _cell_setting("kernel_constraint")
    recurrent_constraint = _cell_setting("recurrent_constraint")
    bias_constraint = _cell_setting("bias_constraint")
    dropout = _cell_setting("dropout")
    recurrent_dropout = _cell_setting("recurrent_dropout")
    seed = _cell_setting("seed")

    # -- config ----------------------------------------------------------------------------------
    def get_config(self):
        from kilnet import constraints

        config = super().get_config()
        del config["cell"]  # as Keras: the cell is remade from the layer's own settings
        return constraints.serialize_into(regularizers.serialize_into(config, self), self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- shapes ----------------------------------------------------------------------------------
    def _check_sequences(self, input_shape):
        if not is_shape(input_shape) or len(input_shape) != self.RANK + 2:
            shown = (None,) + tuple(input_shape) if is_shape(input_shape) else input_shape
            what, axes = _STEPS[self.RANK]
            raise ValueError(
                f"{type(self).__name__} takes sequences of {what}: inputs of shape (batch, "
                f"time, {axes}), {self.RANK + 3} dimensions. Received: input of shape {shown}")
        self.cell.check_step_shape(tuple(input_shape[1:]))

    def sample_output_shape(self, input_shape):
        self._check_sequences(input_shape)
        state = self.cell.state_shape(tuple(input_shape[1:]))
        output = (input_shape[0],) + state if self.return_sequences else state
        return [output, state, state] if self.return_state else output

    def compute_call_output_shape(self, input_shape, kwargs):
        check_call_options(self, kwargs)
        shapes = self.sample_output_shape(input_shape)
        if kwargs.get("initial_state") is not None:
            self._check_symbolic_initial_state(kwargs["initial_state"],
                                               self.cell.state_shape(tuple(input_shape[1:])))
        return shapes

    def _check_symbolic_initial_state(self, initial_state, state_shape):
        given = jax.tree.leaves(initial_state, is_leaf=lambda t: isinstance(t, KerasTensor))
        shapes = [tuple(getattr(s, "shape", ())) for s in given]
        if len(shapes) != self.STATES or any(
                len(s) != len(state_shape) + 1 or any(
                    g not in (None, w) for g, w in zip(s[1:], state_shape)) for s in shapes):
            raise ValueError(f"{type(self).__name__} {self.name!r} takes initial_state as "
                             f"[h, c], each of shape (batch, {', '.join(map(str, state_shape))}"
                             f"). Received: shapes {shapes}")

    # -- weights and calling ---------------------------------------------------------------------
    def init(self, rng, input_shape):
        self._check_sequences(input_shape)
        self.cell.build_weights(rng, tuple(input_shape[1:]))
        return (self.params_tree(), {**self.state_tree(), **self.carried_state_init()},
                self.sample_output_shape(input_shape))

    def apply(self, params, state, x, *, training=False, rng=None, sample_mask=None,
              mask=None, initial_state=None):
        result, state = super().apply(params, state, x, training=training, rng=rng,
                                      sample_mask=sample_mask, mask=step_mask(mask),
                                      initial_state=initial_state)
        regularizers.add_layer_penalties(self, {}, lambda: result, sample_mask)
        return result, state

    def compute_mask(self, inputs, previous_mask=None):
        return super().compute_mask(inputs, step_mask(previous_mask))

    def _first_previous_output(self, states, batch, dtype):
        """What a masked first step outputs: h0, the first state (as Keras's loop)."""
        return states[0].astype(dtype)


class ConvLSTM2D(ConvLSTM):
    """2-D convolutional LSTM over sequences of images (batch, time, height, width, channels),
    as Keras's ConvLSTM2D: each step's gates are convolutions of the frame and of the
    previous h; outputs (batch, [time,] height', width', filters).

    Args:
        filters: the channels of the output and of the states h and c.
        kernel_size, strides, dilation_rate: an int or a pair (strides and dilation cannot
            both exceed 1). The recurrent convolution always has stride 1 and padding "same",
            as Keras's.
        padding: "valid" or "same", of the input convolution.
        data_format: "channels_last" (or None) only.
        activation ("tanh"), recurrent_activation ("sigmoid"), use_bias, kernel_initializer
            ("glorot_uniform"), recurrent_initializer ("orthogonal"), bias_initializer
            ("zeros"), unit_forget_bias (True), the regularizers and constraints, dropout and
            recurrent_dropout (one mask per gate, per sequence), seed: as LSTM's.
        return_sequences, return_state, go_backwards: as LSTM's (return_state gives
            `[output, h, c]`). stateful: as LSTM's. unroll: accepted, ignored.

    Call: `layer(sequences, initial_state=None, mask=None, training=None)`; initial_state is
    `[h, c]`, each of the output's per-step shape; time may vary between batches.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True)
        >>> layer(np.zeros((2, 5, 8, 8, 1), np.float32)).shape
        (2, 5, 8, 8, 4)
        >>> [(w.name, w.shape) for w in layer.weights]
        [('kernel', (3, 3, 1, 16)), ('recurrent_kernel', (3, 3, 4, 16)), ('bias', (16,))]
    """

    RANK = 2


class ConvLSTM1D(ConvLSTM):
    """1-D convolutional LSTM over sequences of sequences (batch, time, steps, channels), as
    Keras's ConvLSTM1D; arguments as ConvLSTM2D's, kernel_size, strides and dilation_rate an
    int (or a tuple of one).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> output, h, c = kilnet.layers.ConvLSTM1D(3, 2, return_state=True)(
        ...     np.zeros((2, 4, 6, 5), np.float32))
        >>> output.shape, h.shape, c.shape
        ((2, 5, 3), (2, 5, 3), (2, 5, 3))
    """

    RANK = 1


class ConvLSTM3D(ConvLSTM):
    """3-D convolutional LSTM over sequences of volumes (batch, time, depth, height, width,
    channels), as Keras's ConvLSTM3D; arguments as ConvLSTM2D's, kernel_size, strides and
    dilation_rate an int or a tuple of 3.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.ConvLSTM3D(2, (1, 3, 3), strides=(1, 2, 2), padding="same")
        >>> layer(np.zeros((1, 3, 2, 6, 6, 1), np.float32)).shape
        (1, 2, 3, 3, 2)
    """

    RANK = 3
