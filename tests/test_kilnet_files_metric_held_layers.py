"""The layers a Metric kept as a model's attribute holds (keras.io's DDIM keeps a KID metric
holding an InceptionV3 encoder) are no sub-layers of the model, yet kilnet's own files keep
them: `.kilnet` model and weights files and BackupAndRestore's checkpoints give them back
bit-identical, so a loaded or resumed model computes the metric with the same encoder. The
metric's own state (its accumulators) is in none of them, as in Keras's `.keras` files."""

from __future__ import annotations

import os
import warnings

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import checkpoint  # noqa: E402
from kilnet.errors import ModelFileError  # noqa: E402
from tests._metric_models import draw_weights, tracked_metric  # noqa: E402

SHAPE = (6, 6, 2)
RNG = np.random.default_rng(0)
X = RNG.random((4,) + SHAPE).astype("float32")
FAKE = RNG.random((4,) + SHAPE).astype("float32")


def _classes(lib):
    """A KID-like metric holding a functional conv + batch-normalization encoder and a
    Sequential(Rescaling, Dense) head, kept by a subclassed model."""
    layers = lib.layers
    register = lib.saving.register_keras_serializable(package="kilnet_test_held_layers")

    class Kid(tracked_metric(lib)):
        def __init__(self, name="kid", **kwargs):
            super().__init__(name=name, **kwargs)
            inputs = lib.Input(SHAPE, name="enc_in")
            x = layers.Conv2D(3, 3, name="conv")(inputs)
            x = layers.BatchNormalization(name="bn")(x)
            self.encoder = lib.Model(inputs, layers.GlobalAveragePooling2D(name="pool")(x),
                                     name="encoder")
            self.head = lib.Sequential([lib.Input((3,)), layers.Rescaling(2.0, name="scale"),
                                        layers.Dense(2, name="proj")], name="head")

        def update_state(self, real, generated, sample_weight=None):
            real = self.head(self.encoder(real, training=False))
            generated = self.head(self.encoder(generated, training=False))
            self.kid_tracker.update_state(lib.ops.mean(lib.ops.square(real - generated)))

    class Diffusion(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.network = layers.Conv2D(2, 3, padding="same", name="net_conv")
            self.kid = Kid()

        def call(self, x):
            return self.network(x)

    return register(Kid), register(Diffusion)


def _held_parts(model):
    return (model.kid.encoder, model.kid.head)


def _model(lib, seed):
    """A built model whose encoder and head weights (batch-normalization statistics too) are
    drawn from `seed`, so that a load that missed any array would show."""
    model = _classes(lib)[1]()
    model(X)
    draw_weights(_held_parts(model), seed)
    return model


def _held_weights(model):
    return [w for part in _held_parts(model) for w in part.get_weights()]


def _assert_same_held_weights(got, expected):
    got, expected = _held_weights(got), _held_weights(expected)
    assert len(got) == len(expected) == 8
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def _kid(model):
    model.kid.reset_state()
    model.kid.update_state(X, FAKE)
    return float(model.kid.result())


def test_a_model_file_keeps_the_layers_a_metric_holds(tmp_path):
    model = _model(kilnet, seed=1)
    model.kid.update_state(X, FAKE)   # state of its own, which no file keeps
    model.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet")
    _assert_same_held_weights(loaded, model)
    # the metric's accumulators start afresh, as after loading Keras's .keras file
    assert [float(v) for v in loaded.kid.variables] == [0.0, 0.0]
    assert _kid(loaded) == _kid(model)


def test_a_metric_state_is_in_no_keras_file_either(tmp_path):
    """The reference for the above: Keras's .keras file does not keep a metric's state."""
    keras = pytest.importorskip("keras", reason="the reference is Keras itself")
    model = _model(keras, seed=2)
    model.kid.update_state(X, FAKE)
    model.save(tmp_path / "k.keras")
    loaded = keras.models.load_model(tmp_path / "k.keras")
    assert [float(v) for v in loaded.kid.variables] == [0.0, 0.0]


def test_a_weights_file_keeps_the_layers_a_metric_holds(tmp_path):
    model, other = _model(kilnet, seed=3), _model(kilnet, seed=4)
    model.save_weights(tmp_path / "w.kilnet")
    other.load_weights(tmp_path / "w.kilnet")
    _assert_same_held_weights(other, model)
    assert _kid(other) == _kid(model)


def test_a_file_whose_held_arrays_do_not_fit_is_refused(tmp_path):
    model = _model(kilnet, seed=5)
    model.save(tmp_path / "m.kilnet")
    plain = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
    plain.build(seed=0)
    with pytest.raises(ModelFileError, match="held/params/kid/encoder"):
        kilnet.saving.load_held_weights(plain, kilnet._safefile.read(
            str(tmp_path / "m.kilnet"), "model")[1], str(tmp_path / "m.kilnet"))


def test_an_earlier_file_without_held_arrays_loads_with_a_warning(tmp_path):
    model = _model(kilnet, seed=6)
    model.save_weights(tmp_path / "w.kilnet")
    info, tensors = kilnet._safefile.read(str(tmp_path / "w.kilnet"), "weights")
    earlier = {n: a for n, a in tensors.items() if not n.startswith("held/")}
    before = _held_weights(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kilnet.saving.load_held_weights(model, earlier, "w.kilnet")
    assert any("metrics hold" in str(w.message) for w in caught)
    for a, b in zip(_held_weights(model), before):
        np.testing.assert_array_equal(a, b)


def _fit(model, backup, epochs):
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, X, batch_size=2, epochs=epochs, verbose=0,
              callbacks=[kilnet.callbacks.BackupAndRestore(str(backup),
                                                           delete_checkpoint=False)])


def test_a_resumed_run_computes_the_metric_with_the_checkpointed_encoder(tmp_path):
    first = _model(kilnet, seed=7)
    _fit(first, tmp_path / "b", epochs=2)
    ckpt = checkpoint.latest(tmp_path / "b")
    assert "held/params/kid/encoder/conv/kernel" in ckpt.tensors
    resumed = _model(kilnet, seed=8)   # the new process drew other encoder weights
    assert _kid(resumed) != _kid(first)
    _fit(resumed, tmp_path / "b", epochs=3)
    _assert_same_held_weights(resumed, first)
    assert _kid(resumed) == _kid(first)


def test_a_resumed_run_validates_with_the_checkpointed_encoder(tmp_path):
    """A test_step of yours (Keras's JAX form) updating the metric: the resumed fit's
    validation runs the encoder the checkpoint kept, not the one the new process drew."""
    def fit(model, epochs):
        backup = kilnet.callbacks.BackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
        return model.fit(X, X, batch_size=2, epochs=epochs, validation_data=(X, X), verbose=0,
                         callbacks=[backup]).history["val_kid"]

    fit(_validated(seed=9), epochs=2)
    resumed = _validated(seed=10)
    drawn = [w.copy() for w in _held_weights(resumed)]
    val_kid = fit(resumed, epochs=3)
    assert len(val_kid) == 1
    resumed.kid.reset_state()
    resumed.kid.update_state(X, resumed.network(X))
    np.testing.assert_allclose(val_kid[-1], float(resumed.kid.result()), rtol=1e-5)
    stale = _classes(kilnet)[0]()
    for part, weights in zip((stale.encoder, stale.head), (drawn[:6], drawn[6:])):
        part.set_weights(weights)
    stale.update_state(X, resumed.network(X))
    assert abs(float(stale.result()) - val_kid[-1]) > 1e-3 * abs(val_kid[-1])


def _unnamed_classes():
    """The model of `_classes` keeping a metric left to its default name, which the process
    numbers (`unnamed_kid`, `unnamed_kid_1` in the second model)."""
    kid, diffusion = _classes(kilnet)

    class UnnamedKid(kid):
        def __init__(self):
            super().__init__(name=None)

    class Unnamed(diffusion):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.kid = UnnamedKid()

    return Unnamed


def _unnamed_model(seed):
    model = _unnamed_classes()()
    model(X)
    draw_weights(_held_parts(model), seed)
    return model


def test_held_arrays_are_named_by_attributes_not_by_the_metric_numbered_name(tmp_path):
    """Two models of one class in one process: their metrics' names differ (`_1`), the
    places their layers' arrays have in files do not."""
    first, second = _unnamed_model(seed=20), _unnamed_model(seed=21)
    assert first.kid.name != second.kid.name
    first.save_weights(tmp_path / "w.kilnet")
    second.load_weights(tmp_path / "w.kilnet")
    _assert_same_held_weights(second, first)
    first.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet",
                                      custom_objects={"Unnamed": type(first)})
    _assert_same_held_weights(loaded, first)


