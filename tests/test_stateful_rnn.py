"""stateful=True recurrent layers, as Keras's: each batch starts from the states the previous
batch ended with (row i continues row i), in eager calls and in fit, evaluate and predict; the
states are not weights; reset_state() zeros them; the batch size comes from the Input."""

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402
from kilnet.errors import InputError  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 10, 3)).astype("float32")


def _layers(lib, stateful, **kwargs):
    """Each recurrent layer kind, made alike in lib (kilnet or keras)."""
    L = lib.layers
    return {
        "LSTM": lambda: L.LSTM(5, stateful=stateful, **kwargs),
        "GRU": lambda: L.GRU(4, stateful=stateful, **kwargs),
        "SimpleRNN": lambda: L.SimpleRNN(3, stateful=stateful, **kwargs),
        "RNN(LSTMCell)": lambda: L.RNN(L.LSTMCell(4), stateful=stateful, **kwargs),
        "RNN(stacked)": lambda: L.RNN([L.GRUCell(3), L.LSTMCell(2)], stateful=stateful,
                                      **kwargs),
    }


KINDS = list(_layers(kilnet, False))


@pytest.mark.parametrize("kind", KINDS)
def test_a_sequence_read_in_chunks_equals_it_read_whole(kind):
    stateful = _layers(kilnet, True, return_sequences=True)[kind]()
    first = np.asarray(stateful(X[:4, :4]))
    rest = np.asarray(stateful(X[:4, 4:]))
    whole = _layers(kilnet, False, return_sequences=True)[kind]()
    whole(X[:4, :2])
    whole.set_weights(stateful.get_weights())
    np.testing.assert_allclose(np.concatenate([first, rest], axis=1), whole(X[:4]),
                               rtol=1e-5, atol=1e-6)
    stateful.reset_state()
    np.testing.assert_allclose(stateful(X[:4, :4]), first, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_eager_calls_and_states_equal_keras(kind):
    mine, theirs = _layers(kilnet, True)[kind](), _layers(keras, True)[kind]()
    mine(X[:4, :3])
    theirs(X[:4, :3])
    theirs.set_weights(mine.get_weights())
    mine.reset_state()
    their_states = keras.tree.flatten(theirs.states)   # nested for stacked cells
    for variable in their_states:   # (Keras's reset_state fails on a stacked cell's)
        variable.assign(np.zeros(variable.shape, "float32"))
    for start in (0, 3, 6):
        np.testing.assert_allclose(mine(X[:4, start:start + 3]),
                                   theirs(X[:4, start:start + 3]), rtol=1e-5, atol=1e-6)
    # nested as Keras nests them (a stacked cell's: [h1, [h2, c2]])
    assert jax.tree.map(lambda v: tuple(v.shape), mine.states) == keras.tree.map_structure(
        lambda v: tuple(v.shape), theirs.states)
    for got, want in zip(jax.tree.leaves(mine.states), their_states):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    # the states are not weights (Keras keeps them untracked)
    assert [w.shape for w in mine.weights] == [tuple(w.shape) for w in theirs.weights]
    mine.reset_states()
    assert all(not np.asarray(s).any() for s in jax.tree.leaves(mine.states))


def _stateful_model(batch=4, sequences=False, lr=0.0):
    model = kilnet.Sequential([kilnet.Input(batch_shape=(batch, 5, 3)),
                               kilnet.layers.LSTM(6, stateful=True, return_sequences=sequences),
                               kilnet.layers.Dense(2)])
    model.compile(optimizer=kilnet.optimizers.SGD(lr), loss="mse")
    return model


def _lstm_dense(model, x, initial_state=None):
    """The model's LSTM and Dense run stateless on x from initial_state, by their pure apply:
    (outputs, final states)."""
    lstm, dense = model.layers
    params = model.params_tree()
    (out, h, c), _ = lstm.__class__(6, return_state=True).apply(
        params[lstm.name], {}, jnp.asarray(x), initial_state=initial_state)
    y, _ = dense.apply(params[dense.name], {}, out)
    return np.asarray(y), [h, c]


def test_predict_carries_the_states_from_batch_to_batch_and_call_to_call():
    model = _stateful_model()
    lstm = model.layers[0]
    got = model.predict(X[:, :5], verbose=0)   # batch_size: the model's, 4
    want_first, states = _lstm_dense(model, X[:4, :5])
    want_second, states = _lstm_dense(model, X[4:, :5], states)
    np.testing.assert_allclose(got, np.concatenate([want_first, want_second]), rtol=1e-5,
                               atol=1e-6)
    again = model.predict(X[:, 5:10], batch_size=4, verbose=0)
    want_third, states = _lstm_dense(model, X[:4, 5:10], states)
    want_fourth, states = _lstm_dense(model, X[4:, 5:10], states)
    np.testing.assert_allclose(again, np.concatenate([want_third, want_fourth]), rtol=1e-5,
                               atol=1e-6)
    for got_state, want_state in zip(lstm.states, states):
        np.testing.assert_allclose(np.asarray(got_state), want_state, rtol=1e-5, atol=1e-6)
    # evaluate and predict_on_batch carry them too; reset_state starts over
    model.evaluate(X[:4, :5], np.zeros((4, 2)), verbose=0)
    _, states_after_eval = _lstm_dense(model, X[:4, :5], states)
    np.testing.assert_allclose(model.predict_on_batch(X[:4, :5]),
                               _lstm_dense(model, X[:4, :5], states_after_eval)[0], rtol=1e-5,
                               atol=1e-6)
    lstm.reset_state()
    np.testing.assert_allclose(model.predict_on_batch(X[:4, :5]), want_first, rtol=1e-5,
                               atol=1e-6)


def test_fit_starts_each_batch_from_the_previous_batchs_states():
    """SGD by hand over two batches, the second starting from the first one's final states
    (constants to the gradient, as Keras's assigned state variables), equals fit's."""
    model = _stateful_model(lr=0.1)
    y = RNG.normal(size=(8, 2)).astype("float32")
    lstm, dense = model.layers
    params = model.params_tree()

    def loss(params, x, y, states):
        (out, h, c), _ = kilnet.layers.LSTM(6, return_state=True).apply(
            params[lstm.name], {}, x, initial_state=states)
        pred, _ = dense.apply(params[dense.name], {}, out)
        return jnp.mean(jnp.mean((pred - y) ** 2, axis=-1)), [h, c]

    states = None
    for rows in (slice(0, 4), slice(4, 8)):
        grads, states = jax.grad(loss, has_aux=True)(params, X[rows, :5], y[rows], states)
        params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    model.fit(X[:, :5], y, epochs=1, shuffle=False, verbose=0)
    for got, want in zip(jax.tree.leaves(model.params_tree()), jax.tree.leaves(params)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)
    for got, want in zip(lstm.states, states):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_batches_of_another_size_are_refused_with_the_fix():
    model = _stateful_model()
    with pytest.raises(InputError, match=r"batch_size must be 4.*last batch of 2 rows"):
        model.predict(X[:6, :5], verbose=0)
    with pytest.raises(InputError, match=r"batch_size must be 4.*Received: batch_size=8"):
        model.fit(X[:, :5], np.zeros((8, 2)), batch_size=8, shuffle=False, verbose=0)
    with pytest.raises(InputError, match=r"batch_size must be 4.*Received: batch_size=2"):
        model.predict_on_batch(X[:2, :5])
    with pytest.raises(ValueError, match=r"stateful with a batch size of 4.*batch of 2"):
        model.layers[0](X[:2, :5])
    with pytest.raises(ValueError, match=r"batch size must be known.*batch_size=32"):
        kilnet.Sequential([kilnet.Input((5, 3)), kilnet.layers.GRU(2, stateful=True)]).build()
    with pytest.warns(UserWarning, match="shuffle=False"):
        model.fit(X[:, :5], np.zeros((8, 2)), verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X[:, :5], np.zeros((8, 2)), shuffle=False, verbose=0)


def test_the_batch_size_of_the_input_shows_as_keras_and_survives_files(tmp_path):
    def build(lib):
        inputs = lib.Input(shape=(5, 3), batch_size=4)
        scaled = inputs * 2.0   # an op node keeps the batch size too
        h = lib.layers.Bidirectional(lib.layers.LSTM(3, stateful=True, return_sequences=True))(
            scaled)
        outputs = lib.layers.GRU(2, stateful=True)(h)
        return lib.Model(inputs, outputs), [scaled, h, outputs]

    (mine, my_tensors), (theirs, their_tensors) = build(kilnet), build(keras)
    assert [t.shape for t in my_tensors] == [tuple(t.shape) for t in their_tensors]
    assert mine.input_shape == theirs.input_shape == (4, 5, 3)
    assert mine.output_shape == tuple(theirs.output_shape) == (4, 2)
    assert mine.count_params() == theirs.count_params()
    bidirectional, = [la for la in mine.layers if isinstance(la, kilnet.layers.Bidirectional)]
    assert len(bidirectional.states) == 4   # forward h, c then backward h, c
    before = mine.predict(X[:4, :5], verbose=0)
    path = tmp_path / "stateful.keras"
    mine.save(path)
    loaded = kilnet.saving.load_model(path)
    assert loaded.input_shape == (4, 5, 3) and loaded.layers[-1].stateful
    # the states are not in the file: the loaded model starts from zeros, as a reset one
    mine.reset_states()
    np.testing.assert_allclose(loaded.predict(X[:4, :5], verbose=0), before, rtol=1e-5)
    keras_model = keras.saving.load_model(path)
    assert tuple(keras_model.input_shape) == (4, 5, 3)
    np.testing.assert_allclose(keras_model(X[:4, :5]), before, rtol=1e-5, atol=1e-6)


def test_reset_state_to_given_values():
    layer = kilnet.layers.GRU(3, stateful=True)
    layer(X[:2, :4])
    start = RNG.normal(size=(2, 3)).astype("float32")
    layer.reset_state(states=[start])
    reference = kilnet.layers.GRU(3)
    reference(X[:2, :1])
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer(X[:2, 4:8]), reference(X[:2, 4:8], initial_state=[start]),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"takes 1 array\(s\) of shapes \[\(2, 3\)\]"):
        layer.reset_state(states=[np.zeros((4, 3))])


