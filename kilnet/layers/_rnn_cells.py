"""The arithmetic of the recurrent layers: one time step of SimpleRNN, LSTM and GRU, and the
`jax.lax.scan` that runs a step over a whole sequence.

Why a module apart from the layers (kilnet/layers/_recurrent.py): the layers deal with
arguments, shapes, configs and weights; this is the part that must match Keras's formulas
number for number, and it reads best as plain functions of arrays.

Layout of the weights, as Keras's: the kernel is (features, gates * units), the recurrent
kernel (units, gates * units), gates side by side in Keras's order (LSTM: i, f, c, o; GRU: z,
r, h). The input part `x_t @ kernel + bias` is computed inside the loop, step by step, as Keras
does: computing it for all steps before the scan looks cheaper (one large matmul) but makes a
gates-wide (time, batch, 4 * units) array that the scan and its gradient move around; measured
on the LSTM(64) bench workload (2-core AMD EPYC), the median epoch went 6.5 s -> 3.8 s. The
sequence is read time-major (the scan's order); without return_sequences no output is stacked.

Dropout masks are drawn once per sequence, as Keras does. Keras draws one input mask (and one
recurrent mask) for all gates, except when recurrent_dropout is set, where it switches to one
mask per gate; `masks` below is therefore an array (count, batch, size) with count 1 or the
number of gates, or None (no dropout: inference, or a rate of 0).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from kilnet._custom_gradients import custom_vjp
from kilnet.layers._dropout_masks import keep_mask


def dropout_masks(rng, rate: float, count: int, shape: tuple):
    """`count` inverted-dropout masks of `shape` (zeros with probability `rate`, the rest
    1 / (1 - rate)), as Keras's RNN dropout masks."""
    keep = keep_mask(rng, 1.0 - rate, (count,) + tuple(shape))
    return keep.astype(jnp.float32) / (1.0 - rate)


def input_part(x, kernel, bias, masks, gates: int):
    """`x @ kernel + bias` for one step's (batch, features) input, each gate's block of the
    kernel seeing the input through that gate's (batch, features) dropout mask."""
    if masks is None or masks.shape[0] == 1:
        y = (x if masks is None else x * masks[0]) @ kernel
    else:
        blocks = jnp.split(kernel, gates, axis=1)
        y = jnp.concatenate([(x * m) @ k for m, k in zip(masks, blocks)], axis=-1)
    return y if bias is None else y + bias


def recurrent_part(h, kernel, masks, gates: int):
    """`h @ recurrent_kernel`, each gate's block seeing h through its recurrent dropout mask."""
    if masks is None or masks.shape[0] == 1:
        return (h if masks is None else h * masks[0]) @ kernel
    blocks = jnp.split(kernel, gates, axis=1)
    return jnp.concatenate([(h * m) @ k for m, k in zip(masks, blocks)], axis=-1)


def simple_rnn_cell(z, states, *, activation):
    """SimpleRNN's step from its pre-activation z = x W + b + h_prev U: h = activation(z)."""
    h = activation(z)
    return h, (h,)


def lstm_cell(z, states, *, activation, recurrent_activation):
    """LSTM's step (gates i, f, c, o) from its pre-activations z = x W + b + h_prev U:
    c = f * c_prev + i * activation(c~), h = o * activation(c)."""
    c_prev = states[1]
    i, f, candidate, o = jnp.split(z, 4, axis=-1)
    c = recurrent_activation(f) * c_prev + recurrent_activation(i) * activation(candidate)
    h = recurrent_activation(o) * activation(c)
    return h, (h, c)


def gru_cell(x_t, r, states, *, activation, recurrent_activation):
    """GRU's step with reset_after=True (gates z, r, h) after its one matmul
    r = h_prev U + recurrent bias: h = z * h_prev + (1 - z) * activation(x_h + reset * r_h)."""
    h_prev = states[0]
    x_z, x_r, x_h = jnp.split(x_t, 3, axis=-1)
    r_z, r_r, r_h = jnp.split(r, 3, axis=-1)
    z = recurrent_activation(x_z + r_z)
    reset = recurrent_activation(x_r + r_r)
    candidate = activation(x_h + reset * r_h)
    h = z * h_prev + (1.0 - z) * candidate
    return h, (h,)


