"""Keras's generic recurrent layer `RNN(cell)` and its cells: SimpleRNNCell, LSTMCell, GRUCell
and StackedRNNCells, with Keras 3's arguments, weights, configs and calling convention.

A cell is any layer with `call(inputs, states)` returning `(output, new_states)` and a
`state_size` (an int, or a list of them, one per state); `output_size` is optional (default:
the first state's size), `get_initial_state(batch_size)` too (default: zeros). RNN runs it
over the time axis with one `jax.lax.scan`, compiled once inside the model's programs, so a
cell written the Keras way (`build` with `add_weight`, `call` with kilnet.ops) or kilnet's own
cells run alike. What RNN adds around the cell, as Keras's RNN does:

- the states as a list (nested lists for stacked cells), zeros unless `initial_state=` or the
  cell's own `get_initial_state` says otherwise;
- sequence masks: a masked step leaves the states as they were and outputs the previous
  output (zeros with `zero_output_for_mask=True`);
- `go_backwards` (outputs in reading order), `return_sequences`, `return_state` (the output,
  then each state as the cell holds it);
- randomness per sequence: the cell gets the same key at every step, so a dropout mask is
  drawn once per sequence and used at every step (Keras's cells cache theirs the same way);
- losses: `add_loss` terms of a step are summed over the steps; weight penalties count once
  per training step (one scan iteration's value: the weights are the same at every step).

kilnet's SimpleRNN, LSTM and GRU layers stay separate layers with their own fused
recurrence (kilnet/layers/_recurrent.py); the cells here share their settings, weights and
arithmetic through the same mixins, so `RNN(LSTMCell(n))` computes what `LSTM(n)` computes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _scope, regularizers
from kilnet.layers import _nested
from kilnet.layers import _rnn_cells as cells
from kilnet.layers._base import Layer, is_shape
from kilnet.layers._node import KerasTensor
from kilnet.layers._recurrent import (GRUKind, LSTMKind, SequenceMasks, SimpleRNNKind,
                                      StatefulStates, check_bool, check_call_options,
                                      regularization_arguments, sequence_mask)


class RNN(StatefulStates, SequenceMasks, Layer):
    """Runs a recurrent cell over the time axis of its input, as Keras's `RNN(cell)`.

    Args:
        cell: a cell (a layer with `call(inputs, states) -> (output, new_states)` and a
            `state_size`), or a list of cells, stacked (StackedRNNCells).
        return_sequences: return every step's output (batch, time, output_size), not only the
            last.
        return_state: also return the final states: `[output, *states]`.
        go_backwards: read the sequence from its end (outputs come in that order).
        zero_output_for_mask: masked steps output zeros instead of the previous output.
        stateful: each batch starts from the states the previous batch ended with (row i
            continues row i), as Keras's; the batch size must then be known: give it to the
            model's Input (`batch_size=` or `batch_shape=`). `reset_state()` sets them to zeros.
        unroll: accepted and ignored (the loop is compiled once).

    Call: `layer(sequences, initial_state=None, mask=None, training=None)`, sequences of shape
    (batch, time, ...); the cell sees one step (batch, ...) at a time.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet import ops
        >>> class MinimalRNNCell(kilnet.layers.Layer):
        ...     def __init__(self, units, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.units = units
        ...         self.state_size = units
        ...     def build(self, input_shape):
        ...         self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
        ...                                       initializer="ones", name="kernel")
        ...     def call(self, inputs, states):
        ...         output = ops.matmul(inputs, self.kernel) + states[0]
        ...         return output, [output]
        ...     def get_config(self):
        ...         return {**super().get_config(), "units": self.units}
        >>> rnn = kilnet.layers.RNN(MinimalRNNCell(2), return_sequences=True)
        >>> np.asarray(rnn(np.ones((1, 3, 4)))).tolist()
        [[[4.0, 4.0], [8.0, 8.0], [12.0, 12.0]]]
        >>> stacked = kilnet.layers.RNN([kilnet.layers.LSTMCell(4), kilnet.layers.GRUCell(3)])
        >>> stacked(np.ones((2, 5, 6))).shape
        (2, 3)
    """

    config_keys = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
                   "zero_output_for_mask")

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(list(cell))
        _check_cell(cell, "cell")
        self.cell = cell
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.return_state = check_bool(return_state, "return_state")
        self.go_backwards = check_bool(go_backwards, "go_backwards")
        self.stateful = check_bool(stateful, "stateful")
        self.unroll = check_bool(unroll, "unroll")  # accepted; the scan is compiled once
        self.zero_output_for_mask = check_bool(zero_output_for_mask, "zero_output_for_mask")

    def get_config(self):
        return {**super().get_config(), "cell": _nested.keras_entry(self.cell)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cell"] = _nested.rebuilt(config["cell"])
        return cls(**config)

    # -- the cell's sizes ------------------------------------------------------------------------
    @property
    def state_size(self) -> list:
        """The cell's state sizes as a list, one entry per state (a list for a stacked cell's
        multi-state member), as Keras's RNN keeps them."""
        size = self.cell.state_size
        return [size] if isinstance(size, int) else list(size)

    @property
    def output_size(self) -> int:
        """The size of each step's output: the cell's output_size, else its first state's."""
        size = getattr(self.cell, "output_size", None)
        if size is None:
            size = self.state_size[0]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"The cell {type(self.cell).__name__}'s output_size must be a "
                             f"positive integer. Received: output_size={size!r}")
        return size

    @property
    def STATES(self) -> int:  # noqa: N802 (the name kilnet's recurrent layers share)
        """How many state tensors the cell carries (a stacked cell's, all together)."""
        return len(jax.tree.leaves(self._state_shapes(), is_leaf=is_shape))

    def _state_shapes(self):
        """The states' shapes without the batch axis, in the cell's nesting."""
        return [[(s,) for s in size] if isinstance(size, (list, tuple)) else (size,)
                for size in self.state_size]

    # -- shapes ----------------------------------------------------------------------------------
    def _check_input_shape(self, input_shape):
        if not is_shape(input_shape) or len(input_shape) < 2:
            shown = (None,) + tuple(input_shape) if is_shape(input_shape) else input_shape
            raise ValueError("RNN takes sequences of shape (batch, time, ...) with at least 3 "
                             f"dimensions. Received: input of shape {shown}")

    def sample_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        step = (self.output_size,)
        output = (input_shape[0],) + step if self.return_sequences else step
        if self.return_state:
            return [output] + jax.tree.leaves(self._state_shapes(), is_leaf=is_shape)
        return output

    def compute_call_output_shape(self, input_shape, kwargs):
        check_call_options(self, kwargs)
        if kwargs.get("initial_state") is not None:
            self._check_symbolic_states(kwargs["initial_state"])
        return self.sample_output_shape(input_shape)

    def pack_symbolic_outputs(self, tensors):
        """`[output, *states]`, each state nested as the cell holds it (a stacked LSTMCell's
        `[h, c]` stays a list), as Keras's RNN returns them."""
        structure = jax.tree.structure(self._state_shapes(), is_leaf=is_shape)
        return [tensors[0], *jax.tree.unflatten(structure, tensors[1:])]

    # -- weights ---------------------------------------------------------------------------------
    def init(self, rng, input_shape):
        self._check_input_shape(input_shape)
        step_shape = tuple(input_shape[1:])
        if None in step_shape:
            raise ValueError("RNN needs each step's shape known (only the time axis may be "
                             f"None). Received: input of shape {(None,) + tuple(input_shape)}")
        states = self._default_states(1, self.cell.compute_dtype)
        self.cell.build_weights(rng, step_shape, call_extras=(states,))
        return (self.params_tree(), {**self.state_tree(), **self.carried_state_init()},
                self.sample_output_shape(input_shape))

    def nest_states(self, states: list):
        """A stacked cell's states as a list per cell (one state too), as Keras's RNN holds
        them: [[h1], [h2, c2]]."""
        if not isinstance(self.cell, StackedRNNCells):
            return states
        shapes = [[(s,) for s in _as_list(size)] for size in self.state_size]
        return jax.tree.unflatten(jax.tree.structure(shapes, is_leaf=is_shape), states)

    def _carried_shapes(self, batch) -> list:
        return [tuple(s.shape) for s in jax.tree.leaves(
            self._default_states(batch, self.cell.compute_dtype))]

    def _first_states(self, batch) -> list:
        """The cell's get_initial_state (zeros without one), as Keras makes its state
        variables from it; reset_state() sets zeros, as Keras's does."""
        return [np.asarray(s, self.variable_dtype) for s in jax.tree.leaves(
            self._default_states(batch, self.variable_dtype))]

    # -- calling ---------------------------------------------------------------------------------
    def apply(self, params, state, x, *, training=False, rng=None, sample_mask=None,
              mask=None, initial_state=None):
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        step = tuple(self.build_shape[1:]) if is_shape(self.build_shape) else None
        if x.ndim < 3 or (step is not None and tuple(x.shape[2:]) != step):
            raise ValueError(f"RNN {self.name!r} is built for sequences of shape (batch, "
                             f"time, {', '.join(map(str, step or ('...',)))}). Received: "
                             f"input of shape {tuple(x.shape)}")
        batch, dtype = x.shape[0], x.dtype   # the compute dtype (autocast_apply cast x)
        carried = self.carried_states(state, batch)
        if initial_state is None and carried is not None:
            initial_state = carried
        states = (self._default_states(batch, dtype) if initial_state is None
                  else self._given_states(initial_state, batch, dtype))
        inputs = jnp.swapaxes(x, 0, 1)
        keep = sequence_mask(mask, x.shape[:2])
        keep = None if keep is None else jnp.swapaxes(keep, 0, 1)[..., None]
        if self.go_backwards:
            inputs = jnp.flip(inputs, axis=0)
            keep = None if keep is None else jnp.flip(keep, axis=0)
        cell, cell_params, cell_state = self.cell, params[self.cell.name], state[
            self.cell.name]
        if training and rng is None:
            # The cell draws inside the loop, where a SeedGenerator's state cannot advance:
            # its key is drawn here, once per sequence (stateless_call binds the states).
            rng = _bound_key(cell)
        run_cell = _CellRunner(cell, cell_params, training, rng, sample_mask)
        last = self._first_previous_output(states, batch, dtype)
        (final, cell_state, last), (outputs, losses) = jax.lax.scan(
            lambda carry, xs: run_cell.step(carry, xs, self.zero_output_for_mask,
                                            self.return_sequences),
            (states, cell_state, last), (inputs, keep))
        run_cell.add_losses(losses)
        state = self.carry(dict(state, **{cell.name: cell_state}), final)
        output = jnp.swapaxes(outputs, 0, 1) if self.return_sequences else last
        return ([output, *final] if self.return_state else output), state

    def _default_states(self, batch, dtype) -> list:
        """The cell's get_initial_state(batch_size) when it has one, else zeros, as a list."""
        make = getattr(self.cell, "get_initial_state", None)
        if make is None:
            return jax.tree.map(lambda s: jnp.zeros((batch,) + s, dtype), self._state_shapes(),
                                is_leaf=is_shape)
        states = make(batch_size=batch)
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        return jax.tree.map(lambda s: jnp.asarray(s, dtype), states)

    def _given_states(self, initial_state, batch, dtype) -> list:
        """initial_state in the nesting of the cell's states (a flat list is accepted for a
        stacked cell, as are the nested lists Keras takes), each (batch, size), checked."""
        default = self._default_states(batch, dtype)
        given = [jnp.asarray(s, dtype) for s in jax.tree.leaves(initial_state)]
        wanted = [tuple(s.shape) for s in jax.tree.leaves(default)]
        if [tuple(s.shape) for s in given] != wanted:
            raise ValueError(f"RNN {self.name!r} takes initial_state as {len(wanted)} "
                             f"tensor(s) of shapes {wanted} (the cell's state_size "
                             f"{self.cell.state_size}). Received: shapes "
                             f"{[tuple(s.shape) for s in given]}")
        return jax.tree.unflatten(jax.tree.structure(default), given)

    def _check_symbolic_states(self, initial_state):
        given = [s for s in jax.tree.leaves(initial_state, is_leaf=lambda t: isinstance(
            t, KerasTensor))]
        wanted = [(None,) + s for s in jax.tree.leaves(self._state_shapes(), is_leaf=is_shape)]
        shapes = [tuple(getattr(s, "shape", ())) for s in given]
        if len(shapes) != len(wanted) or any(
                len(g) != len(w) or g[-1] not in (None, w[-1]) for g, w in zip(shapes, wanted)):
            raise ValueError(f"RNN {self.name!r} takes initial_state as {len(wanted)} "
                             f"tensor(s) of shapes {wanted} (the cell's state_size "
                             f"{self.cell.state_size}). Received: shapes {shapes}")

    def _first_previous_output(self, states, batch, dtype):
        """What a masked first step outputs: as Keras's JAX loop, the first state (the last
        cell's, when stacked) where it has the output's shape, else zeros."""
        first = states[-1] if isinstance(self.cell, StackedRNNCells) else states
        first = first[0] if isinstance(first, (list, tuple)) else first
        shape = (batch, self.output_size)
        if hasattr(first, "shape") and tuple(first.shape) == shape:
            return first.astype(dtype)
        return jnp.zeros(shape, dtype)


