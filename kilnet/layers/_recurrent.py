"""Recurrent layers: SimpleRNN, LSTM and GRU, with Keras 3's arguments, weights and formulas.

Why mixins and one base class: the three differ only in their step (kilnet/layers/_rnn_cells.py)
and the number of gates and states. `CellSettings` holds what a step needs (arguments, weights,
dropout masks) and one kind mixin per step adds its arithmetic (`SimpleRNNKind`, `LSTMKind`,
`GRUKind`); kilnet's cells for the generic `RNN(cell)` (kilnet/layers/_rnn.py) are made of the
same parts. `RNNBase` adds what a recurrent layer adds to the layer contract:

- inputs (batch, time, features) whose time axis may be None (any length: the weights depend
  on the features only), read by a `jax.lax.scan`, which compiles the loop once inside the
  model's programs (so `unroll` is accepted and ignored);
- several outputs with return_state=True, `[output, state_h]` (LSTM: `[output, state_h,
  state_c]`): `compute_call_output_shape` gives their shapes, so a call on symbolic tensors
  records them all;
- an `initial_state=[...]` argument, arrays or symbolic tensors (batch, units);
- Keras's sequence masks (`mask`, bool (batch, time), from Embedding(mask_zero=True) or
  Masking, or given in the call): masked steps are skipped, the state carried over;
- dropout masks drawn once per sequence from the key `apply` receives (None at inference).

Weights are named and shaped as Keras's (kernel, recurrent_kernel, bias), so
`keras_layer.set_weights(kilnet_layer.get_weights())` makes a Keras layer that computes the
same.

stateful=True (`StatefulStates`) keeps the final states of a batch as the next batch's initial
states: they are carried state of the layer (kilnet.layers.Layer.carried_state_names), in the
state tree the compiled programs carry from batch to batch, and not weights (as Keras's
untracked `rnn_state` variables: not in `weights`, not in files).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import activations, constraints, initializers, random, regularizers
from kilnet.layers import _rnn_cells as cells
from kilnet.layers._base import Layer, is_shape
from kilnet.layers._node import KerasTensor

# The arguments of a call besides the sequence (training is the base class's).
CALL_OPTIONS = ("initial_state", "mask", "training")


class CellSettings:
    """What a recurrent layer and its cell share (a mixin of kilnet.layers.Layer): the
    arguments of the step (units, activations, initializers, dropouts, penalties and
    constraints), its weights (kernel, recurrent_kernel, bias, named and shaped as Keras's) and
    its dropout masks. SimpleRNN / SimpleRNNCell and the others add their step's arithmetic
    through the kind mixins below, so a layer and its cell compute alike by construction."""

    GATES = 1    # blocks of the kernels: LSTM 4 (i, f, c, o), GRU 3 (z, r, h)
    STATES = 1   # LSTM carries two states (h, c)
    # Whether the step takes `x W + b + h_prev U` summed (SimpleRNN, LSTM) or apart (GRU).
    ADDITIVE = True

    # The functions, as Keras's `layer.activation` / `layer.recurrent_activation`
    activation = activations.Setting()
    recurrent_activation = activations.Setting()

    def _set_cell_settings(self, units, *, activation, recurrent_activation, use_bias,
                           kernel_initializer, recurrent_initializer, bias_initializer,
                           dropout, recurrent_dropout, seed, regularization=None):
        self._set_regularization(**(regularization or {}))
        self.units = _positive_int(units, "units")
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.use_bias = check_bool(use_bias, "use_bias")
        initializers.set_layer_initializers(
            self, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer)
        self.dropout = _rate(dropout, "dropout")
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout")
        self.seed = seed
        # As Keras's cells, always: a compiled step's key decides the draws; the generator's
        # state serves stateless_call (kilnet's SimpleRNN/LSTM/GRU are their own cells)
        self.seed_generator = random.SeedGenerator(seed)

    def _set_regularization(self, kernel_regularizer=None, recurrent_regularizer=None,
                            bias_regularizer=None, activity_regularizer=None,
                            kernel_constraint=None, recurrent_constraint=None,
                            bias_constraint=None):
        """Keras's penalties and constraints of the three weights (found by weight name:
        Layer.regularizer_for / constraint_for) and of the outputs."""
        regularizers.set_layer_regularizers(
            self, kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer)
        constraints.set_layer_constraints(
            self, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint)

    def get_config(self):
        return constraints.serialize_into(regularizers.serialize_into(
            super().get_config(), self), self)

    @property
    def param_names(self):
        return ("kernel", "recurrent_kernel") + (("bias",) if self.use_bias else ())

    def make_weights(self, rng, features: int) -> dict:
        """The step's weights for inputs of `features` features, drawn from `rng`."""
        width = self.GATES * self.units
        params = {
            "kernel": initializers.initial_values(self.kernel_initializer, rng, (features, width)),
            "recurrent_kernel": initializers.initial_values(self.recurrent_initializer,
                rng, (self.units, width)),
        }
        if self.use_bias:
            params["bias"] = self._initial_bias(rng)
        return params

    def _initial_bias(self, rng):
        return initializers.initial_values(self.bias_initializer, rng, (self.GATES * self.units,))

    def _input_bias(self, params):
        return params.get("bias")

    def _recurrent_bias(self, params):
        return None

    def _step(self, params, recurrent_masks):
        """The step function `(x W + b, states) -> (output, states)` of this kind."""
        raise NotImplementedError

    def _cell(self):
        """The step after its two matmuls, for `_rnn_cells.fused_scan`: `cell(z, states)`
        with `z = x W + b + h_prev U` when ADDITIVE, else `cell(x W + b, h_prev U + b_r,
        states)`; each returns (output, states). None when the step has another matmul
        inside (GRU with reset_after=False)."""
        raise NotImplementedError

    def _dropout_masks(self, training, rng, batch, features):
        """(input masks, recurrent masks), each None or (count, batch, size): drawn once per
        sequence, one per gate when recurrent_dropout is set (Keras's implementation 1)."""
        if not training or (self.dropout == 0.0 and self.recurrent_dropout == 0.0):
            return None, None
        rng = self.random_key(rng)
        count = self.GATES if self.recurrent_dropout > 0.0 else 1
        input_key, recurrent_key = jax.random.split(rng)
        input_masks = (cells.dropout_masks(input_key, self.dropout, count, (batch, features))
                       if self.dropout > 0.0 else None)
        recurrent_masks = (cells.dropout_masks(recurrent_key, self.recurrent_dropout, count,
                                               (batch, self.units))
                           if self.recurrent_dropout > 0.0 else None)
        return input_masks, recurrent_masks


