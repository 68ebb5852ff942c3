"""A function or other callable as a layer's initializer (`Dense(4, kernel_initializer=lambda
shape, dtype=None: ...)`), an Initializer class or an array, as Keras's `initializers.get`
takes them: the layer starts from the values Keras's starts from; a function without `dtype`
is refused as Keras refuses it (Keras calls `f(shape, dtype=...)`), with the fix. Functions as
regularizers and constraints give Keras's penalties and weights. Saving such a layer is
refused with the reason (Keras writes the function but cannot load it back in safe mode).
"""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402


def ramp(shape, dtype=None):
    return np.arange(np.prod(shape), dtype=dtype or "float32").reshape(shape) / 10


class Scaled:
    """A callable that is no Initializer subclass."""

    def __call__(self, shape, dtype=None):
        return 0.5 * ramp(shape, dtype)


def shape_only(shape):
    return np.ones(shape, "float32")


INITIALIZERS = {
    "function": lambda lib: ramp,
    "lambda": lambda lib: (lambda shape, dtype=None: np.full(shape, 0.3, dtype or "float32")),
    "callable object": lambda lib: Scaled(),
    "Initializer class": lambda lib: lib.initializers.Ones,
    "array": lambda lib: np.linspace(-1, 1, 12).reshape(3, 4),
}


def built_dense(lib, **kwargs):
    layer = lib.layers.Dense(4, name="d", **kwargs)
    layer.build((None, 3))
    return layer


@pytest.mark.parametrize("given", sorted(INITIALIZERS))
def test_a_layer_starts_from_keras_values(given):
    ours = built_dense(kilnet, kernel_initializer=INITIALIZERS[given](kilnet),
                       bias_initializer=INITIALIZERS[given](kilnet) if given != "array" else "ones")
    theirs = built_dense(keras, kernel_initializer=INITIALIZERS[given](keras),
                         bias_initializer=INITIALIZERS[given](keras) if given != "array" else "ones")
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-6)


def test_get_keeps_a_function_and_the_layer_holds_it():
    assert kilnet.initializers.get(ramp) is keras.initializers.get(ramp) is ramp
    assert built_dense(kilnet, kernel_initializer=ramp).kernel_initializer is ramp


def test_a_function_without_dtype_is_refused_as_in_keras():
    with pytest.raises(TypeError, match="dtype"):
        built_dense(keras, kernel_initializer=shape_only)
    with pytest.raises(TypeError, match=r"def f\(shape, dtype=None\)"):
        built_dense(kilnet, kernel_initializer=shape_only)


def test_an_array_of_another_shape_is_refused_as_in_keras():
    wrong = np.ones((3, 5))
    with pytest.raises(ValueError, match="Expected `shape` to be"):
        built_dense(keras, kernel_initializer=wrong)
    with pytest.raises(ValueError, match="Expected `shape` to be"):
        built_dense(kilnet, kernel_initializer=wrong)


def twin(lib, **kwargs):
    inputs = lib.Input((3,), name="x")
    outputs = lib.layers.Dense(4, name="d", kernel_initializer=ramp, **kwargs)(inputs)
    return lib.Model(inputs, outputs, name="m")


def test_function_regularizers_and_constraints_as_keras():
    x, y = np.linspace(-1, 1, 12).reshape(4, 3), np.ones((4, 4))
    results = {}
    for lib in (kilnet, keras):
        model = twin(lib, kernel_regularizer=lambda w: 0.1 * lib.ops.sum(lib.ops.abs(w)),
                     activity_regularizer=lambda a: 0.01 * lib.ops.sum(a),
                     kernel_constraint=lambda w: lib.ops.clip(w, -0.1, 0.6))
        model(x)
        penalties = sorted(float(p) for p in model.losses)
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        loss = model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]
        results[lib] = penalties, loss, model.get_weights()
    np.testing.assert_allclose(results[kilnet][0], results[keras][0], rtol=1e-6)
    np.testing.assert_allclose(results[kilnet][1], results[keras][1], rtol=1e-5)
    for mine, keras_weight in zip(results[kilnet][2], results[keras][2]):
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("extension", ["keras", "kilnet"])
def test_saving_a_function_initializer_says_why(tmp_path, extension):
    # Keras writes a registered function by name; kilnet refuses any, saying what to write
    with pytest.raises(TypeError, match="'ramp' cannot be saved.*Initializer subclass"):
        twin(kilnet).save(tmp_path / f"m.{extension}")


class Holder:
    """A layer of yours making its weight with add_weight, as Keras's guides write one."""

    @staticmethod
    def make(lib, initializer):
        class Hold(lib.layers.Layer):
            def build(self, input_shape):
                self.w = self.add_weight(shape=(input_shape[-1], 2), initializer=initializer)

            def call(self, x):
                return x @ self.w

        return Hold()


@pytest.mark.parametrize("given", sorted(INITIALIZERS))
def test_add_weight_takes_what_a_built_in_layer_takes(given):
    x = np.ones((1, 3), "float32")
    ours = Holder.make(kilnet, INITIALIZERS[given](kilnet) if given != "array" else ramp)
    theirs = Holder.make(keras, INITIALIZERS[given](keras) if given != "array" else ramp)
    np.testing.assert_allclose(np.asarray(ours(x)), keras.ops.convert_to_numpy(theirs(x)),
                               rtol=1e-6)


def test_add_weight_refuses_a_function_without_dtype_with_the_fix():
    with pytest.raises(TypeError, match=r"def f\(shape, dtype=None\)"):
        Holder.make(kilnet, shape_only)(np.ones((1, 3), "float32"))


def test_an_error_raised_inside_a_function_is_its_own():
    def broken(shape, dtype=None):
        raise TypeError("unsupported dtype for this draw")

    with pytest.raises(TypeError, match="unsupported dtype for this draw"):
        kilnet.layers.Dense(2, kernel_initializer=broken)(np.ones((1, 3), "float32"))


def test_a_metric_variable_takes_an_initializer_class_as_keras():
    def make(lib):
        class Count(lib.metrics.Metric):
            def __init__(self):
                super().__init__(name="count_up")
                self.total = self.add_variable(shape=(2,), initializer=lib.initializers.Ones,
                                               name="total")

            def update_state(self, values):
                self.total.assign(self.total + values)

            def result(self):
                return self.total

        return Count()

    ours, theirs = make(kilnet), make(keras)
    ours.update_state(np.array([1.0, 2.0], "float32"))
    theirs.update_state(np.array([1.0, 2.0], "float32"))
    np.testing.assert_array_equal(np.asarray(ours.result()),
                                  keras.ops.convert_to_numpy(theirs.result()))
