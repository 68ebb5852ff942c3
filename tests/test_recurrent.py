"""Recurrent layers (SimpleRNN, LSTM, GRU) and the wrappers Bidirectional and TimeDistributed:
shapes and dtypes, values against Keras 3 (kilnet's weights copied into the Keras layer with
set_weights, which also proves their names' order and shapes) and NumPy, sequence masks,
dropout masks, gradients against finite differences, configs, training and saving, errors."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import check_grad  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402
from kilnet.models import load_model  # noqa: E402
from _training import assert_fit_lowers_loss  # noqa: E402

# The Keras twins take kilnet's weights (set_weights): their own starting draws need only be
# random, so they come from NumPy rather than compiling one XLA program per shape.
pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

KEY = jax.random.PRNGKey(0)
RNNS = {"SimpleRNN": (layers.SimpleRNN, keras.layers.SimpleRNN),
        "LSTM": (layers.LSTM, keras.layers.LSTM),
        "GRU": (layers.GRU, keras.layers.GRU)}


def normal(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def randomize(layer, seed=1):
    """Weights away from their initial values (zero biases), so that parity tests see them."""
    layer.set_weights([normal(w.shape, seed + i, 0.5) for i, w in enumerate(layer.get_weights())])


def close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def keras_twin(kilnet_layer, keras_layer, x, **call):
    """The Keras layer built on x, holding kilnet_layer's weights."""
    keras_layer(x, **call)
    keras_layer.set_weights(kilnet_layer.get_weights())
    return keras_layer


def padding_mask(batch=3, time=6, seed=2):
    """A random sequence mask with at least the first step of each row kept."""
    mask = np.random.default_rng(seed).random((batch, time)) > 0.4
    mask[:, 0] = True
    return mask


# -- shapes and dtypes ----------------------------------------------------------------------------
# (id, layer, input shape without the batch axis, output shapes)
SHAPE_CASES = [
    ("simple_rnn", lambda: layers.SimpleRNN(4), (6, 3), [(4,)]),
    ("lstm_states", lambda: layers.LSTM(4, return_sequences=True, return_state=True), (6, 3),
     [(6, 4), (4,), (4,)]),
    ("gru_states", lambda: layers.GRU(5, return_state=True), (6, 3), [(5,), (5,)]),
    ("bidirectional_concat", lambda: layers.Bidirectional(
        layers.LSTM(4, return_sequences=True)), (6, 3), [(6, 8)]),
    ("bidirectional_none_states", lambda: layers.Bidirectional(
        layers.GRU(4, return_state=True), merge_mode=None), (6, 3),
     [(4,), (4,), (4,), (4,)]),
    ("time_distributed", lambda: layers.TimeDistributed(layers.Dense(2)), (6, 3), [(6, 2)]),
]


@pytest.mark.parametrize("make, in_shape, out_shapes", [c[1:] for c in SHAPE_CASES],
                         ids=[c[0] for c in SHAPE_CASES])
def test_output_shapes_and_dtypes(make, in_shape, out_shapes):
    layer = make()
    params, state, declared = layer.init(np.random.default_rng(0), in_shape)
    assert (declared if isinstance(declared, list) else [declared]) == out_shapes
    outputs, _ = layer.apply(params, state, normal((2,) + in_shape))
    assert [o.shape for o in as_list(outputs)] == [(2,) + s for s in out_shapes]
    assert all(o.dtype == jnp.float32 for o in as_list(outputs))
    # a symbolic call with a time axis of any length keeps it None
    symbolic = as_list(make()(kilnet.Input(shape=(None, in_shape[1]))))
    expected = [(None,) + ((None,) + s[1:] if len(s) == 2 else s) for s in out_shapes]
    assert [t.shape for t in symbolic] == expected


# -- values against Keras ---------------------------------------------------------------------------
PARITY_OPTIONS = [
    {},
    {"return_sequences": True, "return_state": True},
    {"go_backwards": True, "return_sequences": True},
    {"go_backwards": True, "return_state": True},
    {"use_bias": False, "activation": "relu"},
]


@pytest.mark.parametrize("options", PARITY_OPTIONS, ids=lambda o: "-".join(o) or "default")
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_rnn_matches_keras(kind, options):
    ours, theirs = RNNS[kind]
    x = normal((3, 6, 5))
    layer = ours(4, **options)
    layer(x)
    randomize(layer)
    twin = keras_twin(layer, theirs(4, **options), x)
    for a, b in zip(as_list(layer(x)), as_list(twin(x))):
        close(a, b)
    # with a sequence mask: masked steps skipped in both
    mask = padding_mask()
    for a, b in zip(as_list(layer(x, mask=mask)), as_list(twin(x, mask=mask))):
        close(a, b)


