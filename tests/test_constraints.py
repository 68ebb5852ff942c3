"""Weight constraints (kilnet.constraints): the projections equal Keras's, the compiled step
applies them after each optimizer update as Keras's optimizers do, and they save and load."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import constraints  # noqa: E402

PAIRS = [
    (lambda ns: ns.MaxNorm(max_value=1.5, axis=0)),
    (lambda ns: ns.MaxNorm(max_value=0.5, axis=[0, 1])),
    (lambda ns: ns.NonNeg()),
    (lambda ns: ns.UnitNorm(axis=1)),
    (lambda ns: ns.MinMaxNorm(min_value=0.5, max_value=1.0, rate=0.7, axis=0)),
]


@pytest.mark.parametrize("make", PAIRS)
def test_projections_equal_keras(make):
    w = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    ours, theirs = make(constraints), make(keras.constraints)
    np.testing.assert_allclose(np.asarray(ours(w)), np.asarray(theirs(w)), rtol=1e-6,
                               atol=1e-7)
    assert ours.get_config() == theirs.get_config()
    assert type(ours).from_config(ours.get_config()) == ours


def test_names_resolve_as_keras():
    for name, cls in (("max_norm", constraints.MaxNorm), ("non_neg", constraints.NonNeg),
                      ("unit_norm", constraints.UnitNorm),
                      ("min_max_norm", constraints.MinMaxNorm), ("MaxNorm", constraints.MaxNorm)):
        assert type(constraints.get(name)) is cls
        assert type(keras.constraints.get(name)).__name__ == cls.__name__


def dense_pair(lib, **constraint_args):
    inputs = lib.Input(shape=(4,))
    h = lib.layers.Dense(6, activation="relu", **constraint_args)(inputs)
    return lib.Model(inputs, lib.layers.Dense(1)(h))


def test_one_training_step_matches_keras():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 4)).astype(np.float32), rng.normal(size=(16, 1)).astype(
        np.float32)
    ours = dense_pair(kilnet, kernel_constraint=constraints.MaxNorm(0.4),
                      bias_constraint="non_neg")
    theirs = dense_pair(keras, kernel_constraint=keras.constraints.MaxNorm(0.4),
                        bias_constraint="non_neg")
    ours.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.5), loss="mse")
    ours.build(seed=0)
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="mse")
    theirs.set_weights(ours.get_weights())
    ours.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    theirs.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    kernel, bias = ours.get_weights()[:2]
    assert np.linalg.norm(kernel, axis=0).max() <= 0.4 + 1e-6
    assert bias.min() >= 0.0


def test_without_the_constraint_the_weights_leave_the_set():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 4)).astype(np.float32), 10 * rng.normal(size=(16, 1)).astype(
        np.float32)
    model = dense_pair(kilnet)
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.5), loss="mse")
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=0)
    assert np.linalg.norm(model.get_weights()[0], axis=0).max() > 0.4  # the test above can fail


class Positive(kilnet.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 2), initializer="glorot_uniform",
                                 constraint="non_neg")

    def call(self, inputs):
        return inputs @ self.w


def test_add_weight_constraint_in_a_keras_form_layer():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = -np.abs(rng.normal(size=(32, 2))).astype(np.float32) * 5  # pulls weights negative
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), Positive()])
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.3), loss="mse")
    model.fit(x, y, epochs=3, verbose=0, seed=0)
    w = model.get_weights()[0]
    assert w.min() >= 0.0 and (w == 0).any()


@pytest.mark.parametrize("make", [
    lambda: kilnet.layers.Conv1D(2, 3, kernel_constraint="unit_norm"),
    lambda: kilnet.layers.Conv2D(2, 3, kernel_constraint=constraints.MaxNorm(0.3, axis=[0, 1, 2])),
    lambda: kilnet.layers.Embedding(10, 4, embeddings_constraint="non_neg"),
])
def test_conv_and_embedding_constraints_train_save_and_load(make, tmp_path):
    layer = make()
    if isinstance(layer, kilnet.layers.Embedding):
        inputs, x = kilnet.Input(shape=(5,), dtype="int32"), np.arange(40).reshape(8, 5) % 10
    elif isinstance(layer, kilnet.layers.Conv1D):
        inputs, x = kilnet.Input(shape=(6, 2)), np.random.default_rng(3).normal(size=(8, 6, 2))
    else:
        inputs, x = kilnet.Input(shape=(5, 5, 1)), np.random.default_rng(3).normal(
            size=(8, 5, 5, 1))
    out = kilnet.layers.Dense(1)(kilnet.layers.Flatten()(layer(inputs)))
    model = kilnet.Model(inputs, out)
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=1.0), loss="mse")
    model.fit(x, -10 * np.ones((8, 1)), batch_size=8, epochs=2, verbose=0, seed=0)
    name = "embeddings" if isinstance(layer, kilnet.layers.Embedding) else "kernel"
    weight = layer.get_weights()[0]  # projected: a fixed point of the constraint
    np.testing.assert_allclose(weight, np.asarray(layer.constraint_for(name)(weight)),
                               rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "m.kilnet")
    again = kilnet.models.load_model(tmp_path / "m.kilnet")
    assert again.layers[1].get_config() == layer.get_config()
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_frozen_layer_is_not_projected():
    model = dense_pair(kilnet, kernel_constraint=constraints.MaxNorm(0.01))
    model.build(seed=0)
    model.layers[1].trainable = False
    before = model.get_weights()[0].copy()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 4)), np.ones((4, 1)), batch_size=4, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.get_weights()[0], before)


def test_bad_constraints_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="kernel_constraint must be None, one of 'max_norm'"):
        kilnet.layers.Dense(2, kernel_constraint="max")
    with pytest.raises(ValueError, match=r"max_value must be a finite number >= 0.*-1"):
        constraints.MaxNorm(max_value=-1)
    with pytest.raises(ValueError, match="max_value must be >= min_value"):
        constraints.MinMaxNorm(min_value=2.0, max_value=1.0)
    with pytest.raises(ValueError, match="axis must be an integer"):
        constraints.UnitNorm(axis="rows")
    model = kilnet.Sequential([kilnet.Input(shape=(2,)),
                               kilnet.layers.Dense(1, kernel_constraint=lambda w: w)])
    with pytest.raises(ValueError, match="Only kilnet.constraints objects"):
        model.save(tmp_path / "m.kilnet")