def test_a_resumed_run_with_a_default_named_metric_gets_the_checkpointed_encoder(tmp_path):
    first = _unnamed_model(seed=22)
    _fit(first, tmp_path / "b", epochs=2)
    resumed = _unnamed_model(seed=23)
    _fit(resumed, tmp_path / "b", epochs=3)
    _assert_same_held_weights(resumed, first)


def _validated_class():
    """A model whose test_step (Keras's JAX form) updates the KID-like metric: evaluate
    returns what the held encoder computes."""
    diffusion = _classes(kilnet)[1]

    class Validated(diffusion):
        def test_step(self, state, data):
            trainable, non_trainable, metric_vars = state
            x, _ = data
            out, _ = self.stateless_call(trainable, non_trainable, x)
            n = len(self.kid.variables)
            kid = self.kid.stateless_update_state(metric_vars[-n:], x, out)
            return ({"kid": self.kid.stateless_result(kid)},
                    (trainable, non_trainable, list(metric_vars[:-n]) + list(kid)))

        @property
        def metrics(self):
            return [self.kid]

    return Validated


def _validated(seed):
    model = _validated_class()()
    model(X)
    draw_weights(_held_parts(model), seed)
    model.compile(optimizer="adam", loss="mse")
    return model


def _evaluated_kid(model):
    return model.evaluate(X, X, batch_size=2, verbose=0, return_dict=True)["kid"]