@pytest.mark.parametrize("options", [{}, {"return_sequences": True, "go_backwards": True}])
def test_gru_reset_before_matches_keras(options):
    x = normal((3, 6, 5))
    layer = layers.GRU(4, reset_after=False, **options)
    layer(x)
    randomize(layer)
    assert [w.shape for w in layer.weights] == [(5, 12), (4, 12), (12,)]
    twin = keras_twin(layer, keras.layers.GRU(4, reset_after=False, **options), x)
    close(layer(x), twin(x))
    close(layer(x, mask=padding_mask()), twin(x, mask=padding_mask()))


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_initial_state_matches_keras(kind):
    ours, theirs = RNNS[kind]
    x = normal((3, 6, 5))
    count = 2 if kind == "LSTM" else 1
    states = [normal((3, 4), 10 + i) for i in range(count)]
    layer = ours(4, return_state=True)
    layer(x)
    randomize(layer)
    twin = keras_twin(layer, theirs(4, return_state=True), x)
    ours_out = as_list(layer(x, initial_state=states))
    for a, b in zip(ours_out, as_list(twin(x, initial_state=states))):
        close(a, b)
    assert not np.allclose(ours_out[0], as_list(layer(x))[0])  # the state mattered


def test_simple_rnn_matches_numpy():
    x = normal((2, 4, 3))
    layer = layers.SimpleRNN(5, return_sequences=True)
    layer(x)
    randomize(layer)
    kernel, recurrent, bias = layer.get_weights()
    h = np.zeros((2, 5), np.float32)
    expected = []
    for t in range(4):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent + bias)
        expected.append(h)
    close(layer(x), np.stack(expected, axis=1))


def test_lstm_initial_weights_follow_keras():
    layer = layers.LSTM(3)
    params, _, _ = layer.init(np.random.default_rng(0), (5, 4))
    assert [params[n].shape for n in layer.param_names] == [(4, 12), (3, 12), (12,)]
    np.testing.assert_array_equal(params["bias"], [0, 0, 0, 1, 1, 1] + [0] * 6)
    recurrent = params["recurrent_kernel"]  # orthogonal rows (units < 4 * units)
    close(recurrent @ recurrent.T, np.eye(3), atol=1e-5)
    assert layers.LSTM(3, unit_forget_bias=False).init(
        np.random.default_rng(0), (5, 4))[0]["bias"].sum() == 0


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_matches_keras(merge_mode):
    x = normal((3, 6, 5))
    layer = layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode=merge_mode)
    layer(x)
    randomize(layer)
    assert [w.shape for w in layer.weights] == [(5, 16), (4, 16), (16,)] * 2
    twin = keras_twin(layer, keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True), merge_mode=merge_mode), x)
    for a, b in zip(as_list(layer(x)), as_list(twin(x))):
        close(a, b)
    mask = padding_mask()
    for a, b in zip(as_list(layer(x, mask=mask)), as_list(twin(x, mask=mask))):
        close(a, b)


def test_bidirectional_states_and_initial_state_match_keras():
    x = normal((3, 6, 5))
    states = [normal((3, 4), 20 + i) for i in range(2)]
    layer = layers.Bidirectional(layers.GRU(4, return_state=True, reset_after=False))
    outputs = layer(x, initial_state=states)
    assert [o.shape for o in outputs] == [(3, 8), (3, 4), (3, 4)]
    randomize(layer)
    twin = keras_twin(layer, keras.layers.Bidirectional(
        keras.layers.GRU(4, return_state=True, reset_after=False)), x)
    for a, b in zip(layer(x, initial_state=states), twin(x, initial_state=states)):
        close(a, b)


def test_time_distributed_dense_matches_keras_and_numpy():
    x = normal((3, 6, 5))
    layer = layers.TimeDistributed(layers.Dense(2, activation="relu"))
    layer(x)
    randomize(layer)
    kernel, bias = layer.get_weights()
    close(layer(x), np.maximum(x @ kernel + bias, 0))
    twin = keras_twin(layer, keras.layers.TimeDistributed(
        keras.layers.Dense(2, activation="relu")), x)
    close(layer(x), twin(x))


