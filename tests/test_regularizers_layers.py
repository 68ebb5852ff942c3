"""Regularizers and constraints on every layer that takes them in Keras: the same model trained
in kilnet and in Keras 3 (same weights, same batches) ends with the same weights and reports
the same loss, penalties included; penalties checked by hand; configs and model files keep
them; frozen layers are neither penalized nor projected; bad values are clear errors."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import constraints, regularizers  # noqa: E402


def reg(lib, kind, factor):
    """The same regularizer object from kilnet or Keras."""
    return {"l1": lambda: lib.regularizers.L1(factor), "l2": lambda: lib.regularizers.L2(factor),
            "l1_l2": lambda: lib.regularizers.L1L2(l1=factor, l2=factor / 2)}[kind]()


def recurrent_model(lib, regularized=True):
    """Bidirectional(SimpleRNN) -> GRU -> LSTM -> Dense, each with penalties and constraints.
    (Keras 3's SimpleRNN accepts activity_regularizer but never passes it on, so it is left out
    here; kilnet applies it as documented, see test_simple_rnn_activity_penalty.)"""
    def r(kind, factor):
        return reg(lib, kind, factor) if regularized else None

    def c(make):
        return make(lib.constraints) if regularized else None

    inputs = lib.Input(shape=(5, 3))
    h = lib.layers.Bidirectional(lib.layers.SimpleRNN(
        3, return_sequences=True, kernel_regularizer=r("l2", 0.02),
        recurrent_regularizer=r("l1", 0.01), bias_regularizer=r("l2", 0.05),
        kernel_constraint=c(lambda n: n.MaxNorm(0.6)),
        recurrent_constraint=c(lambda n: n.UnitNorm(axis=1))))(inputs)
    h = lib.layers.GRU(4, return_sequences=True, kernel_regularizer=r("l1_l2", 0.02),
                       recurrent_regularizer=r("l2", 0.03), bias_regularizer=r("l1", 0.02),
                       bias_constraint=c(lambda n: n.NonNeg()),
                       recurrent_constraint=c(lambda n: n.MaxNorm(0.5)))(h)
    h = lib.layers.LSTM(3, kernel_regularizer=r("l2", 0.02), recurrent_regularizer=r("l2", 0.02),
                        activity_regularizer=r("l1", 0.02),
                        kernel_constraint=c(lambda n: n.MinMaxNorm(0.2, 0.5, rate=0.5)))(h)
    return lib.Model(inputs, lib.layers.Dense(1)(h))


def conv_model(lib, regularized=True):
    """Conv2DTranspose -> DepthwiseConv2D -> SeparableConv2D -> BatchNormalization ->
    GroupNormalization -> LayerNormalization -> PReLU -> Dense. (No L1 on a weight whose
    gradient is zero up to rounding, where the sign of the subgradient would be noise.)"""
    def r(kind, factor):
        return reg(lib, kind, factor) if regularized else None

    def c(make):
        return make(lib.constraints) if regularized else None

    inputs = lib.Input(shape=(3, 3, 2))
    h = lib.layers.Conv2DTranspose(4, 2, strides=2, kernel_regularizer=r("l2", 0.02),
                                   bias_regularizer=r("l1", 0.01),
                                   activity_regularizer=r("l2", 0.001),
                                   kernel_constraint=c(lambda n: n.MaxNorm(0.5, axis=[0, 1, 2])),
                                   bias_initializer="ones")(inputs)
    h = lib.layers.DepthwiseConv2D(2, depthwise_regularizer=r("l1", 0.02),
                                   bias_regularizer=r("l2", 0.05),
                                   depthwise_constraint=c(lambda n: n.NonNeg()),
                                   bias_initializer="ones")(h)
    h = lib.layers.SeparableConv2D(4, 2, depthwise_regularizer=r("l2", 0.03),
                                   pointwise_regularizer=r("l1", 0.01),
                                   bias_regularizer=r("l2", 0.01),
                                   activity_regularizer=r("l1", 0.001),
                                   pointwise_constraint=c(lambda n: n.UnitNorm(axis=2)),
                                   bias_constraint=c(lambda n: n.NonNeg()))(h)
    h = lib.layers.BatchNormalization(gamma_regularizer=r("l1", 0.02),
                                      beta_regularizer=r("l2", 0.02),
                                      beta_constraint=c(lambda n: n.NonNeg()))(h)
    h = lib.layers.GroupNormalization(groups=2, gamma_regularizer=r("l2", 0.05),
                                      beta_regularizer=r("l2", 0.05),
                                      gamma_constraint=c(lambda n: n.MaxNorm(1.5)))(h)
    h = lib.layers.LayerNormalization(gamma_regularizer=r("l1", 0.03),
                                      beta_regularizer=r("l2", 0.03),
                                      gamma_constraint=c(lambda n: n.NonNeg()))(h)
    h = lib.layers.PReLU(alpha_initializer="ones",
                         alpha_regularizer=r("l2", 0.1),
                         alpha_constraint=c(lambda n: n.MaxNorm(0.3, axis=[0, 1, 2])))(h)
    return lib.Model(inputs, lib.layers.Dense(1)(lib.layers.Flatten()(h)))


def volume_model(lib, regularized=True):
    """Conv3D -> Reshape -> Conv1DTranspose -> Dense."""
    def r(kind, factor):
        return reg(lib, kind, factor) if regularized else None

    def c(make):
        return make(lib.constraints) if regularized else None

    inputs = lib.Input(shape=(3, 3, 3, 2))
    h = lib.layers.Conv3D(2, 2, kernel_regularizer=r("l2", 0.03), bias_regularizer=r("l1", 0.02),
                          activity_regularizer=r("l2", 0.01),
                          kernel_constraint=c(lambda n: n.MaxNorm(0.4, axis=[0, 1, 2, 3])),
                          bias_initializer="ones")(inputs)
    h = lib.layers.Reshape((8, 2))(h)
    h = lib.layers.Conv1DTranspose(3, 2, strides=2, kernel_regularizer=r("l1", 0.02),
                                   bias_regularizer=r("l2", 0.02),
                                   activity_regularizer=r("l1", 0.001),
                                   bias_constraint=c(lambda n: n.NonNeg()),
                                   kernel_constraint=c(lambda n: n.UnitNorm(axis=[0, 1])))(h)
    return lib.Model(inputs, lib.layers.Dense(1)(lib.layers.Flatten()(h)))


def attention_model(lib, regularized=True):
    """MultiHeadAttention (self-attention, gated; Keras gives its regularizers and constraints
    to every projection, the activity regularizer too) -> GlobalAveragePooling1D -> Dense."""
    def r(kind, factor):
        return reg(lib, kind, factor) if regularized else None

    def c(make):
        return make(lib.constraints) if regularized else None

    inputs = lib.Input(shape=(4, 6))
    h = lib.layers.MultiHeadAttention(
        num_heads=2, key_dim=3, use_gate=True, kernel_regularizer=r("l2", 0.03),
        bias_regularizer=r("l1", 0.02), activity_regularizer=r("l2", 0.01),
        kernel_constraint=c(lambda n: n.MaxNorm(0.5)), bias_constraint=c(lambda n: n.NonNeg()),
        bias_initializer="ones")(inputs, inputs)
    return lib.Model(inputs, lib.layers.Dense(1)(lib.layers.GlobalAveragePooling1D()(h)))


# family: (model, sample shape, a learning rate at which 2 epochs of SGD stay stable)
FAMILIES = {"recurrent": (recurrent_model, (5, 3), 0.1), "conv": (conv_model, (3, 3, 2), 0.1),
            "volume": (volume_model, (3, 3, 3, 2), 0.01),
            "attention": (attention_model, (4, 6), 0.1)}


def data(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(24,) + shape).astype(np.float32)
    return x, rng.normal(size=(24, 1)).astype(np.float32)


def trained_kilnet(make, x, y, learning_rate):
    model = make(kilnet)
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=learning_rate), loss="mse")
    model.build(seed=0)
    start = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model, start, history.history["loss"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_training_matches_keras_with_penalties_and_constraints(family):
    make, shape, learning_rate = FAMILIES[family]
    x, y = data(shape)
    ours, start, our_loss = trained_kilnet(make, x, y, learning_rate)
    theirs = make(keras)
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="mse")
    theirs.set_weights(start)
    their_loss = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False,
                            verbose=0).history["loss"]
    # conv: its BatchNormalization's gradient is kilnet's written-out formula, Keras's is JAX's
    # derivative of its own; both are within 6e-7 (relative, median) of float64 on such
    # batches, and 6 SGD steps through three normalizations carry the rounding to 4e-5.
    atol = 1e-4 if family == "conv" else 1e-5
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=atol)
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-4, atol=1e-6)
    # The penalties are in the loss: the same weights without them give less.
    plain = make(kilnet, regularized=False)
    plain.compile(optimizer="sgd", loss="mse")
    plain.build(seed=0)
    plain.set_weights(ours.get_weights())
    assert ours.evaluate(x, y, verbose=0) > plain.evaluate(x, y, verbose=0) + 1e-3


def test_bidirectional_penalties_land_on_both_directions():
    layer = kilnet.layers.Bidirectional(kilnet.layers.LSTM(
        2, kernel_regularizer=regularizers.L2(0.5), activity_regularizer=regularizers.L1(0.1)))
    x = np.random.default_rng(4).normal(size=(3, 4, 2)).astype(np.float32)
    out = np.asarray(layer(x))
    forward, backward = layer.forward_layer, layer.backward_layer
    expected = [0.5 * np.square(forward.kernel.numpy()).sum(),
                0.1 * np.abs(out[:, :2]).sum() / 3,
                0.5 * np.square(backward.kernel.numpy()).sum(),
                0.1 * np.abs(out[:, 2:]).sum() / 3]
    np.testing.assert_allclose(sorted(float(v) for v in layer.losses), sorted(expected),
                               rtol=1e-5)
    assert backward.get_config()["kernel_regularizer"] == {
        "module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.5},
        "registered_name": None}


def test_simple_rnn_activity_penalty():
    """Applied to the output as Keras documents it (Keras 3's SimpleRNN drops the argument)."""
    rnn = kilnet.layers.SimpleRNN(3, return_sequences=True,
                                  activity_regularizer=regularizers.L1(0.2))
    x = np.random.default_rng(7).normal(size=(4, 5, 2)).astype(np.float32)
    out = np.asarray(rnn(x))
    np.testing.assert_allclose([float(v) for v in rnn.losses], [0.2 * np.abs(out).sum() / 4],
                               rtol=1e-5)


def test_one_step_penalty_by_hand():
    """evaluate's loss = the MSE + every weight penalty + the activity penalties (/ batch)."""
    inputs = kilnet.Input(shape=(4, 3))
    lstm = kilnet.layers.LSTM(2, return_state=True, kernel_regularizer=regularizers.L2(0.1),
                              recurrent_regularizer=regularizers.L1(0.2),
                              bias_regularizer=regularizers.L1L2(0.3, 0.4),
                              activity_regularizer=regularizers.L2(0.05))
    output, h, c = lstm(inputs)
    norm = kilnet.layers.LayerNormalization(gamma_regularizer=regularizers.L2(0.7),
                                            beta_regularizer=regularizers.L1(0.6),
                                            beta_initializer="ones")
    model = kilnet.Model(inputs, norm(output))
    model.compile(optimizer="sgd", loss="mse")
    model.build(seed=1)
    x = np.random.default_rng(5).normal(size=(6, 4, 3)).astype(np.float32)
    y = np.zeros((6, 2), np.float32)
    kernel, recurrent, bias, gamma, beta = model.get_weights()
    states = [np.asarray(s) for s in lstm(x)]   # output, state_h, state_c
    expected = (np.mean(np.square(model.predict(x, verbose=0)))
                + 0.1 * np.square(kernel).sum() + 0.2 * np.abs(recurrent).sum()
                + 0.3 * np.abs(bias).sum() + 0.4 * np.square(bias).sum()
                + sum(0.05 * np.square(s).sum() / 6 for s in states)   # each output of the call
                + 0.7 * np.square(gamma).sum() + 0.6 * np.abs(beta).sum())
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=6, verbose=0), expected,
                               rtol=1e-5)


