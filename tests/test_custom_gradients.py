"""kilnet._custom_gradients: written derivatives that an eager call on arrays skips tracing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kilnet
from kilnet import activations, layers
from kilnet._custom_gradients import custom_jvp, custom_vjp, eager_shortcut


def _double():
    """2x whose written gradient is 10x, so a test sees which rule ran."""
    @custom_vjp(nondiff_argnums=(1,))
    def double(x, note):
        return 2 * x

    double.defvjp(lambda x, note: (double(x, note), None), lambda note, _, g: (10 * g,))
    return double


@pytest.fixture
def machinery_calls(monkeypatch):
    """How often JAX's custom_vjp machinery runs (its argument checks, signature
    inspection and flattening: what the shortcut skips)."""
    calls = []
    original = jax.custom_vjp.__call__

    def counted(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jax.custom_vjp, "__call__", counted)
    return calls


def test_an_eager_call_skips_jax_machinery(machinery_calls):
    double = _double()
    assert double(jnp.float32(3.0), "n").item() == 6.0
    assert machinery_calls == []
    assert jax.jit(lambda v: double(v, "n"))(jnp.float32(3.0)).item() == 6.0
    assert len(machinery_calls) == 1     # traced: JAX's, which the derivatives need


def test_inside_transformations_the_written_rule_is_used():
    double = _double()
    x = jnp.float32(3.0)
    assert jax.grad(lambda v: double(v, "n"))(x).item() == 10.0   # not 2, autodiff's
    assert jax.jit(jax.grad(lambda v: double(v, "n")))(x).item() == 10.0
    np.testing.assert_array_equal(jax.vmap(lambda v: double(v, "n"))(jnp.arange(3.0)),
                                  [0.0, 2.0, 4.0])
    assert jax.jit(lambda v: double(v, "n"))(x).item() == 6.0


def test_custom_jvp_keeps_its_rule_and_its_decorator_form():
    @custom_jvp
    def cube(x):
        return x ** 3

    @cube.defjvp
    def cube_jvp(primals, tangents):
        return cube(primals[0]), 7 * tangents[0]

    assert callable(cube_jvp)     # defjvp hands the rule back, as JAX's does
    assert cube(jnp.float32(2.0)).item() == 8.0
    assert jax.grad(cube)(jnp.float32(2.0)).item() == 7.0
    assert cube.__name__ == "cube"


def test_jax_relu_keeps_its_zero_gradient_at_the_kink():
    relu = eager_shortcut(jax.nn.relu)
    assert relu(jnp.array([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 2.0]
    assert jax.grad(relu)(jnp.float32(0.0)).item() == 0.0   # jnp.maximum's would be 0.5
    assert jax.grad(lambda v: activations.relu(v).sum())(jnp.zeros(3)).tolist() == [0.0] * 3


@pytest.mark.filterwarnings("ignore")
def test_an_eager_convnet_call_equals_its_compiled_prediction():
    """Keras's Atari Q-network: convolutions, biases and relus through the eager shortcut
    give what predict's compiled program gives."""
    inputs = kilnet.Input((36, 36, 4))
    x = layers.Conv2D(8, 8, strides=4, activation="relu")(inputs)
    x = layers.Conv2D(16, 4, strides=2, activation="relu")(x)
    x = layers.MaxPooling2D(2)(layers.Conv2D(16, 1, activation="relu")(x))
    x = layers.Dense(4)(layers.Dense(32, activation="relu")(layers.Flatten()(x)))
    model = kilnet.Model(inputs, x)
    states = np.random.default_rng(0).random((3, 36, 36, 4), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(model(states, training=False)),
                               model.predict(states, verbose=0), rtol=1e-5, atol=1e-6)


def test_an_eager_compiled_function_is_traced_once_and_keeps_its_rule():
    runs = []

    @custom_vjp(nondiff_argnums=(1,), eager_compiled=True)
    def scaled(x, factor):
        runs.append(factor)
        return sum(factor) * x if isinstance(factor, list) else factor * x

    scaled.defvjp(lambda x, f: (scaled(x, f), None), lambda f, _, g: (10 * g,))
    for _ in range(3):
        assert scaled(jnp.arange(3.0), 2.0).tolist() == [0.0, 2.0, 4.0]
    assert runs == [2.0]             # compiled on the first call, reused after
    assert jax.grad(lambda v: scaled(v, 2.0).sum())(jnp.ones(2)).tolist() == [10.0, 10.0]
    # a static argument that cannot key a program (a list) runs the function directly
    assert scaled(jnp.ones(2), [3.0]).tolist() == [3.0, 3.0] and runs[-1] == [3.0]


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_an_eager_recurrent_call_traces_its_step_once(kind):
    """An eager call of a recurrent layer compiles its loop once per shape: the step (here
    its activation) is traced on the first call only, where a new cell each call had the
    loop traced and compiled again every time (241 ms an eager call of a two-layer
    bidirectional LSTM on 200 steps, 2.2 ms now)."""
    traced = []

    def counting_tanh(x):
        traced.append(1)
        return jnp.tanh(x)

    layer = getattr(layers, kind)(4, activation=counting_tanh)
    x = np.random.default_rng(0).random((2, 5, 3), dtype=np.float32)
    first = np.asarray(layer(x))
    after_first = len(traced)
    for _ in range(2):
        np.testing.assert_array_equal(np.asarray(layer(x)), first)
    assert after_first > 0 and len(traced) == after_first
