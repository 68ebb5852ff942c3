"""Keras's functional models reshape inputs one axis off the declared rank when the odd axis
has size 1 (keras.io's Siamese example feeds (n, 28, 28) images to Input((28, 28, 1))): fit,
evaluate, predict and a direct call give Keras's numbers from the same weights."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("declared, data", [((4, 4, 1), (12, 4, 4)), ((5,), (12, 5, 1))])
def test_one_axis_of_size_one_is_added_or_dropped_as_keras(declared, data):
    x = RNG.random(data).astype("float32")
    y = RNG.random((12, 1)).astype("float32")
    results = []
    weights = None
    for lib in (keras, kilnet):
        inputs = lib.Input(declared)
        model = lib.Model(inputs, lib.layers.Dense(1)(lib.layers.Flatten()(inputs)))
        if weights is None:
            weights = model.get_weights()
        model.set_weights(weights)
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        results.append((history.history["loss"], model.evaluate(x, y, verbose=0),
                        model.predict(x, verbose=0), np.asarray(model(x))))
    for mine, theirs in zip(results[1], results[0]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_other_shapes_are_still_refused_with_the_fix():
    inputs = kilnet.Input((4, 4, 2))
    model = kilnet.Model(inputs, kilnet.layers.Flatten()(inputs))
    with pytest.raises(kilnet.errors.InputError, match="Received: x.shape=\\(3, 4, 4\\)"):
        model.predict(np.zeros((3, 4, 4), "float32"), verbose=0)


def _scalar_inputs_model(lib):
    """keras.io's GRN/VSN example: every input a batch of scalars, Input(shape=())."""
    num = lib.Input(name="age", shape=(), dtype="float32")
    cat = lib.Input(name="sex", shape=(), dtype="int32")
    x = lib.layers.concatenate([lib.layers.Dense(4)(lib.ops.expand_dims(num, -1)),
                                lib.layers.Embedding(2, 4)(cat)])
    return lib.Model({"age": num, "sex": cat}, lib.layers.Dense(1, activation="sigmoid")(x))


def test_inputs_of_scalars_train_predict_and_summarise_as_keras():
    x = {"age": RNG.random(24).astype("float32"), "sex": RNG.integers(0, 2, 24).astype("int32")}
    y = RNG.integers(0, 2, 24).astype("float32")
    results, weights = [], None
    for lib in (keras, kilnet):
        model = _scalar_inputs_model(lib)
        weights = weights or model.get_weights()
        model.set_weights(weights)
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="binary_crossentropy")
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        lines = []
        model.summary(print_fn=lambda line, **_: lines.append(line))
        age_row = next(row for row in "\n".join(lines).splitlines() if "age (InputLayer)" in row)
        results.append((history.history["loss"], model.evaluate(x, y, verbose=0),
                        model.predict(x, verbose=0), age_row.split("│")[2].strip(),
                        model.input_shape))
    ours, theirs = results[1], results[0]
    for mine, reference in zip(ours[:3], theirs[:3]):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)
    assert ours[3:] == theirs[3:] == ("(None)", [(None,), (None,)])


def test_a_scalar_input_goes_through_a_sequential_and_a_keras_file(tmp_path):
    model = kilnet.Sequential([kilnet.Input(shape=()), kilnet.layers.Reshape((1,)),
                               kilnet.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    x = RNG.random(5).astype("float32")
    assert theirs.input_shape == model.input_shape == (None,)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