class SimpleRNNKind(CellSettings):
    """SimpleRNN's step: h = activation(x W + b + h_prev U)."""

    def _cell(self):
        return cells.cell_step(cells.simple_rnn_cell, activation=self._activation_fn)

    def _step(self, params, recurrent_masks):
        return functools.partial(cells.simple_rnn_step,
                                 recurrent_kernel=params["recurrent_kernel"],
                                 masks=recurrent_masks, activation=self._activation_fn)


class LSTMKind(CellSettings):
    """LSTM's step (gates i, f, c, o; states h, c) and its bias with unit_forget_bias."""

    GATES = 4
    STATES = 2

    def _initial_bias(self, rng):
        if not self.unit_forget_bias:
            return super()._initial_bias(rng)
        # As Keras: the initializer for i, ones for f, the initializer for c and o.
        def fill(shape):
            return initializers.initial_values(self.bias_initializer, rng, shape)
        return np.concatenate([fill((self.units,)), np.ones(self.units, np.float32),
                               fill((2 * self.units,))])

    def _cell(self):
        return cells.cell_step(cells.lstm_cell, activation=self._activation_fn,
                               recurrent_activation=self._recurrent_activation_fn)

    def _step(self, params, recurrent_masks):
        return functools.partial(cells.lstm_step, recurrent_kernel=params["recurrent_kernel"],
                                 masks=recurrent_masks, activation=self._activation_fn,
                                 recurrent_activation=self._recurrent_activation_fn)


