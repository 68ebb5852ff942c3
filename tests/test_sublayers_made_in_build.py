"""A layer whose build() makes its sub-layers (keras.io's Involution makes its kernel
generator, a Sequential, there): kilnet runs build() again when it draws the weights anew (the
trial build for the output shape, a model's build with a seed), and each run makes new
sub-layers. The model holds only the last ones, with Keras's weights, paths and counts."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402


def _model(lib):
    class KernelGenerator(lib.layers.Layer):
        def build(self, input_shape):
            self.generator = lib.Sequential([
                lib.layers.Conv2D(1, 1), lib.layers.BatchNormalization(),
                lib.layers.Conv2D(9, 1)])

        def call(self, x):
            return self.generator(x)

    inputs = lib.Input(shape=(8, 8, 3))
    hidden = KernelGenerator(name="involution")(inputs)
    return lib.Model(inputs, lib.layers.Dense(2)(lib.layers.Flatten()(hidden)))


def _summary(model):
    return model.count_params(), [w.path for w in model.weights]


def test_after_fit_the_model_holds_one_generator_as_keras():
    x, y = np.ones((4, 8, 8, 3), "float32"), np.ones((4, 2), "float32")
    for lib in (kilnet, keras):   # Keras names layers per process: start both afresh
        lib.utils.clear_session()
    ours, theirs = _model(kilnet), _model(keras)
    assert _summary(ours) == _summary(theirs)
    for model in (ours, theirs):
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, batch_size=4, verbose=0)
    assert _summary(ours) == _summary(theirs)
    assert len(ours.weights) == 10


def test_a_new_seed_leaves_no_orphaned_copy():
    model = _model(kilnet)
    before = _summary(model)
    for seed in (1, 2):
        model.build(seed=seed)
    assert _summary(model) == before
    layer = model.get_layer("involution")
    assert [sub.name for sub in layer.sublayers] == ["sequential"]
    assert layer.generator is layer.sublayers[0]