@pytest.mark.parametrize("how", ["load_weights", "keras_weights", "checkpoint"])
def test_a_compiled_model_computes_with_the_held_weights_it_loaded(tmp_path, how):
    """evaluate ran before the load (its program traced with the old encoder): after it,
    evaluate computes what a fresh model with the loaded encoder computes."""
    source, model = _validated(seed=24), _validated(seed=25)
    model.network.set_weights(source.network.get_weights())
    before = _evaluated_kid(model)
    if how != "checkpoint":
        path = tmp_path / ("w.kilnet" if how == "load_weights" else "w.weights.h5")
        source.save_weights(path)
        model.load_weights(path)
    else:
        _evaluated_kid(source)   # gives the source its training state
        tensors = checkpoint.capture_state(source.compiled)
        checkpoint.restore_state(model.compiled, checkpoint.Checkpoint("c", {}, tensors))
    expected = _evaluated_kid(source)
    assert abs(before - expected) > 1e-3 * abs(expected)
    np.testing.assert_allclose(_evaluated_kid(model), expected, rtol=1e-5)


def test_a_refused_checkpoint_leaves_the_training_state_as_it_was(tmp_path):
    source, model = _model(kilnet, seed=26), _model(kilnet, seed=27)
    for m in (source, model):
        m.compile(optimizer="adam", loss="mse")
        m.evaluate(X, X, verbose=0)
    tensors = checkpoint.capture_state(source.compiled)
    del tensors["held/params/kid/encoder/conv/kernel"]
    params_before = [np.asarray(w) for w in model.get_weights()]
    with pytest.raises(kilnet.errors.CheckpointMismatchError, match="conv/kernel"):
        checkpoint.restore_state(model.compiled, checkpoint.Checkpoint("c", {}, tensors))
    for a, b in zip(model.get_weights(), params_before):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b)
                   for a, b in zip(source.get_weights(), params_before))