def test_a_frozen_layer_is_neither_penalized_nor_projected():
    def model_with(trainable):
        inputs = kilnet.Input(shape=(3, 2))
        gru = kilnet.layers.GRU(2, kernel_regularizer=regularizers.L2(10.0),
                                kernel_constraint=constraints.MaxNorm(0.01))
        model = kilnet.Model(inputs, gru(inputs))
        model.build(seed=0)
        gru.trainable = trainable
        model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.1), loss="mse")
        return model

    x, y = np.ones((4, 3, 2), np.float32), np.ones((4, 2), np.float32)
    frozen, live = model_with(False), model_with(True)
    before = frozen.get_weights()[0].copy()
    mse = float(np.mean(np.square(frozen.predict(x, verbose=0) - y)))
    np.testing.assert_allclose(frozen.evaluate(x, y, verbose=0), mse, rtol=1e-6)
    assert live.evaluate(x, y, verbose=0) > mse + 1.0   # the penalty counts while trainable
    frozen.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(frozen.get_weights()[0], before)


def test_configs_and_model_files_keep_them(tmp_path):
    x, _ = data((4, 6))
    for make, _, _ in FAMILIES.values():
        model = make(kilnet)
        model.build(seed=0)
        again = kilnet.Model.from_config(model.get_config())
        for a, b in zip(model.layers, again.layers):
            assert a.get_config() == b.get_config()
    model = attention_model(kilnet)
    model.compile(optimizer="sgd", loss="mse")
    model.build(seed=0)
    model.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet")
    mha = loaded.layers[1]
    assert mha.get_config()["kernel_regularizer"] == {
        "module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.03},
        "registered_name": None}
    assert mha.get_config()["bias_constraint"] == {
        "module": "keras.constraints", "class_name": "NonNeg", "config": {},
        "registered_name": None}
    assert [type(v.constraint).__name__ for v in mha.weights][:2] == ["MaxNorm", "NonNeg"]
    y = np.zeros((24, 1), np.float32)
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0),
                               rtol=1e-6)