class GRUKind(CellSettings):
    """GRU's step (gates z, r, h), reset gate after the recurrent matmul (reset_after=True,
    bias (2, 3 * units): input and recurrent) or before it (one bias (3 * units,))."""

    GATES = 3
    ADDITIVE = False

    def _initial_bias(self, rng):
        shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        return initializers.initial_values(self.bias_initializer, rng, shape)

    def _input_bias(self, params):
        bias = params.get("bias")
        return bias[0] if bias is not None and self.reset_after else bias

    def _recurrent_bias(self, params):
        bias = params.get("bias")
        return bias[1] if bias is not None and self.reset_after else None

    def _cell(self):
        if not self.reset_after:
            return None
        return cells.cell_step(cells.gru_cell, activation=self._activation_fn,
                               recurrent_activation=self._recurrent_activation_fn)

    def _step(self, params, recurrent_masks):
        return functools.partial(
            cells.gru_step, recurrent_kernel=params["recurrent_kernel"],
            recurrent_bias=self._recurrent_bias(params), masks=recurrent_masks,
            activation=self._activation_fn,
            recurrent_activation=self._recurrent_activation_fn, reset_after=self.reset_after)


class StatefulStates:
    """Keras's `stateful=True` for a recurrent layer (a mixin of kilnet.layers.Layer with
    STATES, `_carried_shapes(batch)` and `stateful`): each call starts from the states the
    previous call ended with, one per row of a batch of fixed size, and leaves its final
    states for the next. Keras's `states` and `reset_state()` / `reset_states()`."""

    @property
    def carried_state_names(self) -> tuple:
        if not self.stateful:
            return ()
        return tuple("rnn_state" if i == 0 else f"rnn_state_{i}" for i in range(self.STATES))

    def carried_state_init(self) -> dict:
        """Each state's first value at the batch size of the layer's first call (init's
        part): `_first_states`, zeros unless a cell of yours says otherwise."""
        if not self.stateful:
            return {}
        batch = self.build_batch_size
        if batch is None:
            raise ValueError(
                f"{type(self).__name__}(stateful=True) keeps one state per row of a batch of "
                "fixed size, so the batch size must be known when it is built. Give it to the "
                "model's input: kilnet.Input(shape, batch_size=32) or "
                "kilnet.Input(batch_shape=(32, ...)), and the same batch_size to fit, evaluate "
                "and predict. Received: an input of unknown batch size")
        return dict(zip(self.carried_state_names, self._first_states(batch)))

    def _first_states(self, batch) -> list:
        return [np.zeros(shape, self.variable_dtype) for shape in self._carried_shapes(batch)]

    def carried_state_specs(self, batch) -> dict:
        """The carried states' shapes and dtypes at `batch` (a trace without arrays)."""
        return {name: jax.ShapeDtypeStruct(shape, self.variable_dtype) for name, shape in zip(
            self.carried_state_names, self._carried_shapes(batch))}

    def carried_states(self, state, batch) -> list | None:
        """The states the previous call left (stateful), else None; refuses another batch
        size than the one they were made for."""
        if not self.stateful:
            return None
        states = [state[name] for name in self.carried_state_names]
        if batch != states[0].shape[0]:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} is stateful with a batch size of "
                f"{states[0].shape[0]} (one state per row): every batch must have that many "
                f"rows. Received: a batch of {batch}. Pass batch_size={states[0].shape[0]} to "
                "fit, evaluate and predict, with a number of samples that is a multiple of it.")
        return states

    def carry(self, state, final) -> dict:
        """`state` with the call's final states kept for the next call (stateful)."""
        if not self.stateful:
            return state
        return dict(state, **{name: value.astype(state[name].dtype) for name, value in zip(
            self.carried_state_names, jax.tree.leaves(final))})

    @property
    def states(self):
        """The carried states as Variables (a list, nested as a stacked cell's states are), or
        None when the layer is not stateful or not built, as Keras's `states`."""
        if not (self.stateful and self._carried_vars):
            return None
        return self.nest_states(list(self._carried_vars))

    def nest_states(self, states: list):
        """The states in the nesting the layer's cell gives them (flat here)."""
        return states

    def reset_state(self, states=None) -> None:
        """Set the carried states to zeros, as Keras's reset_state(), or to `states` (arrays
        of the states' shapes, in order, flat or nested as `states`). Nothing to do for a
        layer that is not stateful."""
        carried = list(self._carried_vars) if self.stateful else []
        if states is not None:
            values = [np.asarray(s) for s in jax.tree.leaves(states)]
            if [v.shape for v in values] != [tuple(v.shape) for v in carried]:
                raise ValueError(
                    f"reset_state of {self.name!r} takes {len(carried)} array(s) of shapes "
                    f"{[tuple(v.shape) for v in carried]}. Received: shapes "
                    f"{[v.shape for v in values]}")
        for index, variable in enumerate(carried):
            variable.assign(np.zeros(variable.shape, variable.dtype) if states is None
                            else values[index].astype(variable.dtype))

    def reset_states(self, states=None) -> None:
        """Keras's alias of reset_state."""
        self.reset_state(states)


