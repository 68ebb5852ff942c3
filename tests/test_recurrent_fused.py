"""The recurrent layers' fused recurrence (kilnet/layers/_rnn_cells.fused_scan): its
hand-written gradient against JAX's own differentiation of the step-by-step scan, which the
layers use when the fused form does not apply (recurrent dropout, GRU with reset_after=False),
in float64 over every option that changes the loop: masks, go_backwards, return_sequences,
return_state, zero_output_for_mask, initial states, biases, activations and input dropout."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kilnet import layers

BATCH, TIME, FEATURES, UNITS = 3, 6, 4, 5
# (layer class, settings, half of LOOP_OPTIONS): each class runs every one of the 32 loop
# options, half with its default cell and half with the other settings (biases, activations
# change the cell's step, not the loop around it). A half is the options of one parity of
# their number of True values: in each half every combination of any four of the five
# options occurs (the fifth makes the parity), so every cell still meets every pair, triple
# and quadruple of loop options, and compiling 16 loops instead of 32 halves the time.
CASES = [(layers.LSTM, {}, 0), (layers.GRU, {}, 0), (layers.SimpleRNN, {}, 0),
         (layers.GRU, {"use_bias": False}, 1), (layers.LSTM, {"activation": "relu"}, 1),
         (layers.SimpleRNN, {"use_bias": False, "activation": "sigmoid"}, 1)]
LOOP_OPTIONS = list(itertools.product([False, True], repeat=5))


def _loop_options(half):
    """(index in LOOP_OPTIONS, options) for the options whose count of True is of parity
    `half`."""
    return [(k, options) for k, options in enumerate(LOOP_OPTIONS) if sum(options) % 2 == half]


def test_the_halves_cover_every_loop_option_for_every_class_and_four_way_combination():
    halves = [_loop_options(h) for h in (0, 1)]
    assert sorted(k for half in halves for k, _ in half) == list(range(len(LOOP_OPTIONS)))
    for cls in {c for c, _, _ in CASES}:
        assert {h for c, _, h in CASES if c is cls} == {0, 1}
    for half in halves:
        for dropped in range(5):
            fours = {o[:dropped] + o[dropped + 1:] for _, o in half}
            assert len(fours) == 16


def _loss_and_grads(layer, params, x, mask, initial_state, *, fused, training=False):
    """Value and gradients (params, x, initial states) of a loss on every output; `fused`
    False forces the step-by-step scan differentiated by JAX."""
    def loss(params, x, initial_state):
        out, _ = layer.apply(params, {}, x, mask=mask, initial_state=initial_state,
                             training=training, rng=jax.random.PRNGKey(3) if training else None)
        outs = out if isinstance(out, list) else [out]
        return sum(jnp.sum(jnp.sin(o * (i + 1.3))) for i, o in enumerate(outs))

    cell = layer._cell
    if not fused:
        layer._cell = lambda: None
    try:
        return jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x, initial_state)
    finally:
        layer._cell = cell


def _setup(cls, kwargs, seed, **options):
    layer = cls(UNITS, **kwargs, **options)
    params, _, _ = layer.init(np.random.default_rng(seed), (TIME, FEATURES))
    rng = np.random.default_rng(seed + 1)
    params = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=np.shape(a)) * 0.5), params)
    x = jnp.asarray(rng.normal(size=(BATCH, TIME, FEATURES)))
    states = [jnp.asarray(rng.normal(size=(BATCH, UNITS))) for _ in range(layer.STATES)]
    return layer, params, x, states, rng


def _assert_same(a, b):
    for got, want in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls, kwargs, half", CASES,
                         ids=lambda c: getattr(c, "__name__", str(c)))
def test_fused_gradient_equals_jax_scan_gradient(cls, kwargs, half):
    with jax.enable_x64(True):
        for k, (sequences, backwards, zero_output, masked, state) in _loop_options(half):
            layer, params, x, states, rng = _setup(
                cls, kwargs, k, return_sequences=sequences, go_backwards=backwards,
                return_state=state)
            layer.zero_output_for_mask = zero_output
            mask = jnp.asarray(rng.random((BATCH, TIME)) > 0.3) if masked else None
            assert layer._cell() is not None  # the fused form applies to these layers
            fused = _loss_and_grads(layer, params, x, mask, states, fused=True)
            reference = _loss_and_grads(layer, params, x, mask, states, fused=False)
            _assert_same(fused, reference)


@pytest.mark.parametrize("cls", [layers.LSTM, layers.GRU, layers.SimpleRNN])
def test_fused_gradient_with_input_dropout(cls):
    """Input dropout (one mask per sequence) stays on the fused path: same masks, same
    gradient as the scan's."""
    with jax.enable_x64(True):
        layer, params, x, states, _ = _setup(cls, {}, 7, dropout=0.4, return_sequences=True)
        fused = _loss_and_grads(layer, params, x, None, states, fused=True, training=True)
        reference = _loss_and_grads(layer, params, x, None, states, fused=False, training=True)
        _assert_same(fused, reference)
        # and the masks did drop something: without dropout the loss differs
        plain = _loss_and_grads(layer, params, x, None, states, fused=True, training=False)
        assert abs(float(plain[0]) - float(fused[0])) > 1e-3


def test_the_fused_form_is_used_only_where_it_applies():
    assert layers.GRU(3, reset_after=False)._cell() is None
    assert layers.LSTM(3)._cell() is not None
    # recurrent dropout draws one mask per gate inside the step: the scan path
    layer = layers.LSTM(UNITS, recurrent_dropout=0.5, return_sequences=True)
    params, _, _ = layer.init(np.random.default_rng(0), (TIME, FEATURES))
    x = np.ones((BATCH, TIME, FEATURES))
    jaxpr = jax.make_jaxpr(lambda p: layer.apply(p, {}, x, training=True,
                                                 rng=jax.random.PRNGKey(0))[0])(params)
    assert "custom_vjp" not in str(jaxpr)
    jaxpr = jax.make_jaxpr(lambda p: layers.LSTM(UNITS).apply(p, {}, x)[0])(params)
    assert "custom_vjp" in str(jaxpr)
