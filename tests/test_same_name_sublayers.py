"""Two sub-layers or sub-models of one name in a subclassed model or layer, as Keras.

Keras tracks sub-layers by object, and their names need not be unique: keras.io's DDIM keeps
`self.ema_network = keras.models.clone_model(self.network)` (the copy keeps the name), and
`call` computing `self.a(x) + self.b(x)` adds the two. Each test builds the same model in
Keras and kilnet, gives both the same weights (set_weights) and compares: outputs, weight
order and paths, fit with a compiled loss, a JAX-form train_step running each sub-model's
stateless_call, and `.weights.h5` / `.keras` files read and written by either side."""

import os

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import jax  # noqa: E402

import kilnet  # noqa: E402

X = np.random.default_rng(0).random((6, 3)).astype("float32")
Y = np.random.default_rng(1).random((6, 2)).astype("float32")


def _weights(model, seed=2):
    """Distinct arrays for every weight of `model` (the same for Keras's and kilnet's twin)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=w.shape).astype("float32") for w in model.get_weights()]


def _two_dense_class(lib):
    register = lib.saving.register_keras_serializable(package="kilnet_test_same_name")

    class TwoDense(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.a = lib.layers.Dense(2, name="d")
            self.b = lib.layers.Dense(2, name="d")

        def call(self, x):
            return self.a(x) + 3.0 * self.b(x)

    return register(TwoDense)


def _net(lib, name="unet"):
    inputs = lib.Input((3,), name="x")
    return lib.Model(inputs, lib.layers.Dense(2, name="dense")(inputs), name=name)


def _with_clone_class(lib):
    class WithClone(lib.Model):
        """A network and its clone_model copy (one name), as keras.io's DDIM keeps them."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # (an attribute sorting after "layers", DDIM's `network`, is written elsewhere in
            # kilnet's weights file than in Keras's: another matter)
            self.backbone = _net(lib)
            self.ema_network = lib.models.clone_model(self.backbone)

        def call(self, x):
            return self.backbone(x) - 2.0 * self.ema_network(x)

    return WithClone


def _pair_layer_model(lib):
    """A Layer subclass holding two Dense of one name, inside a functional model."""
    class Pair(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = lib.layers.Dense(2, name="proj")
            self.second = lib.layers.Dense(2, name="proj")

        def call(self, x):
            return self.first(x) * self.second(x)

    inputs = lib.Input((3,), name="x")
    return lib.Model(inputs, Pair(name="pair")(inputs), name="outer")


def _twins(make):
    """(kilnet's model, Keras's model), built, with Keras's weights set on both."""
    mine, theirs = make(kilnet), make(keras)
    mine(X[:2])
    theirs(X[:2])
    weights = _weights(theirs)
    theirs.set_weights(weights)
    mine.set_weights(weights)
    return mine, theirs


MAKERS = {"two Dense": lambda lib: _two_dense_class(lib)(name="two"),
          "clone_model": lambda lib: _with_clone_class(lib)(name="two"),
          "Layer subclass": _pair_layer_model}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_each_call_runs_with_its_own_weights_as_keras(kind):
    mine, theirs = _twins(MAKERS[kind])
    np.testing.assert_allclose(np.asarray(mine(X)), np.asarray(theirs(X)), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-6)
    # Keras's weight order, names and shapes; get_weights gives back what was set
    assert [(v.name, v.shape) for v in mine.weights] == [
        (v.name, tuple(v.shape)) for v in theirs.weights]
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)
    # four weights at four places of kilnet's trees
    assert len({path for path, _, _ in mine.variable_paths()}) == len(mine.weights) == 4


def test_two_dense_of_one_name_keep_keras_paths_and_distinct_keys():
    mine, theirs = _twins(MAKERS["two Dense"])
    assert [v.path for v in mine.weights] == [v.path for v in theirs.weights] == [
        "two/d/kernel", "two/d/bias", "two/d/kernel", "two/d/bias"]
    assert [key for key, _ in mine.keyed_sublayers()] == ["d", "d_1"]
    assert sorted(mine.params_tree()) == ["d", "d_1"]
    np.testing.assert_array_equal(mine.params_tree()["d_1"]["kernel"], mine.b.kernel.numpy())


