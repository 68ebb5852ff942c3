"""Keras's generic recurrent layer RNN(cell) and its cells (SimpleRNNCell, LSTMCell, GRUCell,
StackedRNNCells, cells written the Keras way): values against Keras 3 (weights copied with
set_weights, which also checks their order and shapes) and NumPy, the layer's own LSTM / GRU
as a second reference (their hand-written gradients too), masks, dropout per sequence, losses,
training, files (.kilnet, Keras's .keras both ways, a tampered file), and refusals."""

from __future__ import annotations

import json
import os
import zipfile

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import check_grad  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers, ops  # noqa: E402
from kilnet.errors import ModelFileError  # noqa: E402
from kilnet.models import load_model  # noqa: E402
from _training import assert_fit_lowers_loss  # noqa: E402

# The Keras twins take kilnet's weights (set_weights): their own starting draws need only be
# random, so they come from NumPy rather than compiling one XLA program per shape.
pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

KEY = jax.random.PRNGKey(0)
CELLS = ["SimpleRNNCell", "LSTMCell", "GRUCell"]


def normal(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def leaves(outputs):
    return [np.asarray(t) for t in jax.tree.leaves(outputs)]


def padding_mask(batch=3, time=6, seed=2):
    mask = np.random.default_rng(seed).random((batch, time)) > 0.4
    mask[:, 0] = True
    return mask


def twins(make, x, **call):
    """(kilnet layer, Keras layer) made by `make(namespace)`, both built on x, the Keras one
    holding random weights and the kilnet one the same weights."""
    ours, theirs = make(layers), make(keras.layers)
    ours(x, **call)
    theirs(x, **call)
    theirs.set_weights([normal(w.shape, seed=i, scale=0.5)
                        for i, w in enumerate(theirs.get_weights())])
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@kilnet.saving.register_serializable(package="TestRNN")
class MinimalRNNCell(kilnet.layers.Layer):
    """The cell of Keras's RNN guide, imports changed."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                      initializer="uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                initializer="uniform", name="recurrent_kernel")

    def call(self, inputs, states):
        prev_output = states[0]
        h = ops.matmul(inputs, self.kernel)
        output = h + ops.matmul(prev_output, self.recurrent_kernel)
        return output, [output]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def minimal_reference(x, kernel, recurrent, h0=None):
    h = np.zeros((x.shape[0], kernel.shape[1]), np.float32) if h0 is None else h0
    outputs = []
    for t in range(x.shape[1]):
        h = x[:, t] @ kernel + h @ recurrent
        outputs.append(h)
    return np.stack(outputs, axis=1)


# -- kilnet's cells against Keras's ----------------------------------------------------------------
OPTIONS = [dict(), dict(return_sequences=True), dict(return_state=True),
           dict(return_sequences=True, return_state=True, go_backwards=True),
           dict(return_sequences=True, zero_output_for_mask=True)]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "default")
@pytest.mark.parametrize("kind", CELLS)
def test_cell_in_rnn_matches_keras(kind, options):
    x = normal((3, 6, 5))
    ours, theirs = twins(lambda ns: ns.RNN(getattr(ns, kind)(4), **options), x)
    for mask in (None, padding_mask()):
        got, want = ours(x, mask=mask), theirs(x, mask=mask)
        assert len(leaves(got)) == len(leaves(want))
        for a, b in zip(leaves(got), leaves(want)):
            close(a, b)


@pytest.mark.parametrize("kind", CELLS)
def test_cell_options_match_keras(kind):
    extra = {"GRUCell": dict(reset_after=False), "LSTMCell": dict(unit_forget_bias=False)}
    x = normal((2, 5, 3))
    ours, theirs = twins(lambda ns: ns.RNN(getattr(ns, kind)(
        3, activation="relu", use_bias=kind != "SimpleRNNCell", **extra.get(kind, {})),
        return_sequences=True), x)
    close(ours(x), theirs(x))


def test_stacked_cells_match_keras_with_nested_states():
    x = normal((3, 6, 5))
    make = (lambda ns: ns.RNN([ns.LSTMCell(4), ns.GRUCell(3), ns.SimpleRNNCell(2)],
                              return_state=True, go_backwards=True))
    ours, theirs = twins(make, x)
    got = ours(x, mask=padding_mask())
    want = theirs(x, mask=padding_mask())
    # output, [h, c] of the LSTM cell, then one state each for the others (as state_size)
    assert [np.shape(s) for s in got[1]] == [(3, 4), (3, 4)]
    assert np.shape(got[2]) == (3, 3) and np.shape(got[3]) == (3, 2)
    for a, b in zip(leaves(got), leaves(want)):
        close(a, b)
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]


def test_initial_state_nested_or_flat_matches_keras():
    x = normal((2, 4, 3))
    ours, theirs = twins(lambda ns: ns.RNN([ns.LSTMCell(3), ns.GRUCell(2)],
                                           return_sequences=True), x)
    h, c, g = normal((2, 3), 5), normal((2, 3), 6), normal((2, 2), 7)
    want = theirs(x, initial_state=[[h, c], [g]])
    close(ours(x, initial_state=[[h, c], g]), want)
    close(ours(x, initial_state=[h, c, g]), want)


def test_bidirectional_rnn_cell_matches_keras():
    x = normal((3, 5, 4))
    ours, theirs = twins(lambda ns: ns.Bidirectional(ns.RNN(ns.LSTMCell(3), return_state=True)),
                         x)
    got, want = ours(x, mask=padding_mask(3, 5)), theirs(x, mask=padding_mask(3, 5))
    for a, b in zip(leaves(got), leaves(want)):
        close(a, b)


# -- RNN(cell) against kilnet's own layers -------------------------------------------------------------
@pytest.mark.parametrize("kind, layer", [("SimpleRNNCell", "SimpleRNN"), ("LSTMCell", "LSTM"),
                                         ("GRUCell", "GRU")])
def test_rnn_cell_equals_the_layer_values_and_gradients(kind, layer):
    """RNN(LSTMCell(n)) runs JAX's gradient of a generic scan; LSTM(n) its hand-written fused
    recurrence: the two must agree, values and weight gradients, masks included."""
    generic = layers.RNN(getattr(layers, kind)(4), return_sequences=True)
    fused = getattr(layers, layer)(4, return_sequences=True)
    x, mask = normal((3, 6, 5)), padding_mask()
    generic(x)
    fused(x)
    fused.set_weights([normal(w.shape, seed=i, scale=0.5)
                       for i, w in enumerate(fused.get_weights())])
    generic.set_weights(fused.get_weights())

    def loss(layer, params):
        y, _ = layer.apply(params, layer.state_tree(), x, mask=mask)
        return jnp.sum(jnp.sin(y))

    value_g, grad_g = jax.value_and_grad(lambda p: loss(generic, p))(generic.params_tree())
    value_f, grad_f = jax.value_and_grad(lambda p: loss(fused, p))(fused.params_tree())
    close(value_g, value_f)
    inner = grad_g[generic.cell.name]
    for name in fused.param_names:
        close(inner[name], grad_f[name], rtol=1e-4, atol=1e-5)


# -- cells written the Keras way ----------------------------------------------------------------------
def test_keras_guide_cell_matches_numpy_and_stacks():
    x = normal((2, 5, 3))
    rnn = layers.RNN(MinimalRNNCell(4), return_sequences=True)
    y = rnn(x)
    kernel, recurrent = (w.numpy() for w in rnn.weights)
    close(y, minimal_reference(x, kernel, recurrent))
    stacked = layers.RNN([MinimalRNNCell(4), MinimalRNNCell(2)])
    out = stacked(x)
    k1, r1, k2, r2 = (w.numpy() for w in stacked.weights)
    close(out, minimal_reference(minimal_reference(x, k1, r1), k2, r2)[:, -1])


def test_keras_guide_cell_gradients_match_finite_differences():
    rnn = layers.RNN(MinimalRNNCell(2), return_sequences=True)
    rnn(np.ones((1, 3, 2), np.float32))
    name = rnn.cell.name
    mask = np.array([[True, False, True], [True, True, True]])

    def loss(kernel, recurrent, x):
        params = {name: {"kernel": kernel, "recurrent_kernel": recurrent}}
        y, _ = rnn.apply(params, {name: {}}, x, mask=mask)
        return jnp.sum(jnp.tanh(y))

    check_grad(loss, normal((2, 2), 1, 0.5), normal((2, 2), 2, 0.5), normal((2, 3, 2)),
               rtol=1e-4, atol=1e-6)


class ScaledOutputCell(kilnet.layers.Layer):
    """output_size differs from the state, and the initial state is not zeros."""

    state_size = [3]
    output_size = 2

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), initializer="ones")

    def call(self, inputs, states):
        h = ops.tanh(ops.matmul(inputs, self.kernel) + states[0])
        return 2.0 * h[:, :2], [h]

    def get_initial_state(self, batch_size=None):
        return [ops.ones((batch_size, 3)) * 0.5]


def test_output_size_initial_state_and_masked_steps_of_a_custom_cell():
    x = normal((2, 4, 3))
    mask = np.array([[True, True, False, True], [True, False, False, True]])
    rnn = layers.RNN(ScaledOutputCell(), return_sequences=True, return_state=True)
    sequence, state = rnn(x, mask=mask)
    h = np.full((2, 3), 0.5, np.float32)
    previous = np.zeros((2, 2), np.float32)   # the state (3 wide) is not the output (2 wide)
    for t in range(4):
        new = np.tanh(x[:, t] @ np.ones((3, 3), np.float32) + h)
        keep = mask[:, t:t + 1]
        h = np.where(keep, new, h)
        output = np.where(keep, 2.0 * new[:, :2], previous)
        close(sequence[:, t], output)
        previous = output
    close(state, h)


class DropoutCell(kilnet.layers.Layer):
    """A cell with a Dropout sub-layer on its input and an add_loss on its output."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_size = 3
        self.drop = kilnet.layers.Dropout(0.5)

    def call(self, inputs, states, training=None):
        out = self.drop(inputs, training=training)
        self.add_loss(ops.mean(out))
        return out, [out]


def test_a_cells_randomness_is_drawn_once_per_sequence_and_its_losses_summed():
    rnn = layers.RNN(DropoutCell(), return_sequences=True)
    x = np.ones((4, 5, 3), np.float32)
    rnn(x)
    params, state = rnn.params_tree(), rnn.state_tree()
    with kilnet._scope.opened(kilnet._scope.Scope()) as scope:
        y, _ = rnn.apply(params, state, x, training=True, rng=KEY)
    y = np.asarray(y)
    for t in range(1, 5):
        np.testing.assert_array_equal(y[:, t], y[:, 0])      # one mask per sequence
    assert set(np.unique(y)) <= {0.0, 2.0} and (y == 0).any() and (y == 2).any()
    # add_loss of each step, summed over the 5 steps
    close(sum(scope.losses), sum(y[:, t].mean() for t in range(5)))
    inference, _ = rnn.apply(params, state, x)
    np.testing.assert_array_equal(np.asarray(inference), 1.0)


def test_weight_penalties_count_once_per_step_not_per_time_step():
    rnn = layers.RNN(layers.LSTMCell(3, kernel_regularizer=kilnet.regularizers.L2(0.1),
                                     recurrent_regularizer="l1"))
    rnn(normal((2, 7, 4)))
    kernel, recurrent, _ = (w.numpy() for w in rnn.weights)
    want = 0.1 * np.sum(kernel ** 2) + 0.01 * np.sum(np.abs(recurrent))
    close(sum(rnn.losses), want, rtol=1e-5)


# -- training and files ---------------------------------------------------------------------------------
def test_text_model_with_stacked_cells_learns_on_variable_lengths():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 20, size=(96, 9))
    tokens[rng.random(tokens.shape) < 0.3] = 0     # padding anywhere: Embedding masks it
    y = (np.sum(tokens == 7, axis=1) > 0).astype(np.float32)
    inputs = kilnet.Input(shape=(None,), dtype="int32")
    h = layers.Embedding(20, 8, mask_zero=True)(inputs)
    h = layers.RNN([layers.GRUCell(8), MinimalRNNCell(4)])(h)
    model = kilnet.Model(inputs, layers.Dense(1, activation="sigmoid")(h))
    model.compile(optimizer=kilnet.optimizers.Adam(0.01), loss="binary_crossentropy")
    assert_fit_lowers_loss(model, tokens, y, 0.8, epochs=15, batch_size=16)