def simple_rnn_step(x_t, states, *, recurrent_kernel, masks, activation):
    """SimpleRNN: h = activation(x W + b + h_prev U)."""
    return simple_rnn_cell(x_t + recurrent_part(states[0], recurrent_kernel, masks, 1), states,
                           activation=activation)


def lstm_step(x_t, states, *, recurrent_kernel, masks, activation, recurrent_activation):
    """LSTM (gates i, f, c, o): c = f * c_prev + i * activation(c~), h = o * activation(c)."""
    return lstm_cell(x_t + recurrent_part(states[0], recurrent_kernel, masks, 4), states,
                     activation=activation, recurrent_activation=recurrent_activation)


def gru_step(x_t, states, *, recurrent_kernel, recurrent_bias, masks, activation,
             recurrent_activation, reset_after):
    """GRU (gates z, r, h): h = z * h_prev + (1 - z) * activation(candidate).

    reset_after=True (Keras's default, cuDNN's form) applies the reset gate after the
    recurrent matmul, `r * (h_prev U_h + b_h)`; False applies it before, `(r * h_prev) U_h`
    (the original GRU, with no recurrent bias)."""
    h_prev = states[0]
    if reset_after:
        inner = recurrent_part(h_prev, recurrent_kernel, masks, 3)
        if recurrent_bias is not None:
            inner = inner + recurrent_bias
        return gru_cell(x_t, inner, states, activation=activation,
                        recurrent_activation=recurrent_activation)
    x_z, x_r, x_h = jnp.split(x_t, 3, axis=-1)
    units = h_prev.shape[-1]
    gate_masks = None if masks is None else masks[:2]
    r_z, r_r = jnp.split(recurrent_part(h_prev, recurrent_kernel[:, :2 * units], gate_masks, 2),
                         2, axis=-1)
    z = recurrent_activation(x_z + r_z)
    r = recurrent_activation(x_r + r_r)
    h_for_candidate = h_prev if masks is None else h_prev * masks[-1]
    candidate = activation(x_h + (r * h_for_candidate) @ recurrent_kernel[:, 2 * units:])
    h = z * h_prev + (1.0 - z) * candidate
    return h, (h,)


def scan(step, inputs, states, mask, *, go_backwards: bool, zero_output_for_mask: bool,
         sequences: bool = True, project=None):
    """Run `step(project(x_t), states) -> (output, states)` over the time-major `inputs`
    (time, batch, ...) with `jax.lax.scan`; returns (outputs (batch, time, units), final
    states), or (None, final states) without `sequences` (the last output is then the first
    final state). `project`: the input part of the step (input_part), or None.

    go_backwards reads the sequence from its end, and the outputs come in that reading order
    (as Keras returns them). Where `mask` (bool, (batch, time)) is False the step is skipped:
    the states carry over unchanged and the output repeats the previous output (the first
    state, which is the last output of all three layers), or is zero with
    zero_output_for_mask, as Keras's scan does."""
    if go_backwards:
        inputs = jnp.flip(inputs, axis=0)
        mask = None if mask is None else jnp.flip(mask, axis=1)
    masks = None if mask is None else jnp.swapaxes(mask, 0, 1)[..., None]

    def body(carry, step_inputs):
        x_t, keep = step_inputs
        if project is not None:
            x_t = project(x_t)
        output, new_states = step(x_t, carry)
        if keep is not None:
            new_states = tuple(jnp.where(keep, new, old) for new, old in zip(new_states, carry))
            output = jnp.where(keep, output, 0.0 if zero_output_for_mask else carry[0])
        # Only the last output wanted: none stacked (a (time, batch, units) array less, in
        # the forward pass and in the gradient).
        return new_states, (output if sequences else None)

    final, outputs = jax.lax.scan(body, tuple(states), (inputs, masks))
    return (jnp.swapaxes(outputs, 0, 1) if sequences else None), final