class SequenceMasks:
    """The mask rule of every recurrent layer (a mixin of kilnet.layers.Layer): as Keras, the
    output sequence keeps the input's mask with return_sequences; states have none."""

    def compute_mask(self, inputs, previous_mask=None):
        output_mask = previous_mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * self.STATES
        return output_mask


class RNNBase(CellSettings, StatefulStates, SequenceMasks, Layer):
    """What SimpleRNN, LSTM and GRU share beyond their step: the sequence (kilnet's generic
    `RNN(cell)` is kilnet/layers/_rnn.py)."""

    def __init__(self, units, *, activation, recurrent_activation, use_bias,
                 kernel_initializer, recurrent_initializer, bias_initializer, dropout,
                 recurrent_dropout, seed, return_sequences, return_state, go_backwards,
                 stateful, unroll, zero_output_for_mask=False, use_cudnn="auto",
                 regularization=None, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        if use_cudnn not in ("auto", False):
            raise ValueError(f"{name}(use_cudnn=...) must be 'auto' or False: kilnet runs the "
                             "recurrence as an XLA loop, never through cuDNN. Received: "
                             f"use_cudnn={use_cudnn!r}")
        self._set_cell_settings(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
            regularization=regularization)
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.return_state = check_bool(return_state, "return_state")
        self.go_backwards = check_bool(go_backwards, "go_backwards")
        self.stateful = check_bool(stateful, "stateful")
        self.unroll = check_bool(unroll, "unroll")  # accepted; the scan is compiled once
        self.zero_output_for_mask = check_bool(zero_output_for_mask, "zero_output_for_mask")

    def _carried_shapes(self, batch) -> list:
        return [(batch, self.units)] * self.STATES

    sample_rank = 2   # (time, features)

    # -- shapes ----------------------------------------------------------------------------------
    def _check_input_shape(self, input_shape):
        if not is_shape(input_shape) or len(input_shape) != 2 or input_shape[-1] is None:
            shown = (None,) + tuple(input_shape) if is_shape(input_shape) else input_shape
            raise ValueError(
                f"{type(self).__name__} takes sequences of shape (batch, time, features) with "
                f"a known number of features. Received: input of shape {shown}")

    def sample_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        output = (input_shape[0], self.units) if self.return_sequences else (self.units,)
        if self.return_state:
            return [output] + [(self.units,)] * self.STATES
        return output

    def compute_call_output_shape(self, input_shape, kwargs):
        check_call_options(self, kwargs)
        if kwargs.get("initial_state") is not None:
            self._state_list(kwargs["initial_state"])
        return self.sample_output_shape(input_shape)

    # -- weights -------------------------------------------------------------------------------
    def init(self, rng, input_shape):
        self._check_input_shape(input_shape)
        return (self.make_weights(rng, input_shape[-1]), self.carried_state_init(),
                self.sample_output_shape(input_shape))

    # -- calling ---------------------------------------------------------------------------------
    def apply(self, params, state, x, *, training=False, rng=None, sample_mask=None,
              mask=None, initial_state=None):
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        features = params["kernel"].shape[0]
        if x.ndim != 3 or x.shape[-1] != features:
            raise ValueError(f"{type(self).__name__} {self.name!r} is built for sequences of "
                             f"shape (batch, time, {features}). Received: input of shape "
                             f"{tuple(x.shape)}")
        batch = x.shape[0]
        carried = self.carried_states(state, batch)
        states = (self._initial_states(initial_state, batch, x.dtype)
                  if initial_state is not None or carried is None
                  else [s.astype(x.dtype) for s in carried])
        input_masks, recurrent_masks = self._dropout_masks(training, rng, batch, features)
        inputs = jnp.swapaxes(x, 0, 1)

        def project(x):
            return cells.input_part(x, params["kernel"], self._input_bias(params),
                                    input_masks, self.GATES)
        # The last output is the first final state, unless a masked last step outputs zero.
        sequences = self.return_sequences or self.zero_output_for_mask
        loop = dict(go_backwards=self.go_backwards, sequences=sequences,
                    zero_output_for_mask=self.zero_output_for_mask)
        step_mask = sequence_mask(mask, x.shape[:2])
        cell = self._cell() if recurrent_masks is None else None
        if cell is not None:  # one matmul a step, hand-written gradient (_rnn_cells.fused_scan)
            input_weights = (params["kernel"], self._input_bias(params), input_masks)
            outputs, final = cells.fused_scan(
                cell, inputs, states, input_weights, params["recurrent_kernel"],
                self._recurrent_bias(params), step_mask, additive=self.ADDITIVE, **loop)
        else:  # the input part inside the loop, as Keras (see kilnet/layers/_rnn_cells.py)
            outputs, final = cells.scan(self._step(params, recurrent_masks), inputs, states,
                                        step_mask, project=project, **loop)
        output = (outputs if self.return_sequences
                  else outputs[:, -1] if sequences else final[0])
        result = [output, *final] if self.return_state else output
        regularizers.add_layer_penalties(self, params, lambda: result, sample_mask)
        return result, self.carry(state, final)

    def _initial_states(self, initial_state, batch, dtype):
        if initial_state is None:
            return [jnp.zeros((batch, self.units), dtype)] * self.STATES
        states = [jnp.asarray(s, dtype) for s in self._state_list(initial_state)]
        for s in states:
            if s.shape != (batch, self.units):
                raise ValueError(f"{type(self).__name__}'s initial_state holds arrays of shape "
                                 f"(batch, units) = ({batch}, {self.units}). Received: "
                                 f"{[tuple(t.shape) for t in states]}")
        return states

    def _state_list(self, initial_state) -> list:
        """initial_state as a list of STATES tensors (one tensor alone is accepted for one
        state, as Keras); symbolic tensors are checked here, arrays when applied."""
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [
            initial_state]
        if len(states) != self.STATES:
            raise ValueError(
                f"{type(self).__name__} takes initial_state as a list of {self.STATES} "
                f"tensor(s) of shape (batch, units) ({self._state_names()}). Received: "
                f"{len(states)} tensor(s)")
        for s in states:
            if isinstance(s, KerasTensor) and (len(s.shape) != 2 or s.shape[-1] not in (
                    None, self.units)):
                raise ValueError(f"{type(self).__name__}'s initial_state holds tensors of "
                                 f"shape (batch, {self.units}). Received: shape {s.shape}")
        return states

    def _state_names(self) -> str:
        return "[state_h, state_c]" if self.STATES == 2 else "[state_h]"


class SimpleRNN(SimpleRNNKind, RNNBase):
    """A fully-connected RNN: `h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel +
    bias)`, as Keras's SimpleRNN.

    Args:
        units: size of the output and of the state.
        activation: default "tanh".
        use_bias, kernel_initializer ("glorot_uniform"), recurrent_initializer
            ("orthogonal"), bias_initializer ("zeros"): as Keras.
        dropout, recurrent_dropout: dropout rates of the inputs and of the state (one mask per
            sequence, in training).
        return_sequences: return every step's output (batch, time, units), not only the last.
        return_state: also return the final state: `[output, state_h]`.
        go_backwards: read the sequence from its end (outputs come in that order).
        kernel_regularizer, recurrent_regularizer, bias_regularizer: penalties of the three
            weights; activity_regularizer: of each output (the states too with
            return_state); kernel_constraint, recurrent_constraint, bias_constraint:
            projections after each update (kilnet.regularizers, kilnet.constraints).
        stateful: each batch starts from the states the previous one ended with (row i
            continues row i), as Keras's: the batch size must be known (the model's
            `Input(shape, batch_size=...)` or `Input(batch_shape=...)`); `states` holds them,
            `reset_state()` sets them to zeros.
        unroll: accepted, ignored (kilnet always compiles a scan).
        seed: accepted; dropout draws from the key the model passes.

    Call: `layer(sequences, initial_state=None, mask=None, training=None)` with sequences of
    shape (batch, time, features); time may vary between batches (`Input(shape=(None, f))`).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> rnn = kilnet.layers.SimpleRNN(4, return_sequences=True)
        >>> rnn(np.ones((2, 5, 3))).shape
        (2, 5, 4)
        >>> [(w.name, w.shape) for w in rnn.weights]
        [('kernel', (3, 4)), ('recurrent_kernel', (4, 4)), ('bias', (4,))]
    """

    weight_scope = "simple_rnn_cell"   # Keras's cell name, in the weights' paths

    config_keys = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
                   "zero_output_for_mask", "units", "activation", "use_bias",
                   "kernel_initializer", "recurrent_initializer", "bias_initializer",
                   "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                   "activity_regularizer", "kernel_constraint", "recurrent_constraint",
                   "bias_constraint", "dropout", "recurrent_dropout")

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, seed=None, **kwargs):
        super().__init__(
            units, activation=activation, recurrent_activation=None, use_bias=use_bias,
            kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer, dropout=dropout,
            recurrent_dropout=recurrent_dropout, seed=seed, return_sequences=return_sequences,
            return_state=return_state, go_backwards=go_backwards, stateful=stateful,
            unroll=unroll, regularization=regularization_arguments(
                kernel_regularizer, recurrent_regularizer, bias_regularizer,
                activity_regularizer, kernel_constraint, recurrent_constraint,
                bias_constraint), **kwargs)


