"""Optimizers a model or its layers keep as attributes (a GAN's two, a block's own) in kilnet's
own `.kilnet` files: their state (step count, learning rate, moments) is kept, so that a model
loaded from the file goes on training from where the original was, as the original would."""

import warnings

import numpy as np
import pytest

import kilnet

X = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")


class Block(kilnet.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = kilnet.layers.Dense(3, name="block_dense")
        self.opt = kilnet.optimizers.SGD(0.1, momentum=0.9, name="block_sgd")

    def call(self, x):
        return self.dense(x)


class TwoOptimizers(kilnet.Model):
    """A GAN's layout: two networks, an optimizer for each kept as an attribute, and a
    block holding an optimizer of its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.generator = kilnet.layers.Dense(3, name="generator")
        self.block = Block(name="block")
        self.discriminator = kilnet.layers.Dense(1, name="discriminator")
        self.g_optimizer = kilnet.optimizers.Adam(1e-2, name="g_adam")
        self.d_optimizer = kilnet.optimizers.Adam(2e-2, beta_1=0.5, name="d_adam")

    def call(self, x):
        return self.discriminator(self.block(self.generator(x)))


CUSTOM = {"TwoOptimizers": TwoOptimizers, "Block": Block}


def one_step_each(model, scale):
    for optimizer, layer in ((model.g_optimizer, model.generator),
                             (model.d_optimizer, model.discriminator),
                             (model.block.opt, model.block)):
        variables = layer.trainable_variables
        grads = [np.full(v.shape, scale, "float32") * (1 + np.arange(int(np.prod(v.shape))).reshape(v.shape))
                 for v in variables]
        optimizer.apply_gradients(zip(grads, variables))


def optimizer_states(model):
    return [[np.asarray(v.numpy()) for v in optimizer.variables]
            for optimizer in (model.g_optimizer, model.d_optimizer, model.block.opt)]


def trained_model():
    model = TwoOptimizers(name="two")
    model(X)
    for scale in (0.5, -0.25, 0.125):
        one_step_each(model, scale)
    return model


def test_a_loaded_model_goes_on_from_its_held_optimizers_state(tmp_path):
    model = trained_model()
    model.save(tmp_path / "m.kilnet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is skipped
        loaded = kilnet.models.load_model(tmp_path / "m.kilnet", custom_objects=CUSTOM)
    for model_ in (model, loaded):
        one_step_each(model_, 0.3)
    for got, want in zip(optimizer_states(loaded), optimizer_states(model)):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    assert int(loaded.d_optimizer.iterations.numpy()) == 4
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6)
    model.save(tmp_path / "no_optimizer.kilnet", include_optimizer=False)   # nothing kept
    bare = kilnet.models.load_model(tmp_path / "no_optimizer.kilnet", custom_objects=CUSTOM)
    one_step_each(bare, 0.3)
    assert int(bare.g_optimizer.iterations.numpy()) == 1


def test_an_optimizer_built_after_loading_takes_its_saved_state(tmp_path):
    model = trained_model()
    model.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet", custom_objects=CUSTOM)
    loaded.g_optimizer.build(loaded.generator.trainable_variables)
    for got, want in zip(optimizer_states(loaded)[0], optimizer_states(model)[0]):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_state_for_optimizers_the_model_does_not_keep_is_skipped_with_a_warning(tmp_path):
    model = trained_model()
    model.save(tmp_path / "m.kilnet")

    class Plain(TwoOptimizers):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            del self.d_optimizer

    with pytest.warns(UserWarning, match=r"heldopt/d_optimizer.*does not keep"):
        loaded = kilnet.models.load_model(tmp_path / "m.kilnet",
                                          custom_objects={**CUSTOM, "TwoOptimizers": Plain})
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6)
