"""A layer a model reaches through two attributes (keras.io's transformer_asr keeps
`enc_input` as an attribute and inside its `encoder` Sequential) is one set of weights, as
in Keras: listed once (at the first place attribute tracking reaches it) in `weights`,
`variable_paths`, the state lists a custom train_step gets, the Trainer's parameter tree
and the files; updated once per step. Keras 3 on JAX, from the same weights, is the
reference."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402

X = np.random.default_rng(0).random((16, 5), dtype="float32")
Y = np.random.default_rng(1).random((16, 2), dtype="float32")


def _twice(lib, *, own_step=False, shared_first=True):
    """A subclassed model holding one Dense as `self.a` and inside `self.seq`; with
    `shared_first=False` the Sequential is set first and `self.a` taken from it."""
    class Twice(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            shared = lib.layers.Dense(4, activation="tanh", name="shared")
            if shared_first:
                self.a = shared
            self.seq = lib.Sequential([shared, lib.layers.Dense(3, name="inner")], name="seq")
            if not shared_first:
                self.a = self.seq.layers[0]
            self.out = lib.layers.Dense(2, name="out")

        def call(self, x):
            # the shared layer runs at both places: its gradient comes from both
            return self.out(self.seq(x) + self.a(x)[:, :3])

    class OwnStep(Twice):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.tracker = lib.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.tracker]

        def train_step(self, state, data):
            tv, ntv, ov, mv = state
            x, y = data

            def loss_of(t):
                pred, new_ntv = self.stateless_call(t, ntv, x)
                return lib.ops.mean((pred - y) ** 2), new_ntv

            (loss, ntv), grads = jax.value_and_grad(loss_of, has_aux=True)(tv)
            tv, ov = self.optimizer.stateless_apply(ov, grads, tv)
            mv = self.tracker.stateless_update_state(mv, loss)
            return {"loss": self.tracker.stateless_result(mv)}, (tv, ntv, ov, mv)

    return (OwnStep if own_step else Twice)(name="twice")


def _built(lib, weights=None, **options):
    if lib is keras:
        keras.utils.clear_session()
    model = _twice(lib, **options)
    model(X[:1])
    if weights is not None:
        model.set_weights(weights)
    return model


@pytest.mark.parametrize("shared_first", [True, False])
def test_weights_are_listed_once_in_keras_order(shared_first):
    reference = _built(keras, shared_first=shared_first)
    model = _built(kilnet, reference.get_weights(), shared_first=shared_first)
    assert [w.shape for w in model.weights] == [tuple(w.shape) for w in reference.weights]
    assert len(model.trainable_variables) == len(reference.trainable_variables) == 6
    assert model.count_params() == reference.count_params()
    assert len(model.get_weights()) == 6
    paths = [path for path, _, _ in model.variable_paths()]
    assert len(paths) == 6
    first = ("shared",) if shared_first else ("seq", "shared")
    assert paths[:2] == [first + ("kernel",), first + ("bias",)]
    assert [w.path for w in model.weights] == [w.path for w in reference.weights]
    np.testing.assert_allclose(model.predict(X, verbose=0), reference.predict(X, verbose=0),
                               atol=1e-6)


@pytest.mark.parametrize("own_step", [False, True])
def test_fit_updates_the_shared_weights_once_per_step_as_keras(own_step):
    def run(lib, model):
        model.compile(optimizer=lib.optimizers.Adam(0.05), loss=None if own_step else "mse")
        return model.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]

    reference = _built(keras, own_step=own_step)
    start = reference.get_weights()
    want = run(keras, reference)
    model = _built(kilnet, start, own_step=own_step)
    got = run(kilnet, model)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for have, expected in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(have, expected, atol=1e-5)
    # one parameter array per weight in the training state, one optimizer slot each
    assert len(jax.tree.leaves(model.compiled.state.params)) == 6


def test_stateless_call_takes_one_value_per_variable():
    reference = _built(keras)
    model = _built(kilnet, reference.get_weights())
    tv = [v.value for v in model.trainable_variables]
    y, _ = jax.jit(model.stateless_call)(tv, [], X)
    want, _ = reference.stateless_call([v.value for v in reference.trainable_variables], [], X)
    np.testing.assert_allclose(y, want, atol=1e-6)


@pytest.mark.parametrize("shared_first", [True, False])
@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_files_load_across(tmp_path, suffix, shared_first):
    """Keras's saver writes the layer once, under the attribute sorting first (`a`), whichever
    place attribute tracking reaches first."""
    reference = _built(keras, shared_first=shared_first)
    model = _built(kilnet, shared_first=shared_first)
    objects = {"Twice": type(reference)}
    kilnet_file, keras_file = tmp_path / f"kilnet{suffix}", tmp_path / f"keras{suffix}"
    model.save_weights(kilnet_file) if suffix == ".weights.h5" else model.save(kilnet_file)
    reference.save_weights(keras_file) if suffix == ".weights.h5" else \
        reference.save(keras_file)
    if suffix == ".weights.h5":
        into_keras = _built(keras, shared_first=shared_first)
        into_kilnet = _built(kilnet, shared_first=shared_first)
        into_keras.load_weights(kilnet_file)
        into_kilnet.load_weights(keras_file)
    else:
        into_keras = keras.models.load_model(kilnet_file, custom_objects=objects)
        into_kilnet = kilnet.models.load_model(keras_file,
                                               custom_objects={"Twice": type(model)})
    np.testing.assert_allclose(into_keras.predict(X, verbose=0), model.predict(X, verbose=0),
                               atol=1e-6)
    np.testing.assert_allclose(into_kilnet.predict(X, verbose=0),
                               reference.predict(X, verbose=0), atol=1e-6)
    assert len(into_kilnet.weights) == 6


class _StopAfterFirstEpoch(kilnet.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise RuntimeError("stopped")


def test_a_run_resumed_from_its_checkpoint_and_kilnet_files_keep_the_shared_weights(tmp_path):
    start = _built(kilnet).get_weights()

    def fit(model, callbacks):
        model.compile(optimizer=kilnet.optimizers.Adam(0.05), loss="mse")
        model.fit(X, Y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)

    whole = _built(kilnet, start)
    fit(whole, [])
    with pytest.raises(RuntimeError, match="stopped"):
        fit(_built(kilnet, start), [kilnet.callbacks.BackupAndRestore(str(tmp_path / "b")),
                                    _StopAfterFirstEpoch()])
    resumed = _built(kilnet, start)
    fit(resumed, [kilnet.callbacks.BackupAndRestore(str(tmp_path / "b"))])
    for have, expected in zip(resumed.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_array_equal(have, expected)
    assert len(kilnet.saving.weight_entries(resumed)) == 6   # each weight once in the file
    resumed.save_weights(tmp_path / "w.kilnet")
    loaded = _built(kilnet)
    loaded.load_weights(tmp_path / "w.kilnet")
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), whole.predict(X, verbose=0))


@pytest.mark.parametrize("attribute_first", [True, False])
def test_a_shared_batch_normalization_keeps_one_set_of_statistics(attribute_first):
    """The statistics of a layer run at its later place (inside the Sequential) are those
    the model keeps at its first (the attribute), updated once per step as Keras's."""
    def make(lib):
        class Stats(lib.Model):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                norm = lib.layers.BatchNormalization(name="norm")
                if attribute_first:
                    self.norm = norm
                self.seq = lib.Sequential([lib.layers.Dense(4, name="d"), norm], name="seq")
                if not attribute_first:
                    self.norm = norm
                self.out = lib.layers.Dense(2, name="out")

            def call(self, x, training=None):
                return self.out(self.seq(x, training=training))
        model = Stats(name="stats")
        model(X[:1])
        return model

    keras.utils.clear_session()
    reference, model = make(keras), make(kilnet)
    model.set_weights(reference.get_weights())
    losses = []
    for lib, each in ((keras, reference), (kilnet, model)):
        each.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        losses.append(each.fit(X, Y, batch_size=4, epochs=2, shuffle=False,
                               verbose=0).history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert len(model.weights) == len(reference.weights) == 8
    np.testing.assert_allclose(model.norm.moving_mean.numpy(), reference.norm.moving_mean,
                               atol=1e-6)
    for have, expected in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(have, expected, atol=1e-5)