def test_a_subclassed_model_builds_its_stateful_layer_for_the_fit_batch_size():
    class Model(kilnet.Model):
        def __init__(self):
            super().__init__()
            self.lstm = kilnet.layers.LSTM(4, stateful=True)
            self.head = kilnet.layers.Dense(2)

        def call(self, x):
            return self.head(self.lstm(x))

    model = Model()
    model.compile(optimizer=kilnet.optimizers.SGD(0.0), loss="mse")
    model.fit(X[:, :5], np.zeros((8, 2)), batch_size=4, shuffle=False, verbose=0)
    assert [tuple(s.shape) for s in model.lstm.states] == [(4, 4), (4, 4)]
    # the states after the epoch: the second batch's rows continue the first batch's
    reference = kilnet.layers.LSTM(4, return_state=True)
    reference(X[:4, :1])
    reference.set_weights(model.lstm.get_weights())
    _, *states = reference(X[:4, :5])
    _, *states = reference(X[4:, :5], initial_state=states)
    for got, want in zip(model.lstm.states, states):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    model.reset_states()   # Keras 2's name, every stateful layer
    assert not any(np.asarray(s).any() for s in model.lstm.states)


@pytest.mark.parametrize("extension", ["kilnet", "keras"])
def test_a_stateful_sequential_keeps_its_batch_size_in_files(tmp_path, extension):
    model = kilnet.Sequential([kilnet.Input(batch_shape=(4, 5, 3)),
                               kilnet.layers.SimpleRNN(2, stateful=True)])
    first = model.predict(X[:4, :5], verbose=0)
    path = tmp_path / f"model.{extension}"
    model.save(path)
    loaded = kilnet.saving.load_model(path)
    assert loaded.input_shape == (4, 5, 3)
    np.testing.assert_allclose(loaded.predict(X[:4, :5], verbose=0), first, rtol=1e-6)
    if extension == "keras":
        assert tuple(keras.saving.load_model(path).input_shape) == (4, 5, 3)


def test_a_cell_s_own_initial_state_starts_the_states_as_in_keras():
    def make(lib):
        class OnesStart(lib.layers.Layer):
            """A cell that adds its input's sum to a state starting at ones."""

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.state_size = 2

            def call(self, inputs, states):
                new = states[0] + lib.ops.sum(inputs, axis=-1, keepdims=True)
                return new, [new]

            def get_initial_state(self, batch_size=None):
                return [lib.ops.ones((batch_size, 2))]

        return lib.layers.RNN(OnesStart(), stateful=True)

    mine, theirs = make(kilnet), make(keras)
    for start in (0, 3):
        np.testing.assert_allclose(mine(X[:4, start:start + 3]), theirs(X[:4, start:start + 3]),
                                   rtol=1e-5, atol=1e-6)
    mine.reset_state()   # zeros, as Keras's reset_state
    theirs.reset_state()
    np.testing.assert_allclose(mine(X[:4, :3]), theirs(X[:4, :3]), rtol=1e-5, atol=1e-6)