def test_a_checkpoint_without_held_arrays_resumes_with_a_warning(tmp_path):
    source, model = _model(kilnet, seed=28), _model(kilnet, seed=29)
    for m in (source, model):
        m.compile(optimizer="adam", loss="mse")
        m.evaluate(X, X, verbose=0)
    earlier = {n: a for n, a in checkpoint.capture_state(source.compiled).items()
               if not n.startswith("held/")}
    held_before = _held_weights(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checkpoint.restore_state(model.compiled, checkpoint.Checkpoint("c", {}, earlier))
    assert any("metrics hold" in str(w.message) for w in caught)
    for a, b in zip(_held_weights(model), held_before):
        np.testing.assert_array_equal(a, b)


def test_a_list_holding_itself_next_to_a_metric_is_saved(tmp_path):
    model, other = _model(kilnet, seed=30), _model(kilnet, seed=31)
    for m in (model, other):
        loop = [m.kid]
        loop.append(loop)
        m.kid.loop = loop
    model.save_weights(tmp_path / "w.kilnet")
    other.load_weights(tmp_path / "w.kilnet")
    _assert_same_held_weights(other, model)
    model.save_weights(tmp_path / "w.weights.h5")
    model.compile(optimizer="adam", loss="mse")
    model.evaluate(X, X, verbose=0)
    assert "held/params/kid/encoder/conv/kernel" in checkpoint.capture_state(model.compiled)


def test_an_unnamed_metric_takes_the_first_number_as_in_keras():
    """Importing kilnet and its saving modules makes no numbered metric: the first Metric()
    of a process is `metric`, as Keras's."""
    import subprocess
    import sys
    code = ("import {0}, {0}.saving; {1}; print({0}.metrics.Metric().name)")
    env = dict(os.environ, KERAS_BACKEND="jax")
    names = [subprocess.run([sys.executable, "-c", code.format(lib, setup)], env=env, check=True,
                            capture_output=True, text=True).stdout.split()[-1]
             for lib, setup in (("kilnet", "import kilnet.checkpoint, kilnet.keras_files"),
                                ("keras", "pass"))]
    assert names == ["metric", "metric"]


def test_a_metric_reached_through_kilnets_bookkeeping_keeps_its_held_names():
    # names follow the attribute of yours that keeps the metric: one that kilnet's own
    # bookkeeping on every layer also reaches (first, in attribute order) names nothing
    from kilnet import _metric_held_layers

    class Kid(kilnet.metrics.Metric):
        def __init__(self):
            super().__init__(name="kid")
            self.encoder = kilnet.Sequential([kilnet.Input((2,)),
                                              kilnet.layers.Dense(1, name="d")])

    class Net(kilnet.Model):
        def __init__(self):
            super().__init__()
            self.dense = kilnet.layers.Dense(1)
            self.kid = Kid()

        def call(self, x):
            return self.dense(x)

    net = Net()
    plain = [path for path, _ in _metric_held_layers.held_layers(net)]
    # (the weight lists and sub-layers are read as such by the walk itself: left as they are)
    bookkeeping = sorted(_metric_held_layers.layer_base_attributes() - {
        "_held_metrics", "_trainable_vars", "_non_trainable_vars", "_sublayers"})
    assert bookkeeping and all(name in vars(net) for name in bookkeeping)
    for name in bookkeeping:   # each bookkeeping attribute holding the metric, in turn
        kept = vars(net)[name]
        vars(net)[name] = [net.kid]
        try:
            assert [path for path, _ in _metric_held_layers.held_layers(net)] == plain, name
        finally:
            vars(net)[name] = kept
    assert plain == [("kid", "encoder")]