def _bound_key(layer):
    """The next key of the first SeedGenerator, on `layer` or a layer inside it, whose
    state is bound (stateless_call), or None."""
    key = layer.bound_key()
    for sub in layer.sublayers:
        key = _bound_key(sub) if key is None else key
    return key


class _CellRunner:
    """One step of the scan: the cell called on (x_t, states) under its params, with the
    step's losses kept for the loop to return."""

    def __init__(self, cell, params, training, rng, sample_mask):
        self.cell, self.params, self.training = cell, params, training
        self.rng, self.sample_mask = rng, sample_mask
        self.has_losses = [False, False]   # per-step add_loss terms, once-a-step penalties

    def step(self, carry, xs, zero_output_for_mask, sequences):
        states, cell_state, last = carry
        x_t, keep = xs
        # apply, not autocast_apply: the RNN's own autocast_apply has cast the cell's
        # weights and the sequence already (a layer runs its inner layers itself).
        with _scope.opened(_scope.Scope(loop=True)) as iteration:
            (output, new_states), cell_state = self.cell.apply(
                self.params, cell_state, x_t, states, training=self.training, rng=self.rng,
                sample_mask=self.sample_mask)
        new_states = _conform_states(new_states, states, self.cell)
        output = _conform_output(output, last, self.cell)
        if keep is not None:
            new_states = jax.tree.map(lambda new, old: _where_kept(keep, new, old), new_states,
                                      states)
            output = _where_kept(keep, output, 0.0 if zero_output_for_mask else last)
        losses = (sum(iteration.losses, jnp.zeros(())), sum(iteration.once_losses,
                                                             jnp.zeros(())))
        self.has_losses = [bool(iteration.losses), bool(iteration.once_losses)]
        return (new_states, cell_state, output), ((output if sequences else None), losses)

    def add_losses(self, losses):
        """The steps' add_loss terms summed, and one step's weight penalties, to the caller."""
        per_step, once = losses
        if self.has_losses[0]:
            _scope.add_loss(jnp.sum(per_step))
        if self.has_losses[1]:
            _scope.add_loss(once[-1])