def test_keras_files_carry_them(tmp_path):
    inputs = keras.Input(shape=(5, 3))
    h = keras.layers.GRU(2, return_sequences=True, bias_constraint="non_neg",
                         recurrent_regularizer=keras.regularizers.L1L2(0.1, 0.2))(inputs)
    h = keras.layers.LSTM(3, activity_regularizer=keras.regularizers.L1(0.02),
                          kernel_constraint=keras.constraints.MinMaxNorm(0.2, 0.5, rate=0.5))(h)
    theirs = keras.Model(inputs, keras.layers.Dense(1)(h))
    theirs.save(tmp_path / "rnn.keras")
    ours = kilnet.models.load_model(tmp_path / "rnn.keras")
    lstm = ours.layers[-2]
    assert lstm.get_config()["activity_regularizer"] == {  # Keras keeps a float32 factor
        "module": "keras.regularizers", "class_name": "L1",
        "config": {"l1": pytest.approx(0.02)}, "registered_name": None}
    assert lstm.constraint_for("kernel") == constraints.MinMaxNorm(0.2, 0.5, rate=0.5)
    ours.save(tmp_path / "back.keras")
    again = keras.models.load_model(tmp_path / "back.keras")
    assert type(again.layers[-2].kernel_constraint).__name__ == "MinMaxNorm"
    assert float(again.layers[-2].activity_regularizer.l1) == pytest.approx(0.02)
    assert ours.layers[1].get_config()["recurrent_regularizer"] == {
        "module": "keras.regularizers", "class_name": "L1L2",
        "config": {"l1": pytest.approx(0.1), "l2": pytest.approx(0.2)}, "registered_name": None}
    assert type(again.layers[1].bias_constraint).__name__ == "NonNeg"


