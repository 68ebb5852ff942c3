"""The same model in Keras and in kilnet with the same float weights, and the check that
their quantized weights agree: shared by the quantization tests (int8, int4)."""

import numpy as np


def twins(keras, kilnet, build, seed=0, scale=0.3):
    """(Keras model, kilnet model) of `build(lib)`, with the same random float weights."""
    keras.backend.clear_session()   # Keras numbers unnamed layers per session
    km, nm = build(keras), build(kilnet)
    rng = np.random.default_rng(seed)
    weights = [(rng.normal(size=w.shape) * scale).astype("float32") for w in km.get_weights()]
    km.set_weights(weights)
    nm.set_weights(weights)
    return km, nm


def assert_same_weights(km, nm):
    """The two models' weights have the same paths, dtypes, shapes and values."""
    # paths without the outer layer's name, which Keras numbers per process
    assert [(w.path.split("/")[1:], np.dtype(w.dtype).name, tuple(w.shape))
            for w in km.weights] == [
        (w.path.split("/")[1:], w.dtype.name, w.shape) for w in nm.weights]
    for kw, nw in zip(km.weights, nm.weights):
        np.testing.assert_array_equal(np.asarray(kw), nw.numpy(), err_msg=kw.path)


def dense_built_with_policy(keras, kilnet, policy, input_dim):
    """A kilnet Dense(3) built with the quantized `policy`, checked to have the weights
    (names, dtypes, shapes) Keras's Dense builds with it."""
    dense = kilnet.layers.Dense(3, dtype=policy)
    dense.build((None, input_dim))
    keras_dense = keras.layers.Dense(3, dtype=policy)
    keras_dense.build((None, input_dim))
    assert [(w.name, w.dtype.name, w.shape) for w in dense.weights] == [
        (w.name, w.dtype, tuple(w.shape)) for w in keras_dense.weights]
    return dense