def test_time_distributed_conv_over_frames():
    x = normal((2, 3, 6, 6, 1))
    layer = layers.TimeDistributed(layers.Conv2D(2, 3))
    y = layer(x)
    assert y.shape == (2, 3, 4, 4, 2)
    twin = keras_twin(layer, keras.layers.TimeDistributed(keras.layers.Conv2D(2, 3)), x)
    close(y, twin(x), rtol=1e-4)


# -- sequence masks and dropout ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_masked_steps_are_skipped(kind):
    x = normal((2, 5, 3))
    layer = RNNS[kind][0](4, return_sequences=True)
    params, state, _ = layer.init(np.random.default_rng(0), (5, 3))
    mask = np.array([[True, True, False, True, False]] * 2)
    masked, _ = layer.apply(params, state, x, mask=mask)
    # the state carries over a masked step: the same as the sequence without it
    kept, _ = layer.apply(params, state, x[:, [0, 1, 3]])
    close(masked[:, 3], kept[:, 2])
    # a masked step repeats the previous output
    close(masked[:, 2], masked[:, 1])
    close(masked[:, 4], masked[:, 3])
    assert not np.allclose(masked[:, 1], masked[:, 0])
    # zero_output_for_mask gives zeros there instead
    zeros = RNNS[kind][0](4, return_sequences=True, zero_output_for_mask=True)
    zeroed, _ = zeros.apply(params, state, x, mask=mask)
    np.testing.assert_array_equal(np.asarray(zeroed[:, [2, 4]]), 0.0)
    close(zeroed[:, 3], masked[:, 3])


def test_embedding_masks_reach_the_recurrent_layers_as_in_keras():
    """Embedding(mask_zero=True) -> Bidirectional(LSTM) -> LSTM: padding skipped as Keras."""
    x = np.array([[3, 4, 5, 0, 0], [1, 2, 0, 0, 0], [6, 7, 8, 9, 1]], np.int32)
    tokens = kilnet.Input(shape=(None,), dtype="int32")
    hidden = layers.Bidirectional(layers.LSTM(3, return_sequences=True))(
        layers.Embedding(10, 4, mask_zero=True)(tokens))
    model = kilnet.Model(tokens, layers.LSTM(2)(hidden))
    predicted = model.predict(x, verbose=0)
    keras_tokens = keras.Input(shape=(None,), dtype="int32")
    keras_hidden = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(
        keras.layers.Embedding(10, 4, mask_zero=True)(keras_tokens))
    twin = keras.Model(keras_tokens, keras.layers.LSTM(2)(keras_hidden))
    twin.set_weights(model.get_weights())
    close(predicted, twin.predict(x, verbose=0))
    # the padding changes nothing: the same as the unpadded sequence
    close(model.predict(x[1:2, :2], verbose=0), model.predict(x[1:2], verbose=0))


def test_compute_mask_follows_return_sequences():
    mask = np.ones((2, 5), bool)
    assert layers.LSTM(3, return_sequences=True).compute_mask(None, mask) is mask
    assert layers.LSTM(3).compute_mask(None, mask) is None
    assert layers.LSTM(3, return_sequences=True, return_state=True).compute_mask(
        None, mask) == [mask, None, None]


def test_dropout_masks_are_drawn_once_per_sequence():
    """Linear SimpleRNN with no recurrence: each step's output is (x_t * mask) @ kernel, so
    with identical steps every step must come out equal (the same mask for all of them)."""
    layer = layers.SimpleRNN(6, activation=None, dropout=0.5, return_sequences=True,
                             use_bias=False)
    params, state, _ = layer.init(np.random.default_rng(0), (4, 8))
    params = dict(params, kernel=np.eye(8, 6, dtype=np.float32),
                  recurrent_kernel=np.zeros((6, 6), np.float32))
    x = np.ones((3, 4, 8), np.float32)
    y, _ = layer.apply(params, state, x, training=True, rng=KEY)
    y = np.asarray(y)
    for t in range(1, 4):
        np.testing.assert_array_equal(y[:, t], y[:, 0])
    assert set(np.unique(y)) <= {0.0, 2.0} and (y == 0).any() and (y == 2).any()
    again, _ = layer.apply(params, state, x, training=True, rng=KEY)
    np.testing.assert_array_equal(np.asarray(again), y)      # the key decides the masks
    inference, _ = layer.apply(params, state, x)
    np.testing.assert_array_equal(np.asarray(inference), 1.0)  # no dropout at inference


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_dropout_trains_and_needs_a_key(kind):
    layer = RNNS[kind][0](4, dropout=0.3, recurrent_dropout=0.3)
    params, state, _ = layer.init(np.random.default_rng(0), (5, 3))
    x = normal((2, 5, 3))
    trained, _ = layer.apply(params, state, x, training=True, rng=KEY)
    inference, _ = layer.apply(params, state, x)
    assert np.isfinite(np.asarray(trained)).all()
    assert not np.allclose(trained, inference)
    with pytest.raises(ValueError, match="without a random key"):
        layer.apply(params, state, x, training=True)


