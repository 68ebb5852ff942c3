"""Models with their own train_step / test_step (Keras's JAX form) fed batches whose
structure is the step's own, not the model's inputs: keras.io's semisupervised_simclr zips an
unlabeled and a labeled dataset into ((unlabeled, dummy labels), (labeled, labels)) batches
of 16 and 8 rows, and validates on (images, labels) arrays for a model of two inputs;
keras.io's ddim trains a network inside the steps of a model without call(). Keras's JAX
trainer hands each batch to the step as it is and never calls such a model; so does kilnet.
Keras 3 on JAX, from the same weights, is the reference."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.errors import InputError  # noqa: E402
from _keras_twins import OwnSteps  # noqa: E402

FEATURES = 4
KERNEL = np.linspace(-0.3, 0.4, FEATURES, dtype="float32").reshape(FEATURES, 1)


def _images(rows, shift):
    return (np.linspace(0, 1, rows * FEATURES, dtype="float32").reshape(rows, FEATURES)
            + shift)


# (unlabeled rows, labeled rows) of each batch: the last batch of other sizes
ROWS = [(6, 3), (6, 3), (4, 2)]


def _zipped(lib, as_dict, image_like_dummies=False):
    """simclr's zip of two datasets: each batch ((unlabeled, dummy labels), (labeled,
    labels)), or the same arrays in a dict whose keys are not the model's inputs.
    `image_like_dummies`: the dummy labels shaped as images, so that (unlabeled, dummy
    labels) reads as the model's two inputs, and the batch as (x, y) but for its rows."""
    class Zip(lib.utils.PyDataset):
        def __len__(self):
            return len(ROWS)

        def __getitem__(self, i):
            u, n = ROWS[i]
            unlabeled, labeled = _images(u, i), _images(n, -0.5 * i)
            dummy, labels = np.full((u,), -1.0, "float32"), np.linspace(0, 1, n, dtype="float32")
            if image_like_dummies:
                dummy = np.full((u, FEATURES), -1.0, "float32")
            if as_dict:
                return {"u": unlabeled, "u_y": dummy, "l": labeled, "l_y": labels}
            return (unlabeled, dummy), (labeled, labels)

    return Zip()


def _two_input_model(lib, as_dict):
    """simclr's pretraining model: its call takes (images, labeled images), its train_step
    unpacks the zipped batch, its test_step (images, labels)."""
    class Pretraining(OwnSteps, lib.Model):
        log_name = "l"

        def __init__(self):
            super().__init__()
            self.head = lib.layers.Dense(1, name="head")
            self.tracker = lib.metrics.Mean(name="l")

        def call(self, inputs):
            images, labeled = inputs
            return self.head(images), self.head(labeled)

        @property
        def metrics(self):
            return [self.tracker]

        def step_loss(self, tv, ntv, data, step):
            if step == "test":
                images, y = data
                (_, pl), _ = self.stateless_call(tv, ntv, (images, images))
                return lib.ops.mean((pl[:, 0] - y) ** 2), ntv
            if as_dict:
                (u, _), (images, y) = (data["u"], data["u_y"]), (data["l"], data["l_y"])
            else:
                (u, _), (images, y) = data
            (pu, pl), _ = self.stateless_call(tv, ntv, (u, images))
            return lib.ops.mean(pu ** 2) + lib.ops.mean((pl[:, 0] - y) ** 2), ntv

    model = Pretraining()
    model.compile(optimizer=lib.optimizers.SGD(0.05))
    zeros = np.zeros((1, FEATURES), "float32")
    model((zeros, zeros))
    model.head.set_weights([KERNEL, np.zeros(1, "float32")])
    return model


VAL_X, VAL_Y = _images(5, 0.25), np.linspace(1, 0, 5, dtype="float32")


def _history(lib, as_dict, image_like_dummies=False):
    if lib is keras:
        keras.utils.clear_session()
    model = _two_input_model(lib, as_dict)
    history = model.fit(_zipped(lib, as_dict, image_like_dummies), epochs=2, shuffle=False,
                        verbose=0,
                        validation_data=(VAL_X, VAL_Y), validation_batch_size=2)
    return history.history, model.evaluate(VAL_X, VAL_Y, batch_size=2, verbose=0)


@pytest.mark.parametrize("as_dict, image_like_dummies",
                         [(False, False), (True, False), (False, True)],
                         ids=["nested_tuples", "dict", "x_like_inputs"])
def test_step_batches_of_their_own_rows_train_as_keras(as_dict, image_like_dummies):
    """Each batch reaches the step as given, its arrays at their own rows (6 and 3, then a
    last batch of 4 and 2), also where its first entry reads as the model's inputs;
    validation and evaluate hand (images, labels) to the test_step of a two-input model."""
    got, got_eval = _history(kilnet, as_dict, image_like_dummies)
    want, want_eval = _history(keras, as_dict, image_like_dummies)
    assert sorted(got) == sorted(want) == ["l", "val_l"]
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_eval, want_eval, rtol=1e-5, atol=1e-6)