class LSTM(LSTMKind, RNNBase):
    """Long Short-Term Memory (Hochreiter & Schmidhuber, 1997), as Keras's LSTM: gates i, f, c,
    o side by side in the kernels (features, 4 * units) and (units, 4 * units).

    Args:
        units: size of the output and of the states.
        activation ("tanh"), recurrent_activation ("sigmoid"): of the cell and of the gates.
        unit_forget_bias: add 1 to the forget gate's bias at initialization (default True).
        Others as SimpleRNN; return_state gives `[output, state_h, state_c]` and
        initial_state takes `[state_h, state_c]`.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> tokens = kilnet.Input(shape=(None,), dtype="int32")
        >>> x = kilnet.layers.Embedding(100, 8)(tokens)
        >>> output, h, c = kilnet.layers.LSTM(16, return_state=True)(x)
        >>> output.shape, h.shape, c.shape
        ((None, 16), (None, 16), (None, 16))
        >>> layer = kilnet.layers.LSTM(2)
        >>> layer.init(np.random.default_rng(0), (7, 3))[0]["bias"].tolist()
        [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """

    weight_scope = "lstm_cell"   # Keras's cell name, in the weights' paths

    config_keys = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
                   "zero_output_for_mask", "units", "activation", "recurrent_activation",
                   "use_bias", "kernel_initializer", "recurrent_initializer",
                   "bias_initializer", "unit_forget_bias", "kernel_regularizer",
                   "recurrent_regularizer", "bias_regularizer", "activity_regularizer",
                   "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
                   "recurrent_dropout", "seed")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, use_cudnn="auto",
                 **kwargs):
        super().__init__(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
            return_sequences=return_sequences, return_state=return_state,
            go_backwards=go_backwards, stateful=stateful, unroll=unroll, use_cudnn=use_cudnn,
            regularization=regularization_arguments(
                kernel_regularizer, recurrent_regularizer, bias_regularizer,
                activity_regularizer, kernel_constraint, recurrent_constraint,
                bias_constraint), **kwargs)
        self.unit_forget_bias = check_bool(unit_forget_bias, "unit_forget_bias")