def _where_kept(keep, new, old):
    """`new` where the step is kept, else `old`: keep (batch, 1) reaches every axis of a
    state or output of any rank (a ConvLSTM's are (batch, *spatial, filters))."""
    keep = keep.reshape(keep.shape[:1] + (1,) * (jnp.ndim(new) - 1))
    return jnp.where(keep, new, old)


def _conform_states(new_states, states, cell):
    """The cell's new states in the nesting and dtypes of the states it was given (a cell may
    return a tuple, or a single tensor for a single state, as Keras allows)."""
    if not isinstance(new_states, (list, tuple)):
        new_states = [new_states]
    new_leaves, old_leaves = jax.tree.leaves(new_states), jax.tree.leaves(states)
    if [tuple(n.shape) for n in new_leaves] != [tuple(o.shape) for o in old_leaves]:
        raise ValueError(
            f"The cell {type(cell).__name__} returned new states of shapes "
            f"{[tuple(n.shape) for n in new_leaves]} for states of shapes "
            f"{[tuple(o.shape) for o in old_leaves]}: each new state must have its state's "
            f"shape (state_size={cell.state_size}).")
    return jax.tree.unflatten(jax.tree.structure(states),
                              [n.astype(o.dtype) for n, o in zip(new_leaves, old_leaves)])