def test_kilnet_file_round_trip_with_a_registered_cell(tmp_path):
    inputs = kilnet.Input(shape=(None, 3))
    out, h, c = layers.RNN(layers.LSTMCell(4), return_state=True)(inputs)
    mixed = layers.RNN([MinimalRNNCell(3), layers.GRUCell(2)], return_sequences=True)(inputs)
    model = kilnet.Model(inputs, [out, c, mixed])
    x = normal((2, 5, 3))
    before = model.predict(x, verbose=0)   # built on data, then saved with its weights
    path = tmp_path / "rnn.kilnet"
    model.save(path)
    again = load_model(path)
    for a, b in zip(before, again.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
    assert isinstance(again.layers[1].cell, layers.LSTMCell)


def test_keras_files_both_ways(tmp_path):
    x = normal((3, 6, 5))
    inputs = keras.Input((None, 5))
    h = keras.layers.RNN([keras.layers.LSTMCell(4), keras.layers.GRUCell(3, reset_after=False),
                          keras.layers.LSTMCell(2)], return_sequences=True)(inputs)
    last, _, c = keras.layers.RNN(keras.layers.LSTMCell(3), return_state=True,
                                  go_backwards=True)(h)
    both = keras.layers.Bidirectional(keras.layers.RNN(keras.layers.SimpleRNNCell(3)))(inputs)
    theirs = keras.Model(inputs, [keras.layers.Dense(2)(keras.layers.concatenate([last, c])),
                                  both])
    for i, w in enumerate(theirs.weights):
        w.assign(normal(w.shape, seed=i, scale=0.5))
    theirs.save(tmp_path / "k.keras")
    ours = load_model(tmp_path / "k.keras")
    for a, b in zip(ours.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        close(a, b)
    ours.save(tmp_path / "ours.keras")
    back = keras.models.load_model(tmp_path / "ours.keras")
    for a, b in zip(ours.predict(x, verbose=0), back.predict(x, verbose=0)):
        close(a, b)


def test_a_keras_file_with_a_cell_too_large_for_its_weights_is_refused(tmp_path):
    inputs = keras.Input((None, 5))
    model = keras.Model(inputs, keras.layers.RNN(keras.layers.LSTMCell(4))(inputs))
    model.save(tmp_path / "k.keras")
    with zipfile.ZipFile(tmp_path / "k.keras") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["layers"][1]["config"]["cell"]["config"]["units"] = 10 ** 6
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "tampered.keras", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with pytest.raises(ModelFileError, match="does not fit its arrays"):
        load_model(tmp_path / "tampered.keras")


def test_configs_signatures_and_keys_are_keras():
    for kind in CELLS:
        ours, theirs = getattr(layers, kind), getattr(keras.layers, kind)
        assert str(_signature(ours)) == str(_signature(theirs)), kind
        assert set(ours(3).get_config()) == set(theirs(3).get_config())
        config = ours(3, dropout=0.2).get_config()
        assert type(ours(3)).from_config(config).get_config() == config
    rnn = layers.RNN([layers.LSTMCell(2), layers.GRUCell(3)], go_backwards=True)
    config = rnn.get_config()
    assert set(config) == set(keras.layers.RNN(keras.layers.GRUCell(2)).get_config())
    assert config["cell"]["class_name"] == "StackedRNNCells"
    assert layers.RNN.from_config(config).get_config() == config
    assert str(_signature(layers.RNN)) == str(_signature(keras.layers.RNN))


def _signature(cls):
    import inspect

    return [(p.name, p.default) for p in inspect.signature(cls.__init__).parameters.values()]


# -- refusals -------------------------------------------------------------------------------------------
class NoStateSize(kilnet.layers.Layer):
    def call(self, inputs, states):
        return inputs, states


class WrongStateCell(MinimalRNNCell):
    def call(self, inputs, states):
        output, _ = super().call(inputs, states)
        return output, [output[:, :1]]


class WrongOutputCell(MinimalRNNCell):
    def call(self, inputs, states):
        output, new = super().call(inputs, states)
        return output[:, :1], new


@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.RNN(NoStateSize()), ValueError, "needs a state_size attribute"),
    (lambda: layers.RNN("lstm"), ValueError, "must be a kilnet layer with a call"),
    (lambda: layers.RNN(layers.LSTMCell(2), stateful=1), TypeError, "stateful must be True"),
    (lambda: layers.RNN(layers.LSTMCell(2), return_sequences=1), TypeError, "True or False"),
    (lambda: layers.StackedRNNCells([]), ValueError, "non-empty list"),
    (lambda: layers.LSTMCell(0), ValueError, "units must be a positive integer"),
    (lambda: layers.GRUCell(2, dropout=1.5), ValueError, "dropout must be a number"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_cells_and_states_are_refused_with_the_fix():
    x = normal((2, 4, 3))
    with pytest.raises(ValueError, match=r"new states of shapes \[\(2, 1\)\].*state_size=4"):
        layers.RNN(WrongStateCell(4))(x)
    with pytest.raises(ValueError, match="Set output_size on the cell"):
        layers.RNN(WrongOutputCell(4))(x)
    rnn = layers.RNN(layers.LSTMCell(4))
    with pytest.raises(ValueError, match=r"initial_state as 2 tensor\(s\).*Received: shapes"):
        rnn(x, initial_state=[np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match="initial_state as 2"):
        rnn(kilnet.Input(shape=(None, 3)), initial_state=[kilnet.Input(shape=(5,))] * 2)
    with pytest.raises(ValueError, match="Received: input of shape"):
        rnn(normal((2, 4, 7)))
    with pytest.raises(ValueError, match=r"run it over a sequence with kilnet.layers.RNN"):
        layers.LSTMCell(2)(kilnet.Input(shape=(3,)), [kilnet.Input(shape=(2,))] * 2)