class KilnetScale(kilnet.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                 regularizer=regularizers.L2(0.3), name="w")
        self.b = self.add_weight(shape=(), initializer="zeros", regularizer="l1", name="b")

    def call(self, inputs):
        return inputs * self.w + self.b


class KerasScale(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                 regularizer=keras.regularizers.L2(0.3), name="w")
        self.b = self.add_weight(shape=(), initializer="zeros", regularizer="l1", name="b")

    def call(self, inputs):
        return inputs * self.w + self.b


def test_add_weight_regularizer_in_a_keras_form_layer():
    layer = KilnetScale()
    layer(np.ones((2, 3), np.float32))
    assert [float(v) for v in layer.losses] == pytest.approx([0.9, 0.0])
    x, y = data((3,), seed=6)
    y = np.repeat(y, 3, axis=1)

    def run(lib, custom):
        model = lib.Sequential([lib.Input(shape=(3,)), custom(), lib.layers.Dense(3)])
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1), loss="mse")
        return model

    ours, theirs = run(kilnet, KilnetScale), run(keras, KerasScale)
    ours.build(seed=0)
    theirs.set_weights(ours.get_weights())
    our_loss = ours.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    their_loss = theirs.fit(x, y, batch_size=8, epochs=3, shuffle=False,
                            verbose=0).history["loss"]
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)