def _conform_output(output, last, cell):
    output = jnp.asarray(output)
    if output.shape != last.shape:
        raise ValueError(f"The cell {type(cell).__name__} returned outputs of shape "
                         f"{tuple(output.shape)}; its output_size (or first state_size) says "
                         f"{tuple(last.shape)}. Set output_size on the cell to the size of "
                         "its output.")
    return output.astype(last.dtype)


def _check_cell(cell, argument):
    if not isinstance(cell, Layer) or not callable(getattr(cell, "call", None)):
        raise ValueError(f"{argument} must be a kilnet layer with a call(inputs, states) "
                         f"method (an RNN cell). Received: {argument}={cell!r:.100}")
    size = getattr(cell, "state_size", None)
    leaves = jax.tree.leaves(size)
    if size is None or not leaves or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in leaves):
        raise ValueError(f"The RNN cell {type(cell).__name__} needs a state_size attribute: "
                         "a positive integer, or a list of them (one per state). Received: "
                         f"state_size={size!r:.100}")


class RNNCell(Layer):
    """What kilnet's cells share: Keras's step call `cell(inputs, states, training=None) ->
    (output, new_states)`, `state_size`, `output_size` and `get_initial_state`. The step's
    settings, weights and arithmetic come from the kind mixins of kilnet/layers/_recurrent.py
    (the same as the SimpleRNN, LSTM and GRU layers')."""

    def __init__(self, units, *, activation, recurrent_activation, use_bias,
                 kernel_initializer, recurrent_initializer, bias_initializer, dropout,
                 recurrent_dropout, seed, regularization, **kwargs):
        super().__init__(**kwargs)
        self._set_cell_settings(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
            regularization=regularization)

    @property
    def state_size(self):
        return self.units if self.STATES == 1 else [self.units] * self.STATES

    @property
    def output_size(self) -> int:
        return self.units

    def get_initial_state(self, batch_size=None):
        """Zeros (batch_size, units) for each state, in the compute dtype, as a list."""
        return [jnp.zeros((batch_size, self.units), self.compute_dtype)] * self.STATES

    def sample_output_shape(self, input_shape):
        raise ValueError(f"{type(self).__name__} computes one time step; run it over a "
                         f"sequence with kilnet.layers.RNN({type(self).__name__}(...)).")

    def init(self, rng, input_shape):
        if not is_shape(input_shape) or len(input_shape) != 1 or input_shape[0] is None:
            raise ValueError(f"{type(self).__name__} takes one step (batch, features) with a "
                             f"known number of features. Received: input of shape "
                             f"{(None,) + tuple(input_shape) if is_shape(input_shape) else input_shape}")
        return self.make_weights(rng, input_shape[0]), {}, (self.units,)

    def apply(self, params, state, inputs, states, *, training=False, rng=None,
              sample_mask=None):
        nested = isinstance(states, (list, tuple))
        given = list(states) if nested else [states]
        x = jnp.asarray(inputs)
        features = params["kernel"].shape[0]
        if x.ndim != 2 or x.shape[-1] != features or len(given) != self.STATES:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} takes a step of shape (batch, "
                f"{features}) and {self.STATES} state(s) of shape (batch, {self.units}). "
                f"Received: input of shape {tuple(x.shape)} and "
                f"{[tuple(jnp.shape(s)) for s in given]}")
        input_masks, recurrent_masks = self._dropout_masks(training, rng, x.shape[0], features)
        projected = cells.input_part(x, params["kernel"], self._input_bias(params),
                                     input_masks, self.GATES)
        output, new_states = self._step(params, recurrent_masks)(projected, tuple(given))
        regularizers.add_layer_penalties(self, params, None, sample_mask)
        return (output, list(new_states) if nested else new_states[0]), state