# -- the fused recurrence: one matmul a step backwards, weight gradients after the loop --------------
# When a layer's step is `cell(x W + b, h_prev U (+ b_r), states)` with `cell` free of matmuls
# (every layer without recurrent dropout, except GRU with reset_after=False), its gradient is
# written here instead of left to JAX's transpose of the scan. JAX's transpose computes, in
# every step of the backward loop, the gradients of the input projection and of both kernels
# (four small matmuls and the accumulations); here the backward loop keeps one
# (batch, gates*units) x (gates*units, units) product a step, and the weight and input gradients
# are large matmuls over all time steps at once after it. The forward loop is unchanged (the
# input projection stays inside it: measured, a hoisted projection makes XLA CPU read each step
# through a dynamic slice fused into the gates' exp/tanh, 1.5x slower).
# Measured on the bench's LSTM(64) (200 steps, batch 64, 2-core AMD EPYC): see issue 13's note.
@dataclasses.dataclass(frozen=True)
class CellStep:
    """A cell function with its settings (activations), equal to another of the same: the
    fused recurrence called eagerly compiles once per layer and shape, where a new
    functools.partial each call compiled the loop again (kilnet._custom_gradients)."""

    function: Callable
    settings: tuple   # (name, value) pairs

    def __call__(self, *args):
        return self.function(*args, **dict(self.settings))


def cell_step(function, **settings) -> CellStep:
    """`function` with keyword `settings`, as functools.partial, but equal by value.

    Example:
        >>> cell_step(max, key=abs)(-3, 2) == cell_step(max, key=abs)(-3, 2) == -3
        True
        >>> cell_step(max, key=abs) == cell_step(max, key=abs)
        True
    """
    return CellStep(function, tuple(sorted(settings.items())))


def fused_scan(cell, inputs, states, input_weights, recurrent_kernel, recurrent_bias, mask,
               *, additive: bool, go_backwards: bool, zero_output_for_mask: bool,
               sequences: bool):
    """As `scan`, for the steps of `cell` after their two matmuls: `cell(z, states)` with
    `z = x_t W + b + h_prev U` when `additive`, else `cell(x_t W + b, h_prev U + b_r,
    states)`; each returns (output, states). `input_weights` = (W, b or None, the input
    dropout mask (1, batch, features) or None); `recurrent_bias` b_r or None. Same outputs
    as `scan`; the gradient is `_fused_backward`'s."""
    if go_backwards:
        inputs = jnp.flip(inputs, axis=0)
        mask = None if mask is None else jnp.flip(mask, axis=1)
    keep = None if mask is None else jnp.swapaxes(mask, 0, 1)[..., None]
    outputs, final = _fused_recurrence(
        (cell, additive, zero_output_for_mask, sequences), inputs, tuple(input_weights),
        tuple(states), recurrent_kernel, recurrent_bias, keep)
    return (jnp.swapaxes(outputs, 0, 1) if sequences else None), final


def _masked_step(cell, zero_output_for_mask, cell_inputs, states, keep):
    """One step of the recurrence after its matmuls, masked time steps carried over as `scan`."""
    output, new_states = cell(*cell_inputs, states)
    if keep is not None:
        new_states = tuple(jnp.where(keep, new, old) for new, old in zip(new_states, states))
        output = jnp.where(keep, output, 0.0 if zero_output_for_mask else states[0])
    return output, new_states


def _fused_forward(static, inputs, input_weights, states, kernel, bias, keep, *, save: bool):
    cell, additive, zero_output_for_mask, sequences = static

    def body(carry, step_inputs):
        x_t, keep_t = step_inputs
        # one input mask for every gate here (recurrent dropout takes the scan path)
        projected = input_part(x_t, *input_weights, gates=1)
        r = carry[0] @ kernel
        if bias is not None:
            r = r + bias
        cell_inputs = (projected + r,) if additive else (projected, r)
        output, new_states = _masked_step(cell, zero_output_for_mask, cell_inputs, carry, keep_t)
        # What the backward loop needs: the cell's inputs and states. It recomputes the cell's
        # elementwise VJP from them; stacking JAX's own residuals instead (13 arrays a step for
        # LSTM, not 3) measured no faster.
        saved = (cell_inputs, carry) if save else None
        return new_states, ((output if sequences else None), saved)

    final, (outputs, saved) = jax.lax.scan(body, states, (inputs, keep))
    return outputs, final, saved


@custom_vjp(nondiff_argnums=(0,), eager_compiled=True)   # an eager call: one program
def _fused_recurrence(static, inputs, input_weights, states, kernel, bias, keep):
    outputs, final, _ = _fused_forward(static, inputs, input_weights, states, kernel, bias, keep,
                                       save=False)
    return outputs, final


