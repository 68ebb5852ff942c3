"""Optimizers a model keeps as attributes (the GAN pattern: `self.d_optimizer = Adam(...)` in
a compile() of yours) in Keras weights files, against Keras itself: Keras writes them under
the attribute's name (`d_optimizer/vars/0` the step count, `vars/1` the learning rate, then
the slots); kilnet reads such files, restoring what its optimizers hold, and writes them as
Keras does."""

import os
import warnings

import h5py
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="the reference files are Keras's")

import kilnet  # noqa: E402

X = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")


def gan_of(lib, d_rate=2e-4, g_rate=1e-3):
    """Two networks and an optimizer for each, kept as attributes by compile(), as keras.io's
    DCGAN (overriding train_step) and CycleGAN examples keep them."""
    class Gan(lib.Model):
        def __init__(self):
            super().__init__(name="gan")
            self.discriminator = lib.Sequential(
                [lib.Input((3,)), lib.layers.Dense(1, name="d_dense")], name="discriminator")
            self.generator = lib.Sequential(
                [lib.Input((3,)), lib.layers.Dense(3, name="g_dense")], name="generator")

        def compile(self, d_optimizer, g_optimizer):
            super().compile()
            self.d_optimizer = d_optimizer
            self.g_optimizer = g_optimizer

    model = Gan()
    model.compile(lib.optimizers.Adam(d_rate, beta_1=0.5, name="d_adam"),
                  lib.optimizers.Adam(g_rate, beta_1=0.5, name="g_adam"))
    model.built = True
    return model