def test_bad_values_are_clear_errors():
    with pytest.raises(ValueError, match="recurrent_regularizer must be None, one of 'l1'.*l3"):
        kilnet.layers.LSTM(2, recurrent_regularizer="l3")
    with pytest.raises(ValueError, match="depthwise_constraint must be None, one of 'max_norm'"):
        kilnet.layers.DepthwiseConv2D(2, depthwise_constraint="max")
    with pytest.raises(ValueError, match="alpha_constraint must be None.*Received: "
                                         "alpha_constraint=3"):
        kilnet.layers.PReLU(alpha_constraint=3)
    with pytest.raises(ValueError, match="kernel_regularizer must be None.*Received"):
        kilnet.layers.MultiHeadAttention(2, 2, kernel_regularizer=0.1)
    with pytest.raises(ValueError, match="gamma_regularizer must be None"):
        kilnet.layers.GroupNormalization(2, gamma_regularizer="big")
    with pytest.raises(ValueError, match="l2 must be a non-negative finite number"):
        kilnet.layers.BatchNormalization(beta_regularizer=regularizers.L2(-1.0))

    class Bad(kilnet.layers.Layer):
        def build(self, input_shape):
            self.add_weight(shape=(2,), regularizer="l5")

        def call(self, inputs):
            return inputs

    with pytest.raises(ValueError, match="regularizer must be None, one of 'l1'.*l5"):
        Bad()(np.ones((1, 2), np.float32))


def test_a_shared_layer_is_penalized_once_a_step_as_keras():
    """Keras adds each weight's penalty once a step; a layer called on two inputs is one set
    of weights, so its penalty counts once (checked against Keras's evaluate)."""
    def build(lib):
        a, b = lib.Input(shape=(3,)), lib.Input(shape=(3,))
        shared = lib.layers.Dense(2, kernel_regularizer=lib.regularizers.L2(0.5),
                                  bias_regularizer=lib.regularizers.L1(0.25), name="shared")
        out = lib.layers.Add()([shared(a), shared(b)])
        model = lib.Model([a, b], out)
        model.compile(optimizer="sgd", loss="mse")
        return model

    rng = np.random.default_rng(3)
    xa, xb = (rng.normal(size=(8, 3)).astype(np.float32) for _ in range(2))
    y = rng.normal(size=(8, 2)).astype(np.float32)
    ours, theirs = build(kilnet), build(keras)
    ours.build(seed=0)
    weights = [w + 0.1 for w in ours.get_weights()]  # a non-zero bias, so L1 counts too
    ours.set_weights(weights)
    theirs.set_weights(weights)
    kernel, bias = weights
    penalty = 0.5 * np.sum(kernel ** 2) + 0.25 * np.sum(np.abs(bias))
    plain = np.mean((xa @ kernel + xb @ kernel + 2 * bias - y) ** 2)
    expected = float(theirs.evaluate([xa, xb], y, verbose=0, batch_size=8))
    np.testing.assert_allclose(expected, plain + penalty, rtol=1e-5)  # the reference itself
    np.testing.assert_allclose(float(ours.evaluate([xa, xb], y, verbose=0, batch_size=8)),
                               expected, rtol=1e-5)