def _fused_recurrence_fwd(static, inputs, input_weights, states, kernel, bias, keep):
    outputs, final, saved = _fused_forward(static, inputs, input_weights, states, kernel, bias,
                                           keep, save=True)
    return (outputs, final), (inputs, input_weights, kernel, bias, keep, saved)


def _fused_backward(static, residuals, cotangents):
    """The reverse loop: per step, the cell's VJP (elementwise, from the saved cell inputs
    and states) and one matmul `dr @ U^T` into the previous h. Then the inputs' and every
    weight's gradient as matmuls over all (time, batch) rows: dx = dz_x W^T, and
    (dW, dU, db) from `_weight_gradients`."""
    cell, additive, zero_output_for_mask, sequences = static
    inputs, (w, b, dropout_mask), kernel, bias, keep, saved = residuals
    h_prev_all = saved[1][0]
    d_outputs, d_final = cotangents
    # U^T made once, outside the loop: inside it XLA folds the transposition into the
    # product, whose transposed operand Eigen runs at half speed here (64x256 by 256x64: 47
    # against 28 us a time step; LSTM epoch 1.12x, in-process A/B).
    kernel_t = kernel.T

    def body(d_states, step):
        (cell_inputs, states), keep_t, d_out = step
        _, pullback = jax.vjp(
            lambda c, s: _masked_step(cell, zero_output_for_mask, c, s, keep_t),
            cell_inputs, states)
        if d_out is None:
            d_out = jnp.zeros_like(d_states[0])
        d_cell_inputs, d_prev = pullback((d_out, d_states))
        d_r = d_cell_inputs[-1]
        d_prev = (d_prev[0] + d_r @ kernel_t,) + tuple(d_prev[1:])
        return d_prev, (None if additive else d_cell_inputs[0], d_r)

    d_states0, (d_projected, d_r_all) = jax.lax.scan(
        body, tuple(d_final), (saved, keep, d_outputs if sequences else None), reverse=True)
    seen = inputs if dropout_mask is None else inputs * dropout_mask[0]
    d_seen = (d_r_all if additive else d_projected) @ w.T
    d_inputs = d_seen if dropout_mask is None else d_seen * dropout_mask[0]
    d_mask = None if dropout_mask is None else jnp.zeros_like(dropout_mask)
    if additive:  # dW, dU and db against the same dz: one pass over it
        d_w, d_kernel, d_b = _weight_gradients((seen, h_prev_all), d_r_all, b is not None)
        d_bias = None
    else:
        d_w, d_b = _weight_gradients((seen,), d_projected, b is not None)
        d_kernel, d_bias = _weight_gradients((h_prev_all,), d_r_all, bias is not None)
    d_input_weights = (d_w.astype(w.dtype), None if b is None else d_b.astype(b.dtype), d_mask)
    d_kernel = d_kernel.astype(kernel.dtype)
    d_bias = None if bias is None else d_bias.astype(bias.dtype)
    d_keep = None if keep is None else np.zeros(keep.shape, jax.dtypes.float0)
    return d_inputs, d_input_weights, d_states0, d_kernel, d_bias, d_keep


def _weight_gradients(operands, d_out, with_bias: bool):
    """The gradients of `sum_i operand_i @ weight_i (+ bias)` over every leading (time, batch)
    row, from the output's gradient d_out: [operand_1 | ... | ones]^T @ d_out as one matmul,
    split into (d_weight_1, ..., d_bias or None). One pass over d_out, the largest array; the
    bias as a column of ones, not a sum (XLA CPU rewrites a 12,800-row reduction into a
    reduce-window: 2.9 ms against 0.63 ms as a matmul, for (200, 64, 256))."""
    rows = [a.reshape(-1, a.shape[-1]) for a in operands]
    if with_bias:
        rows.append(jnp.ones((rows[0].shape[0], 1), rows[0].dtype))
    stacked = jnp.concatenate(rows, axis=1).T @ d_out.reshape(-1, d_out.shape[-1])
    widths = np.cumsum([r.shape[1] for r in rows])[:-1]
    parts = jnp.split(stacked, widths, axis=0)
    return (*parts[:len(operands)], parts[-1][0] if with_bias else None)


_fused_recurrence.defvjp(_fused_recurrence_fwd, _fused_backward)