class GRU(GRUKind, RNNBase):
    """Gated Recurrent Unit (Cho et al., 2014), as Keras's GRU: gates z, r, h side by side in
    the kernels (features, 3 * units) and (units, 3 * units).

    Args:
        units: size of the output and of the state.
        activation ("tanh"), recurrent_activation ("sigmoid"): of the candidate and the gates.
        reset_after: True (default, cuDNN's form): the reset gate multiplies the recurrent
            part after its matmul, and the bias is (2, 3 * units): input and recurrent biases.
            False: before it, with one bias (3 * units,).
        Others as SimpleRNN; return_state gives `[output, state_h]`.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> gru = kilnet.layers.GRU(4, return_sequences=True, return_state=True)
        >>> sequence, h = gru(np.ones((2, 5, 3)))
        >>> sequence.shape, h.shape
        ((2, 5, 4), (2, 4))
        >>> [w.shape for w in gru.weights]
        [(3, 12), (4, 12), (2, 12)]
    """

    weight_scope = "gru_cell"   # Keras's cell name, in the weights' paths

    config_keys = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
                   "zero_output_for_mask", "units", "activation", "recurrent_activation",
                   "use_bias", "kernel_initializer", "recurrent_initializer",
                   "bias_initializer", "kernel_regularizer", "recurrent_regularizer",
                   "bias_regularizer", "activity_regularizer", "kernel_constraint",
                   "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout",
                   "reset_after", "seed")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, reset_after=True, use_cudnn="auto", **kwargs):
        super().__init__(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
            return_sequences=return_sequences, return_state=return_state,
            go_backwards=go_backwards, stateful=stateful, unroll=unroll, use_cudnn=use_cudnn,
            regularization=regularization_arguments(
                kernel_regularizer, recurrent_regularizer, bias_regularizer,
                activity_regularizer, kernel_constraint, recurrent_constraint,
                bias_constraint), **kwargs)
        self.reset_after = check_bool(reset_after, "reset_after")