_CELL_KEYS = ("units", "activation", "use_bias", "kernel_initializer", "recurrent_initializer",
              "bias_initializer", "kernel_regularizer", "recurrent_regularizer",
              "bias_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint",
              "dropout", "recurrent_dropout", "seed")


class SimpleRNNCell(SimpleRNNKind, RNNCell):
    """One step of SimpleRNN, for `RNN(cell)`: `h = activation(x @ kernel + h_prev @
    recurrent_kernel + bias)`; one state of size units. Arguments as Keras's SimpleRNNCell
    (those of kilnet.layers.SimpleRNN about one step).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> cell = kilnet.layers.SimpleRNNCell(3)
        >>> output, states = cell(np.ones((2, 4)), [np.zeros((2, 3))])
        >>> output.shape, len(states)
        ((2, 3), 1)
    """

    config_keys = _CELL_KEYS

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(
            units, activation=activation, recurrent_activation=None, use_bias=use_bias,
            kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer, dropout=dropout,
            recurrent_dropout=recurrent_dropout, seed=seed,
            regularization=regularization_arguments(
                kernel_regularizer, recurrent_regularizer, bias_regularizer, None,
                kernel_constraint, recurrent_constraint, bias_constraint), **kwargs)


class LSTMCell(LSTMKind, RNNCell):
    """One step of LSTM, for `RNN(cell)`: gates i, f, c, o as Keras's LSTMCell; two states
    `[h, c]` of size units. Arguments as Keras's LSTMCell (unit_forget_bias included).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> cell = kilnet.layers.LSTMCell(3)
        >>> h, (h_again, c) = cell(np.ones((2, 4)), [np.zeros((2, 3)), np.zeros((2, 3))])
        >>> cell.state_size, h.shape, c.shape
        ([3, 3], (2, 3), (2, 3))
    """

    config_keys = (_CELL_KEYS[:2] + ("recurrent_activation", "use_bias", "unit_forget_bias")
                   + _CELL_KEYS[3:])   # Keras's order

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
            regularization=regularization_arguments(
                kernel_regularizer, recurrent_regularizer, bias_regularizer, None,
                kernel_constraint, recurrent_constraint, bias_constraint), **kwargs)
        self.unit_forget_bias = check_bool(unit_forget_bias, "unit_forget_bias")