def test_batch_rows_as_given_to_the_built_in_step():
    """A model without its own step gets a source's batch as given, as Keras: arrays of
    different rows reach its layers, and the error there names each array's rows; inputs
    of other shapes are still refused."""
    inputs = [kilnet.Input((FEATURES,), name="a"), kilnet.Input((FEATURES,), name="b")]
    model = kilnet.Model(inputs, kilnet.layers.Add()(inputs))
    model.compile(optimizer="sgd", loss="mse")

    def batches():
        while True:
            yield (_images(6, 0), _images(3, 0)), np.zeros((6, FEATURES), "float32")

    with pytest.raises(TypeError, match="incompatible shapes") as caught:
        model.fit(batches(), steps_per_epoch=2, verbose=0)
    assert "x['a']: 6, x['b']: 3, labels: 6" in caught.value.__notes__[-1]
    with pytest.raises(InputError, match="samples of shape"):   # dummy labels as an input
        model.fit(_zipped(kilnet, False), verbose=0)


# -- a model without call(), as keras.io's ddim DiffusionModel -----------------------------------
DATA = {"x": np.linspace(0, 1, 24, dtype="float32").reshape(8, 3),
        "t": np.ones((8, 1), "float32")}


def _without_call(lib, built=True):
    inputs = lib.Input((3,))
    network = lib.Model(inputs, lib.layers.Dense(1, name="d")(inputs), name="network")

    class Diffusion(OwnSteps, lib.Model):
        log_name = "l"

        def __init__(self, network):
            super().__init__()
            self.network = network
            self.tracker = lib.metrics.Mean(name="l")

        @property
        def metrics(self):
            return [self.tracker]

        def step_loss(self, tv, ntv, data, step):
            y, ntv = self.network.stateless_call(tv, ntv, data["x"], training=True)
            return lib.ops.mean((y - data["t"]) ** 2), ntv

    model = Diffusion(network)
    model.compile(optimizer=lib.optimizers.SGD(0.1))
    network.set_weights([np.full((3, 1), 0.5, "float32"), np.zeros(1, "float32")])
    if built:
        model.built = True   # as Keras's error asks: nothing else builds a model without call
    return model


def _dict_batches(lib):
    class Batches(lib.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {key: value[i * 4:(i + 1) * 4] for key, value in DATA.items()}

    return Batches()


def _without_call_results(lib):
    if lib is keras:
        keras.utils.clear_session()
    model = _without_call(lib)
    arrays = model.fit(DATA, batch_size=4, epochs=2, shuffle=False, verbose=0,
                       validation_data=DATA).history
    streamed = model.fit(_dict_batches(lib), epochs=1, shuffle=False, verbose=0,
                         validation_data=_dict_batches(lib)).history
    return arrays, streamed, model.evaluate(DATA, batch_size=3, verbose=0)


def test_model_without_call_trains_in_its_own_steps_as_keras():
    """Compiled with an optimizer and no loss, fit on a dict of arrays and on batches, with
    validation, and evaluated: the steps' numbers are Keras's."""
    got = _without_call_results(kilnet)
    want = _without_call_results(keras)
    for got_history, want_history in zip(got[:2], want[:2]):
        assert sorted(got_history) == sorted(want_history) == ["l", "val_l"]
        for name in want_history:
            np.testing.assert_allclose(got_history[name], want_history[name], rtol=1e-5)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5)


def test_model_without_call_not_built_says_how_to_build_it():
    """Keras's fit would build it by calling it and refuses; so does kilnet, with the way."""
    with pytest.raises(RuntimeError, match="Unable to automatically build"):
        _without_call(keras, built=False).fit(DATA, batch_size=4, verbose=0)
    with pytest.raises(RuntimeError, match=r"defines no call\(\).*model.built = True"):
        _without_call(kilnet, built=False).fit(DATA, batch_size=4, verbose=0)


# -- training and validation data in different containers ------------------------------------------
def _container_recorder(lib):
    """A two-input model whose train_step and test_step record the container x reaches
    them in (at trace time)."""
    class Recorder(OwnSteps, lib.Model):
        log_name = "l"

        def __init__(self):
            super().__init__()
            self.head = lib.layers.Dense(1, name="head")
            self.tracker = lib.metrics.Mean(name="l")
            self.seen = {"train": set(), "test": set()}

        def call(self, inputs):
            return self.head(inputs[0]) + self.head(inputs[1])

        @property
        def metrics(self):
            return [self.tracker]

        def step_loss(self, tv, ntv, data, step):
            x, y = data
            self.seen[step].add(type(x).__name__)
            out, _ = self.stateless_call(tv, ntv, x)
            return lib.ops.mean((out[:, 0] - y) ** 2), ntv

    model = Recorder()
    model.compile(optimizer=lib.optimizers.SGD(0.05))
    zeros = np.zeros((1, FEATURES), "float32")
    model([zeros, zeros])
    model.head.set_weights([KERNEL, np.zeros(1, "float32")])
    return model


def _list_then_tuple(lib):
    if lib is keras:
        keras.utils.clear_session()
    model = _container_recorder(lib)
    a, b, y = _images(6, 0), _images(6, 0.5), np.linspace(0, 1, 6, dtype="float32")

    class TupleBatches(lib.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return (a[i * 3:(i + 1) * 3], b[i * 3:(i + 1) * 3]), y[i * 3:(i + 1) * 3]

    history = model.fit([a, b], y, batch_size=3, epochs=2, shuffle=False, verbose=0,
                        validation_data=TupleBatches())
    return history.history, model.seen


def test_validation_batches_keep_their_own_containers():
    """Training arrays given as a list and validation batches as tuples: each step gets its
    own data's container, in every epoch (validation's did not leak into training)."""
    got, got_seen = _list_then_tuple(kilnet)
    want, want_seen = _list_then_tuple(keras)
    assert got_seen == want_seen == {"train": {"list"}, "test": {"tuple"}}
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