# -- helpers ---------------------------------------------------------------------------------------
def check_call_options(layer, kwargs):
    """A recurrent layer's call takes the sequence and CALL_OPTIONS only."""
    unknown = sorted(set(kwargs) - set(CALL_OPTIONS))
    if unknown:
        raise TypeError(f"{type(layer).__name__} got unexpected call arguments {unknown}; it "
                        f"takes the sequence and {list(CALL_OPTIONS)}.")


def sequence_mask(mask, batch_and_time):
    """A sequence mask as bool (batch, time), checked; None stays None."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.shape != tuple(batch_and_time):
        raise ValueError(f"A recurrent layer's mask has the shape (batch, time) = "
                         f"{tuple(batch_and_time)}. Received: mask of shape {mask.shape}")
    return mask.astype(bool)


def regularization_arguments(kernel_regularizer, recurrent_regularizer, bias_regularizer,
                    activity_regularizer, kernel_constraint, recurrent_constraint,
                    bias_constraint) -> dict:
    return dict(kernel_regularizer=kernel_regularizer,
                recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
                activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint)


def _positive_int(value, argument: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{argument} must be a positive integer. Received: "
                         f"{argument}={value!r}")
    return value


def _rate(value, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{argument} must be a number in [0, 1). Received: "
                         f"{argument}={value!r}")
    return float(value)


def check_bool(value, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{argument} must be True or False. Received: {argument}={value!r}")
    return value