def datasets(path):
    found = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def test_a_keras_file_with_optimizers_as_attributes_loads(tmp_path):
    keras.backend.clear_session()
    theirs = gan_of(keras, d_rate=3e-4, g_rate=5e-4)
    theirs.save_weights(tmp_path / "k.weights.h5")
    assert {"d_optimizer/vars/1", "g_optimizer/vars/1"} <= set(datasets(tmp_path / "k.weights.h5"))
    mine = gan_of(kilnet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is skipped
        mine.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(mine.generator.predict(X, verbose=0),
                               theirs.generator.predict(X, verbose=0), rtol=1e-6)
    # optimizers not yet built: the file's learning rates, as Keras's optimizers take them
    assert float(mine.d_optimizer.learning_rate) == pytest.approx(3e-4)
    assert float(mine.g_optimizer.learning_rate) == pytest.approx(5e-4)


def test_kilnet_writes_optimizers_as_attributes_as_keras_does(tmp_path):
    keras.backend.clear_session()
    theirs = gan_of(keras)
    mine = gan_of(kilnet)
    mine.set_weights(theirs.get_weights())
    theirs.save_weights(tmp_path / "k.weights.h5")
    mine.save_weights(tmp_path / "m.weights.h5")
    expected, written = datasets(tmp_path / "k.weights.h5"), datasets(tmp_path / "m.weights.h5")
    assert sorted(written) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(written[name], expected[name], rtol=1e-6, err_msg=name)
    with h5py.File(tmp_path / "m.weights.h5") as f:
        assert f["d_optimizer/vars"].attrs["name"] == "d_adam"
    again = gan_of(keras, d_rate=0.1, g_rate=0.1)
    again.load_weights(tmp_path / "m.weights.h5")
    assert float(again.d_optimizer.learning_rate) == pytest.approx(2e-4)
    assert float(again.g_optimizer.learning_rate) == pytest.approx(1e-3)


def test_trained_optimizers_as_attributes_are_restored_or_skipped_with_a_warning(tmp_path):
    """Keras's file after its optimizers ran holds their slots. kilnet's optimizer not yet
    built skips them with a warning naming the arrays (Keras's unbuilt one skips them so too);
    a built one whose variables are Keras's list takes them."""
    keras.backend.clear_session()
    theirs = gan_of(keras)
    grads = [np.full(v.shape, 0.5, "float32") for v in theirs.generator.trainable_variables]
    theirs.g_optimizer.apply_gradients(zip(grads, theirs.generator.trainable_variables))
    theirs.save_weights(tmp_path / "k.weights.h5")
    stored = datasets(tmp_path / "k.weights.h5")
    assert "g_optimizer/vars/5" in stored   # step, rate, two slots for each of two weights

    fresh = gan_of(kilnet)
    with pytest.warns(UserWarning, match=r"optimizer 'g_optimizer' \(Adam\).*"
                                         r"'g_optimizer/vars/0'.*no variables yet"):
        fresh.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(fresh.generator.predict(X, verbose=0),
                               theirs.generator.predict(X, verbose=0), rtol=1e-6)

    built = gan_of(kilnet)
    built.g_optimizer.build(built.generator.trainable_variables)
    keras_layout = built.g_optimizer.variables[0].name == "iteration"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built.load_weights(tmp_path / "k.weights.h5")
    skipped = [str(w.message) for w in caught if "'g_optimizer'" in str(w.message)]
    if keras_layout:   # kilnet's optimizer variables are Keras's list: restored as they are
        assert not skipped
        for i, variable in enumerate(built.g_optimizer.variables):
            np.testing.assert_allclose(variable.numpy(), stored[f"g_optimizer/vars/{i}"],
                                       rtol=1e-6)
    else:
        assert len(skipped) == 1 and "another layout" in skipped[0]


def test_trained_optimizers_as_attributes_are_written_as_keras_writes_them(tmp_path):
    """After one update each from the same weights, kilnet's file holds Keras's state of the
    optimizer kept as an attribute where kilnet's optimizer variables are Keras's list (else
    it is left out with a warning, and Keras starts it afresh)."""
    keras.backend.clear_session()
    theirs, mine = gan_of(keras), gan_of(kilnet)
    mine.set_weights(theirs.get_weights())
    for model in (theirs, mine):
        variables = model.generator.trainable_variables
        grads = [np.full(v.shape, 0.5, "float32") for v in variables]
        model.g_optimizer.apply_gradients(zip(grads, variables))
    theirs.save_weights(tmp_path / "k.weights.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mine.save_weights(tmp_path / "m.weights.h5")
    expected, written = datasets(tmp_path / "k.weights.h5"), datasets(tmp_path / "m.weights.h5")
    if mine.g_optimizer.variables[0].name == "iteration":
        assert sorted(written) == sorted(expected)
        for name in expected:
            np.testing.assert_allclose(written[name], expected[name], rtol=1e-6, atol=1e-7,
                                       err_msg=name)
        again = gan_of(keras)
        again.g_optimizer.build(again.generator.trainable_variables)
        again.load_weights(tmp_path / "m.weights.h5")
        assert int(again.g_optimizer.iterations.numpy()) == 1
    else:
        assert not any(name.startswith("g_optimizer/") for name in written)
        assert any("'g_optimizer' (Adam) is left out" in str(w.message) for w in caught)


def callable_gan_of(lib):
    """A GAN model that can be called and configured, so that `.keras` files of it load: its
    optimizers are made by its compile(), which loading does not call."""
    class CallableGan(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.generator = lib.Sequential(
                [lib.Input((3,)), lib.layers.Dense(3, name="g_dense")], name="generator")

        def call(self, x):
            return self.generator(x)

        def compile(self, g_optimizer=None, **kwargs):
            super().compile(**kwargs)
            self.g_optimizer = g_optimizer

    model = CallableGan(name="gan")
    model.compile(lib.optimizers.Adam(2e-4, name="g_adam"))
    model(X)
    return model


def test_keras_model_files_holding_optimizers_as_attributes_load(tmp_path):
    """Keras writes the optimizers kept as attributes in `.keras` files too; loading makes
    the model without calling your compile(), so kilnet skips their arrays with a warning
    naming them (Keras's loading never reads them), and loads the rest."""
    keras.backend.clear_session()
    theirs, mine = callable_gan_of(keras), callable_gan_of(kilnet)
    mine.set_weights(theirs.get_weights())
    theirs.save(tmp_path / "k.keras")
    mine.save(tmp_path / "m.keras")
    for file in ("k.keras", "m.keras"):
        with pytest.warns(UserWarning, match=r"skipped the arrays \['g_optimizer/vars/0', "
                                             r"'g_optimizer/vars/1'\].*'g_optimizer'"):
            loaded = kilnet.models.load_model(tmp_path / file, custom_objects={
                "CallableGan": type(mine)})
        np.testing.assert_allclose(loaded.predict(X, verbose=0), theirs.predict(X, verbose=0),
                                   rtol=1e-6, err_msg=file)
    again = keras.models.load_model(tmp_path / "m.keras",
                                    custom_objects={"CallableGan": type(theirs)})
    np.testing.assert_allclose(again.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-6)


def nested_holders_of(lib):
    """An optimizer held by a layer of yours inside the model (`self.block.opt`) and one held
    by a sub-model (`self.sub.sopt`): Keras writes each in its holder's group."""
    class Block(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(2, name="block_dense")
            self.opt = lib.optimizers.Adam(0.01, name="block_adam")

        def call(self, x):
            return self.dense(x)

    class Holder(lib.Model):
        def __init__(self):
            super().__init__(name="holder")
            self.block = Block(name="block")
            self.sub = lib.Sequential([lib.Input((2,)), lib.layers.Dense(2, name="sub_dense")],
                                      name="sub")
            self.sub.sopt = lib.optimizers.SGD(0.1, momentum=0.9, name="sub_sgd")

        def call(self, x):
            return self.sub(self.block(x))

    model = Holder()
    model(X)
    return model


def step_nested_optimizers(model, scale):
    for optimizer, layer in ((model.block.opt, model.block), (model.sub.sopt, model.sub)):
        variables = layer.trainable_variables
        optimizer.build(variables)
        grads = [np.full(v.shape, scale, "float32") for v in variables]
        optimizer.apply_gradients(zip(grads, variables))


NESTED_GROUPS = ("block/opt/vars/", "layers/sequential/sopt/vars/")


def test_optimizers_held_by_nested_layers_are_written_where_keras_writes_them(tmp_path):
    keras.backend.clear_session()
    theirs, mine = nested_holders_of(keras), nested_holders_of(kilnet)
    mine.set_weights(theirs.get_weights())
    step_nested_optimizers(theirs, 0.5)
    step_nested_optimizers(mine, 0.5)
    theirs.save_weights(tmp_path / "k.weights.h5")
    mine.save_weights(tmp_path / "m.weights.h5")
    expected, written = datasets(tmp_path / "k.weights.h5"), datasets(tmp_path / "m.weights.h5")
    assert any(name.startswith(NESTED_GROUPS) for name in expected)
    assert sorted(written) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(written[name], expected[name], rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    again = nested_holders_of(keras)
    step_nested_optimizers(again, 0.0)   # built, so that Keras reads their whole state
    again.load_weights(tmp_path / "m.weights.h5")
    for ours, restored in ((mine.block.opt, again.block.opt), (mine.sub.sopt, again.sub.sopt)):
        for variable, keras_variable in zip(ours.variables, restored.variables):
            np.testing.assert_allclose(keras_variable.numpy(), variable.numpy(), rtol=1e-6)


def test_optimizers_held_by_nested_layers_are_restored_from_keras_files(tmp_path):
    keras.backend.clear_session()
    theirs = nested_holders_of(keras)
    step_nested_optimizers(theirs, 0.5)
    theirs.save_weights(tmp_path / "k.weights.h5")
    mine = nested_holders_of(kilnet)
    step_nested_optimizers(mine, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is skipped
        mine.load_weights(tmp_path / "k.weights.h5")
    for ours, keras_optimizer in ((mine.block.opt, theirs.block.opt),
                                  (mine.sub.sopt, theirs.sub.sopt)):
        assert len(ours.variables) == len(keras_optimizer.variables)
        for variable, keras_variable in zip(ours.variables, keras_optimizer.variables):
            np.testing.assert_allclose(variable.numpy(), keras_variable.numpy(), rtol=1e-6)
    np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-6)