# -- OrthogonalRegularizer -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("shape", [(3, 5), (6, 2), (4, 4)])
def test_orthogonal_regularizer_equals_keras(mode, shape):
    x = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    x[0] = 0.0   # a zero row: the normalization's epsilon takes part
    ours = regularizers.OrthogonalRegularizer(0.3, mode=mode)
    theirs = keras.regularizers.OrthogonalRegularizer(0.3, mode=mode)
    # Keras's regularizer sees its backend's arrays (on a NumPy array its columns mode divides
    # by the norms along the wrong axis), so it is given one here.
    np.testing.assert_allclose(float(ours(x)), float(theirs(keras.ops.convert_to_tensor(x))),
                               rtol=1e-5)
    assert ours.get_config() == pytest.approx(theirs.get_config())
    assert regularizers.get("orthogonal_regularizer").get_config() == {"factor": 0.01,
                                                                       "mode": "rows"}


def test_orthogonal_regularizer_trains_a_dense_kernel_as_keras():
    x = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32)
    losses = []
    for lib in (kilnet, keras):
        lib.utils.set_random_seed(0)
        model = lib.Sequential([lib.Input(shape=(5,)), lib.layers.Dense(
            3, kernel_regularizer=lib.regularizers.OrthogonalRegularizer(0.5, "columns"))])
        model.compile(optimizer="sgd", loss="mse")
        kernel = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)
        model.set_weights([kernel, np.zeros(3, np.float32)])
        losses.append(model.evaluate(x, y, verbose=0, batch_size=16))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [(dict(factor=-1), "factor=-1"),
                                           (dict(mode="diagonal"), "mode='diagonal'")])
def test_orthogonal_regularizer_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        regularizers.OrthogonalRegularizer(**kwargs)
    with pytest.raises(ValueError, match=r"rank-2.*Received: shape=\(3,\)"):
        regularizers.OrthogonalRegularizer()(np.ones(3))


def test_layer_losses_follow_the_current_weights_as_keras_s():
    """Keras computes layer.losses' weight penalties when read: after assign, after fit, and
    none for a frozen layer; the add_loss terms are the last eager call's."""
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    found = {}
    for lib in (keras, kilnet):
        class Outer(lib.layers.Layer):
            def __init__(self):
                super().__init__()
                self.dense = lib.layers.Dense(4, kernel_regularizer=lib.regularizers.L2(1e-3),
                                              bias_regularizer=lib.regularizers.L1(0.1),
                                              activity_regularizer=lib.regularizers.L1(0.01))

            def call(self, inputs):
                self.add_loss(lib.ops.mean(inputs) * 0 + 0.5)
                return self.dense(inputs)

        layer = Outer()
        layer(x)
        layer.dense.set_weights([np.full((3, 4), 0.2, "float32"), np.ones(4, "float32")])
        layer(x)   # the add_loss and activity terms of this call, the same weights for both
        start = [float(v) for v in layer.losses]
        layer.dense.set_weights([np.full((3, 4), 0.5, "float32"), np.ones(4, "float32")])
        assigned = [float(v) for v in layer.losses]
        layer.dense.trainable = False
        frozen = [float(v) for v in layer.losses]
        found[lib] = start, assigned, frozen
    (k_start, k_assigned, k_frozen), (m_start, m_assigned, m_frozen) = found[keras], found[kilnet]
    assert len(m_start) == len(k_start) == 4   # add_loss, activity, kernel, bias
    np.testing.assert_allclose(m_start, k_start, rtol=1e-6)
    np.testing.assert_allclose(m_assigned, k_assigned, rtol=1e-6)
    assert 1e-3 * 12 * 0.25 == pytest.approx(sorted(m_assigned)[0], rel=1e-6)
    np.testing.assert_allclose(m_frozen, k_frozen, rtol=1e-6)
    assert len(m_frozen) == 2

    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(
        2, kernel_regularizer=kilnet.regularizers.L2(0.1))])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.ones((6, 2)), epochs=3, verbose=0)
    kernel = model.layers[0].kernel.numpy()
    np.testing.assert_allclose([float(v) for v in model.losses],
                               [0.1 * float((kernel ** 2).sum())], rtol=1e-5)