# -- gradients ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gradients_match_finite_differences(kind):
    layer = RNNS[kind][0](2, return_sequences=True)
    params, state, _ = layer.init(np.random.default_rng(0), (3, 2))
    mask = np.array([[True, False, True], [True, True, True]])

    def loss(kernel, recurrent, bias, x):
        p = {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}
        y, _ = layer.apply(p, state, x, mask=mask)
        return jnp.sum(jnp.sin(y))

    check_grad(loss, params["kernel"], params["recurrent_kernel"],
               params["bias"] + 0.1, normal((2, 3, 2)), rtol=1e-4, atol=1e-6)


# -- configs -------------------------------------------------------------------------------------
CONFIG_CASES = [
    ("SimpleRNN", lambda: layers.SimpleRNN(3, activation="relu", go_backwards=True),
     lambda: keras.layers.SimpleRNN(3)),
    ("LSTM", lambda: layers.LSTM(3, return_state=True, dropout=0.1, unit_forget_bias=False),
     lambda: keras.layers.LSTM(3)),
    ("GRU", lambda: layers.GRU(3, reset_after=False, recurrent_dropout=0.2),
     lambda: keras.layers.GRU(3)),
    ("Bidirectional", lambda: layers.Bidirectional(layers.LSTM(3, return_sequences=True),
                                                   merge_mode="ave"),
     lambda: keras.layers.Bidirectional(keras.layers.LSTM(3))),
    ("TimeDistributed", lambda: layers.TimeDistributed(layers.Dense(3)),
     lambda: keras.layers.TimeDistributed(keras.layers.Dense(3))),
]
NOT_SUPPORTED_KEYS = set()