def test_fit_with_a_compiled_loss_as_keras():
    mine, theirs = _twins(MAKERS["clone_model"])
    history = {}
    for model, lib in ((mine, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
        history[lib.__name__] = model.fit(X, Y, batch_size=3, epochs=2, shuffle=False,
                                          verbose=0).history["loss"]
    np.testing.assert_allclose(history["kilnet"], history["keras"], rtol=1e-5)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the two networks trained apart: the copy's weights moved another way
    assert not np.allclose(mine.backbone.get_weights()[0], mine.ema_network.get_weights()[0])


def _jax_step_class(lib):
    class EMATrainer(lib.Model):
        """DDIM's form: the network trains through its stateless_call, the frozen
        clone_model copy follows it by an exponential moving average of its weights."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.network = _net(lib)
            self.ema_network = lib.models.clone_model(self.network)
            self.ema_network.trainable = False
            self.tracker = lib.metrics.Mean(name="l")

        def call(self, x):
            return self.network(x) + self.ema_network(x)

        @property
        def metrics(self):
            return [self.tracker]

        def _loss(self, network_weights, x, y):
            out, _ = self.network.stateless_call(network_weights, [], x)
            return lib.ops.mean((out - y) ** 2)

        def train_step(self, state, data):
            tv, ntv, ov, mv = state
            x, y = data
            loss, grads = jax.value_and_grad(self._loss)(tv, x, y)
            tv, ov = self.optimizer.stateless_apply(ov, grads, tv)
            ema, _ = self.ema_network.stateless_call([], ntv, x)
            ntv = [0.5 * old + 0.5 * new for old, new in zip(ntv, tv)]
            mv = self.tracker.stateless_update_state(mv, loss + 0.0 * lib.ops.sum(ema))
            return {"l": self.tracker.stateless_result(mv)}, (tv, ntv, ov, mv)

    return EMATrainer


def test_own_jax_train_step_with_each_sub_models_stateless_call_as_keras():
    mine, theirs = _twins(lambda lib: _jax_step_class(lib)(name="ema"))
    assert len(mine.trainable_variables) == len(mine.non_trainable_variables) == 2
    history = {}
    for model, lib in ((mine, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.05))
        history[lib.__name__] = model.fit(X, Y, batch_size=3, epochs=2, shuffle=False,
                                          verbose=0).history["l"]
    np.testing.assert_allclose(history["kilnet"], history["keras"], rtol=1e-5)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)


def _datasets(path):
    found = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: found.__setitem__(name, item[()])
                        if isinstance(item, h5py.Dataset) else None)
    return found


@pytest.mark.parametrize("kind", ["two Dense", "clone_model"])
def test_weights_files_open_on_either_side(kind, tmp_path):
    mine, theirs = _twins(MAKERS[kind])
    mine.save_weights(tmp_path / "mine.weights.h5")
    theirs.save_weights(tmp_path / "theirs.weights.h5")
    written, reference = _datasets(tmp_path / "mine.weights.h5"), _datasets(
        tmp_path / "theirs.weights.h5")
    assert sorted(written) == sorted(reference)
    for name in reference:
        np.testing.assert_array_equal(written[name], reference[name])
    # each side reads the other's file into a twin with other weights
    fresh_mine, fresh_theirs = MAKERS[kind](kilnet), MAKERS[kind](keras)
    fresh_mine(X[:2])
    fresh_theirs(X[:2])
    fresh_mine.load_weights(tmp_path / "theirs.weights.h5")
    fresh_theirs.load_weights(tmp_path / "mine.weights.h5")
    expected = np.asarray(theirs(X))
    np.testing.assert_allclose(np.asarray(fresh_mine(X)), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fresh_theirs(X)), expected, rtol=1e-6, atol=1e-6)


def test_keras_and_kilnet_files_round_trip(tmp_path):
    mine, theirs = _twins(MAKERS["two Dense"])
    mine.save(tmp_path / "two.keras")
    again = kilnet.models.load_model(tmp_path / "two.keras")
    np.testing.assert_array_equal(np.asarray(again(X)), np.asarray(mine(X)))
    assert [key for key, _ in again.keyed_sublayers()] == ["d", "d_1"]
    mine.save(tmp_path / "two.kilnet")
    again = kilnet.models.load_model(tmp_path / "two.kilnet")
    np.testing.assert_array_equal(np.asarray(again(X)), np.asarray(mine(X)))
    in_keras = keras.models.load_model(tmp_path / "two.keras")
    np.testing.assert_allclose(np.asarray(in_keras(X)), np.asarray(theirs(X)), rtol=1e-6,
                               atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    from_keras = kilnet.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(np.asarray(from_keras(X)), np.asarray(theirs(X)), rtol=1e-6,
                               atol=1e-6)


def test_unique_names_keep_their_keys():
    """Sub-layers of distinct names are keyed by their names, as before."""
    class Named(kilnet.Model):
        def __init__(self):
            super().__init__(name="named")
            self.a = kilnet.layers.Dense(2, name="d")
            self.b = kilnet.layers.Dense(2, name="d_1")
            self.c = kilnet.layers.Dense(2)

        def call(self, x):
            return self.a(x) + self.b(x) + self.c(x)

    model = Named()
    model(X[:2])
    assert [key for key, _ in model.keyed_sublayers()] == ["d", "d_1", "dense"]
    assert [path for path, _, _ in model.variable_paths()] == [
        (layer, weight) for layer in ("d", "d_1", "dense") for weight in ("kernel", "bias")]


def _stacked_cells_model(lib):
    """Two recurrent cells of one name stacked in an RNN (kept apart by object in Keras)."""
    cells = [lib.layers.SimpleRNNCell(2, name="c"), lib.layers.SimpleRNNCell(2, name="c")]
    inputs = lib.Input((4, 3), name="x")
    return lib.Model(inputs, lib.layers.RNN(cells, name="rnn")(inputs), name="stacked")


def test_stacked_cells_of_one_name_as_keras(tmp_path):
    sequences = np.random.default_rng(3).random((2, 4, 3)).astype("float32")
    mine, theirs = _stacked_cells_model(kilnet), _stacked_cells_model(keras)
    weights = _weights(theirs)
    mine.set_weights(weights)
    theirs.set_weights(weights)
    np.testing.assert_allclose(mine.predict(sequences, verbose=0),
                               theirs.predict(sequences, verbose=0), rtol=1e-5, atol=1e-6)
    mine.save_weights(tmp_path / "mine.weights.h5")
    fresh = _stacked_cells_model(keras)
    fresh.load_weights(tmp_path / "mine.weights.h5")
    np.testing.assert_allclose(fresh.predict(sequences, verbose=0),
                               theirs.predict(sequences, verbose=0), rtol=1e-6, atol=1e-6)