class GRUCell(GRUKind, RNNCell):
    """One step of GRU, for `RNN(cell)`: gates z, r, h as Keras's GRUCell (reset_after=True by
    default, with the (2, 3 * units) bias); one state of size units.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> cell = kilnet.layers.GRUCell(3)
        >>> output, h = cell(np.ones((2, 4)), np.zeros((2, 3)))
        >>> output.shape, h.shape, [w.shape for w in cell.weights]
        ((2, 3), (2, 3), [(4, 9), (3, 9), (2, 9)])
    """

    config_keys = (_CELL_KEYS[:2] + ("recurrent_activation",) + _CELL_KEYS[2:-1]
                   + ("reset_after", "seed"))   # Keras's order

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, reset_after=True, seed=None, **kwargs):
        super().__init__(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
            regularization=regularization_arguments(
                kernel_regularizer, recurrent_regularizer, bias_regularizer, None,
                kernel_constraint, recurrent_constraint, bias_constraint), **kwargs)
        self.reset_after = check_bool(reset_after, "reset_after")


class StackedRNNCells(Layer):
    """Several cells run as one, each step's output the next cell's input, as Keras's
    StackedRNNCells (what `RNN([cell_1, cell_2])` makes). Its states are the cells' states in
    order, each as its cell holds it; its output is the last cell's.

    Args:
        cells: a list of RNN cells.

    Example:
        >>> import kilnet
        >>> cells = kilnet.layers.StackedRNNCells([kilnet.layers.LSTMCell(4),
        ...                                        kilnet.layers.GRUCell(2)])
        >>> cells.state_size, cells.output_size
        ([[4, 4], 2], 2)
    """

    def __init__(self, cells, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(cells, (list, tuple)) or not cells:
            raise ValueError("StackedRNNCells takes a non-empty list of RNN cells. Received: "
                             f"cells={cells!r:.100}")
        for index, cell in enumerate(cells):
            _check_cell(cell, f"cells[{index}]")
        self.cells = list(cells)

    def get_config(self):
        return {**super().get_config(),
                "cells": [_nested.keras_entry(cell) for cell in self.cells]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cells"] = [_nested.rebuilt(cell) for cell in config["cells"]]
        return cls(**config)

    @property
    def state_size(self) -> list:
        return [cell.state_size for cell in self.cells]

    @property
    def output_size(self) -> int:
        return _output_size(self.cells[-1])

    def get_initial_state(self, batch_size=None):
        """Each cell's initial states: its get_initial_state, else zeros (a tensor for a
        single-state cell, a list for several)."""
        states = []
        for cell in self.cells:
            make = getattr(cell, "get_initial_state", None)
            if make is not None:
                made = make(batch_size=batch_size)
                if isinstance(cell.state_size, int) and isinstance(made, (list, tuple)):
                    made = made[0]
            elif isinstance(cell.state_size, int):
                made = jnp.zeros((batch_size, cell.state_size), cell.compute_dtype)
            else:
                made = [jnp.zeros((batch_size, s), cell.compute_dtype) for s in cell.state_size]
            states.append(made)
        return states

    def sample_output_shape(self, input_shape):
        raise ValueError("StackedRNNCells computes one time step; run it over a sequence with "
                         "kilnet.layers.RNN(StackedRNNCells([...])).")

    def init(self, rng, input_shape):
        states = self.get_initial_state(1)
        for cell, cell_states in zip(self.cells, states):
            cell.build_weights(rng, input_shape, call_extras=(_as_list(cell_states),))
            input_shape = (_output_size(cell),)
        return self.params_tree(), self.state_tree(), input_shape

    def apply(self, params, state, inputs, states, *, training=False, rng=None,
              sample_mask=None):
        if not isinstance(states, (list, tuple)) or len(states) != len(self.cells):
            raise ValueError(f"StackedRNNCells {self.name!r} takes one entry of states per "
                             f"cell ({len(self.cells)}). Received: {states!r:.100}")
        state, new_states = dict(state), []
        # two cells may share a name (Keras's are kept apart by object)
        tree_keys = {id(cell): key for key, cell in self.keyed_sublayers()}
        for index, (cell, cell_states) in enumerate(zip(self.cells, states)):
            key = None if rng is None else jax.random.fold_in(rng, index)
            at = tree_keys[id(cell)]
            (inputs, out_states), state[at] = cell.apply(
                params[at], state[at], inputs, _as_list(cell_states),
                training=training, rng=key, sample_mask=sample_mask)
            if not isinstance(out_states, (list, tuple)):
                out_states = [out_states]
            # As Keras: a cell given one tensor (not a list) gets one tensor back.
            new_states.append(list(out_states) if isinstance(cell_states, (list, tuple))
                              else out_states[0])
        return (inputs, new_states), state


def _as_list(states) -> list:
    return list(states) if isinstance(states, (list, tuple)) else [states]


def _output_size(cell) -> int:
    size = getattr(cell, "output_size", None)
    if size is not None:
        return size
    return cell.state_size[0] if isinstance(cell.state_size, (list, tuple)) else cell.state_size