@pytest.mark.parametrize("make, make_keras", [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_config_round_trip_with_keras_keys(make, make_keras):
    layer = make()
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config
    assert set(config) == set(make_keras().get_config()) - NOT_SUPPORTED_KEYS


def test_bidirectional_config_nests_both_directions():
    config = layers.Bidirectional(layers.GRU(3, name="enc")).get_config()
    assert config["layer"]["class_name"] == "GRU"
    assert config["layer"]["config"]["name"] == "forward_enc"
    assert config["backward_layer"]["config"]["name"] == "backward_enc"
    assert config["backward_layer"]["config"]["go_backwards"] is True


# -- models: training, variable lengths, saving ------------------------------------------------------
def test_sentiment_model_learns_and_round_trips(tmp_path):
    """Input(int32) -> Embedding -> LSTM -> Dense(sigmoid): positive when token 1 occurs."""
    rng = np.random.default_rng(0)
    x = rng.integers(2, 10, size=(64, 7)).astype(np.int32)
    y = (rng.random(64) < 0.5).astype(np.float32)
    x[y == 1, rng.integers(0, 7, size=int(y.sum()))] = 1
    tokens = kilnet.Input(shape=(None,), dtype="int32")
    hidden = layers.LSTM(8)(layers.Embedding(10, 8)(tokens))
    model = kilnet.Model(tokens, layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer=kilnet.optimizers.Adam(0.02), loss="binary_crossentropy")
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0, seed=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    model.save(tmp_path / "m.kilnet")
    loaded = load_model(tmp_path / "m.kilnet")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def stacked_wrappers_model():
    inputs = kilnet.Input(shape=(None, 3))
    x = layers.Bidirectional(layers.GRU(4, return_sequences=True, dropout=0.1))(inputs)
    x = layers.TimeDistributed(layers.Dense(2))(x)
    model = kilnet.Model(inputs, layers.SimpleRNN(2)(x))
    model.compile(optimizer="adam", loss="mse")
    return model


def test_stacked_wrappers_train_on_variable_lengths():
    model = stacked_wrappers_model()
    x_train, y_train = normal((32, 5, 3)), normal((32, 2), 1, 0.5)
    # The loss judged with the dropout off (evaluate) before and after: the epochs' mean
    # training losses under dropout fell by 4-24% only (10 weight draws); after/before at a
    # rate of 0.01: 0.45-0.78.
    model.build(seed=0)
    model.compile(optimizer=kilnet.optimizers.Adam(0.01), loss="mse")
    assert_fit_lowers_loss(model, x_train, y_train, 0.9, epochs=5, batch_size=8, seed=0)
    for length in (5, 9):
        assert model.predict(normal((4, length, 3), length), verbose=0).shape == (4, 2)


def test_stacked_wrappers_round_trip(tmp_path):
    model = stacked_wrappers_model()
    model.fit(normal((16, 5, 3)), normal((16, 2), 1), epochs=1, batch_size=8, verbose=0,
              seed=0)
    model.save(tmp_path / "m.kilnet")
    loaded = load_model(tmp_path / "m.kilnet")
    for length in (5, 9):
        x = normal((4, length, 3), length)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(layer).__name__ for layer in loaded.layers[1:]] == [
        "Bidirectional", "TimeDistributed", "SimpleRNN"]


def test_encoder_decoder_with_states_round_trips(tmp_path):
    """return_state feeds initial_state: the encoder's LSTM states start the decoder."""
    source, target = kilnet.Input(shape=(5, 3)), kilnet.Input(shape=(4, 2))
    _, h, c = layers.LSTM(6, return_state=True)(source)
    decoded = layers.LSTM(6, return_sequences=True)(target, initial_state=[h, c])
    model = kilnet.Model([source, target], layers.Dense(1)(decoded))
    assert model.output_shape == (None, 4, 1)
    model.compile(optimizer="adam", loss="mse")
    xs = [normal((16, 5, 3)), normal((16, 4, 2), 1)]
    model.fit(xs, normal((16, 4, 1), 2), epochs=2, batch_size=8, verbose=0, seed=0)
    model.save(tmp_path / "m.kilnet")
    loaded = load_model(tmp_path / "m.kilnet")
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0))


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.LSTM(0), ValueError, "units must be a positive integer"),
    (lambda: layers.GRU(3, stateful="yes"), TypeError, "stateful must be True or False"),
    (lambda: layers.SimpleRNN(3, kernel_regularizer="l3"), ValueError,
     "kernel_regularizer must be None, one of 'l1'"),
    (lambda: layers.LSTM(3, dropout=1.0), ValueError, r"dropout must be a number in \[0, 1\)"),
    (lambda: layers.GRU(3, return_sequences="yes"), TypeError, "return_sequences must be"),
    (lambda: layers.LSTM(3, activation="nope"), ValueError, "Unknown activation"),
    (lambda: layers.LSTM(3, recurrent_initializer="nope"), ValueError,
     "recurrent_initializer: Unknown initializer"),
    (lambda: layers.LSTM(3, use_cudnn=True), ValueError, "use_cudnn"),
    (lambda: layers.Bidirectional(layers.Dense(3)), ValueError,
     "must be a recurrent layer"),
    (lambda: layers.Bidirectional(layers.LSTM(3), merge_mode="max"), ValueError,
     "merge_mode must be one of"),
    (lambda: layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(3)), ValueError,
     "opposite directions"),
    (lambda: layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(
        3, go_backwards=True, return_sequences=True)), ValueError, "agree on return_sequences"),
    (lambda: layers.TimeDistributed("dense"), ValueError, "wraps a kilnet layer"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"sequences of shape \(batch, time, features\)"):
        layers.LSTM(3)(kilnet.Input(shape=(4,)))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        layers.TimeDistributed(layers.Dense(2))(kilnet.Input(shape=(4,)))
    layer = layers.GRU(3)
    layer(normal((2, 4, 5)))
    with pytest.raises(ValueError, match=r"built for sequences of shape \(batch, time, 5\)"):
        layer(normal((2, 4, 6)))
    with pytest.raises(ValueError, match="list of 2 tensor"):
        layers.LSTM(3)(normal((2, 4, 5)), initial_state=[np.zeros((2, 3), np.float32)])
    with pytest.raises(ValueError, match=r"shape \(batch, units\)"):
        layers.GRU(3)(normal((2, 4, 5)), initial_state=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"mask has the shape \(batch, time\)"):
        layers.GRU(3)(normal((2, 4, 5)), mask=np.ones((2, 5), bool))
    with pytest.raises(ValueError, match="list of 4 tensors"):
        layers.Bidirectional(layers.LSTM(3))(normal((2, 4, 5)),
                                             initial_state=[np.zeros((2, 3))] * 2)
    with pytest.raises(TypeError, match="unexpected call arguments"):
        layers.LSTM(3)(kilnet.Input(shape=(4, 5)), constants=[1])
