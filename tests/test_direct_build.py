"""`layer.build(input_shape)` called by you on a layer of yours, as Keras's tutorials do: the
layer is built afterwards (Keras's `built`), holds the weights its build made (and those of the
sub-layers its call uses), keeps them at its first call and inside a model, and trains.
Checked against Keras 3 on the same classes."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402


def _classes(lib):
    class WithSubLayers(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first, self.second = lib.layers.Dense(4), lib.layers.Dense(2)

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(2,), initializer="ones", name="scale")

        def call(self, x):
            return self.second(self.first(x)) * self.scale

    class BuildsItsSubLayer(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = lib.layers.Dense(3)

        def build(self, input_shape):
            self.inner.build(input_shape)
            self.offset = self.add_weight(shape=(3,), initializer="zeros", name="offset")

        def call(self, x):
            return self.inner(x) + self.offset

    class TwoTensors(lib.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

        def call(self, x, y):
            return x * self.w + y

    class Extended(TwoTensors):
        def build(self, input_shape):
            super().build(input_shape)
            self.b = self.add_weight(shape=(), initializer="zeros", name="b")

    return WithSubLayers, BuildsItsSubLayer, TwoTensors, Extended


X = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")


@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_a_layer_built_by_you_is_built_and_keeps_its_weights(which):
    shapes = {}
    for lib in (keras, kilnet):
        layer = _classes(lib)[which]()
        layer.build((None, 3))
        assert layer.built
        own = [tuple(v.shape) for v in layer.weights]
        before = layer.get_weights()
        layer(X) if which in (0, 1) else layer(X, X)
        after = layer.get_weights()
        for a, b in zip(before, after):   # the first call draws nothing new
            np.testing.assert_array_equal(a, b)
        shapes[lib] = own, [tuple(v.shape) for v in layer.weights]
    if which == 0:
        # Keras makes the sub-layers' weights at the first call, kilnet at build (one trace
        # of call): the same weights once called.
        assert shapes[kilnet][0] == shapes[keras][1]
    else:
        assert shapes[kilnet] == shapes[keras]


@pytest.mark.parametrize("which", [0, 1])
def test_a_layer_built_by_you_keeps_its_weights_in_a_model_and_trains(which):
    layer = _classes(kilnet)[which]()
    layer.build((None, 3))
    before = layer.get_weights()
    inputs = kilnet.Input((3,))
    model = kilnet.Model(inputs, layer(inputs))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, np.ones((5, 2 if which == 0 else 3)), epochs=2, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_sub_layer_built_inside_its_parents_build_draws_from_the_models_seed():
    layer = _classes(kilnet)[1]()
    model = kilnet.Sequential([kilnet.Input((3,)), layer])
    kernels = []
    for _ in range(2):
        model.build((None, 3), seed=7)
        kernels.append(layer.inner.kernel.numpy())
        kilnet.layers.Dense(2).build((None, 3))   # another draw in between
    np.testing.assert_array_equal(kernels[0], kernels[1])


def _shapeless(lib):
    """keras.io's GRN/VSN example: layers (and a model) whose build(self) takes no shape."""
    class GatedLinearUnit(lib.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.linear = lib.layers.Dense(units)
            self.sigmoid = lib.layers.Dense(units, activation="sigmoid")

        def call(self, inputs):
            return self.linear(inputs) * self.sigmoid(inputs)

        def build(self):
            self.built = True

    class Gated(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.glu, self.out = GatedLinearUnit(3), lib.layers.Dense(1)

        def call(self, x):
            return self.out(self.glu(x))

        def build(self):
            self.built = True

    return GatedLinearUnit, Gated


def test_a_build_without_a_shape_argument_runs_as_keras():
    x = np.linspace(-1, 1, 32, dtype="float32").reshape(4, 8)
    y = np.linspace(0, 1, 4, dtype="float32").reshape(4, 1)
    results = {}
    for lib in (keras, kilnet):
        glu_class, model_class = _shapeless(lib)
        inputs = lib.Input((8,))
        functional = lib.Model(inputs, lib.layers.Dense(1)(glu_class(4)(inputs)))
        glu = glu_class(2)
        eager = glu(x).shape, len(glu.weights)
        nested = glu_class(2)
        nested.build()   # by you: its sub-layers build at its first call
        subclassed = model_class()
        subclassed.compile(optimizer="sgd", loss="mse")
        subclassed.fit(x, y, epochs=1, verbose=0)
        results[lib.__name__] = (functional.count_params(), eager, tuple(nested(x).shape),
                                 len(nested.weights), subclassed.count_params(),
                                 subclassed.predict(x, verbose=0).shape)
    assert results["kilnet"] == results["keras"] == (77, ((4, 2), 4), (4, 2), 4, 58, (4, 1))


def test_the_functional_model_trains_as_keras_from_the_same_weights():
    x = np.linspace(-1, 1, 32, dtype="float32").reshape(4, 8)
    y = np.linspace(0, 1, 4, dtype="float32").reshape(4, 1)
    losses, weights = [], None
    for lib in (keras, kilnet):
        glu_class, _ = _shapeless(lib)
        inputs = lib.Input((8,))
        model = lib.Model(inputs, lib.layers.Dense(1)(glu_class(4)(inputs)))
        weights = weights or model.get_weights()
        model.set_weights(weights)
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        losses.append(model.fit(x, y, epochs=3, batch_size=4, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


def test_a_subclassed_models_build_with_a_shape_runs_inside_fit_as_keras():
    """fit builds through kilnet's build, with its seed; the model's own build(input_shape)
    runs inside it (fit refused it before: build() got an unexpected keyword 'seed')."""
    counts = []
    for lib in (keras, kilnet):
        class Builds(lib.Model):
            def __init__(self):
                super().__init__()
                self.hidden, self.out = lib.layers.Dense(3), lib.layers.Dense(1)

            def build(self, input_shape):
                self.hidden.build(input_shape)
                self.out.build((None, 3))
                self.built = True

            def call(self, x):
                return self.out(self.hidden(x))

        model = Builds()
        model.compile(optimizer="sgd", loss="mse")
        model.fit(np.ones((4, 5), "float32"), np.ones((4, 1), "float32"), verbose=0)
        direct = Builds()
        direct.build((None, 5))
        counts.append((model.count_params(), len(direct.weights)))
    assert counts[0] == counts[1] == (22, 4)
