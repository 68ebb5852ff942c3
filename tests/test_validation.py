"""Input checks (kilnet.validation): each mistake gets its own clear error before compiling.

Most tests need no compiled program: the checks raise first. The few that train share sizes
(8 samples of 4 features, batch 4) so each program compiles once per model.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import kilnet
from kilnet import layers, losses, validation
from kilnet.errors import InputError, InputTypeError, InputWarning, KilnetError, NonFiniteError

N = 8
X = np.random.default_rng(0).uniform(-1, 1, (N, 4)).astype(np.float32)
Y = (np.arange(N) % 3).astype(np.int64)


def classifier(units=3, activation="softmax", loss="sparse_categorical_crossentropy",
               input_shape=(4,), first=()):
    """A tiny model; without input_shape it stays unbuilt until fit sees data (cheap)."""
    kwargs = {} if input_shape is None else {"input_shape": input_shape}
    stack = list(first) + [layers.Dense(units, activation=activation,
                                        **({} if first else kwargs))]
    model = kilnet.Sequential(stack)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def model():
    """One compiled classifier shared by the tests that reach training."""
    return classifier()


def fit(model, x=X, y=Y, **kwargs):
    kwargs = {"batch_size": 4, "epochs": 1, "verbose": 0, **kwargs}
    return model.fit(x, y, **kwargs)


# -- arguments ----------------------------------------------------------------------------------
def test_errors_are_value_and_type_errors():
    assert issubclass(InputError, ValueError) and issubclass(InputError, KilnetError)
    assert issubclass(InputTypeError, TypeError) and issubclass(InputTypeError, KilnetError)
    assert set(validation.DOCUMENTED_ERRORS) == {InputError, InputTypeError, NonFiniteError}


def test_lengths_differ(model):
    with pytest.raises(InputError, match=r"same number of samples.*x with 8 samples.*y with 7"):
        fit(model, y=Y[:7])
    with pytest.raises(InputError, match=r"x and y must have the same number"):
        model.evaluate(X, Y[:3], verbose=0)


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_empty_data(model, call):
    empty = np.zeros((0, 4), np.float32)
    with pytest.raises(InputError, match=r"x is empty.*Received: x.shape=\(0, 4\)"):
        if call == "predict":
            model.predict(empty, verbose=0)
        else:
            getattr(model, call)(empty, Y[:0], verbose=0)


@pytest.mark.parametrize("split", [1.0, -0.1, 1.5, "0.2", True, None])
def test_validation_split_outside_range(model, split):
    with pytest.raises(InputError, match=r"validation_split must be a number in \[0, 1\)"):
        fit(model, validation_split=split)


def test_validation_split_leaving_no_sample(model):
    # Keras's split point floor(n * (1 - split)) always holds out a sample for a split in
    # (0, 1); it can leave no training sample.
    with pytest.raises(InputError, match=r"validation_split=0.9 leaves 0 training and 8 "
                                         r"validation samples out of 8"):
        fit(model, validation_split=0.9)
    with pytest.raises(InputError, match=r"leaves 0 training and 1 validation"):
        fit(model, x=X[:1], y=Y[:1], validation_split=0.5)


@pytest.mark.parametrize("n, split", [(256, 0.2), (8, 0.05), (1000, 0.15), (7, 1 / 3)])
def test_validation_split_holds_out_the_rows_keras_holds_out(n, split):
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")   # as every Keras check of the suite
    pytest.importorskip("keras")
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split

    from kilnet import data
    x = np.arange(n, dtype=np.float32)[:, None]
    theirs = train_validation_split((x,), validation_split=split)[1][0]
    (_, _), (ours, _) = data.split_validation(x, x, split)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "32"])
def test_batch_size_below_one(model, batch_size):
    with pytest.raises(InputError, match=r"batch_size must be a positive integer.*Received: "
                                         r"batch_size="):
        fit(model, batch_size=batch_size)
    with pytest.raises(InputError, match="batch_size"):
        model.predict(X, batch_size=batch_size, verbose=0)


@pytest.mark.parametrize("epochs", [-1, 1.5, None])
def test_epochs_negative(model, epochs):
    with pytest.raises(InputError, match=r"epochs must be a non-negative integer.*Received: "
                                         r"epochs="):
        fit(model, epochs=epochs)


def test_initial_epoch_negative(model):
    with pytest.raises(InputError, match="initial_epoch"):
        fit(model, initial_epoch=-2)


def test_batch_size_larger_than_data_warns_and_uses_one_batch():
    model = classifier()
    with pytest.warns(InputWarning, match=r"batch_size=100 is larger than the 8 training "
                                          r"samples; using one full batch of 8"):
        history = fit(model, batch_size=100)
    assert np.isfinite(history.history["loss"][0])
    assert model.compile_report.programs[-1]["name"].endswith("batch 8)")


def test_validation_data_malformed(model):
    with pytest.raises(InputError, match=r"validation_data must be a tuple \(x_val, y_val\)"):
        fit(model, validation_data=(X, Y, Y, Y))
    with pytest.raises(InputError, match=r"validation_data\[2\] must hold one weight per "):
        fit(model, validation_data=(X, Y, np.ones(3)))
    with pytest.raises(InputError, match=r"validation_data\[0\] has samples of shape \(5,\)"):
        fit(model, validation_data=(np.zeros((2, 5)), Y[:2]))
    with pytest.raises(InputError, match=r"validation_data\[1\] has class ids up to 7"):
        fit(model, validation_data=(X[:2], np.array([0, 7])))


# -- arrays ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, words", [
    (X.astype(str), "holds strings"),
    (X.astype(object), "holds Python objects"),
    (X.astype(np.complex64), "holds complex numbers"),
])
def test_non_numeric_x(model, bad, words):
    with pytest.raises(InputTypeError, match=rf"x must hold numbers.*{words}.*dtype="):
        fit(model, x=bad)
    with pytest.raises(InputTypeError, match=words):
        model.predict(bad, verbose=0)


def test_non_numeric_y_and_unconvertible(model):
    with pytest.raises(InputTypeError, match=r"y must hold numbers.*strings"):
        fit(model, y=np.array(["cat", "dog"] * 4))
    with pytest.raises(InputError, match=r"x must be an array of numbers"):
        fit(model, x=[[1.0, 2.0], [3.0]], y=Y[:2])  # ragged
    with pytest.raises(InputError, match="y is required"):
        fit(model, y=None)


def test_x_shape_mismatch(model):
    with pytest.raises(InputError, match=r"samples of shape \(5,\) but the model expects "
                                         r"\(4,\).*input_shape.*Received: x.shape=\(8, 5\)"):
        fit(model, x=np.zeros((N, 5), np.float32))
    with pytest.raises(InputError, match=r"shape \(2, 2\) but the model expects \(4,\).*"
                                         r"Flatten or Reshape"):
        model.predict(X.reshape(N, 2, 2), verbose=0)
    # one axis short of a last axis of size 1: Keras's functional models add it, as kilnet
    model = classifier(first=[layers.Flatten(input_shape=(4, 1))])
    np.testing.assert_array_equal(model.predict(X, verbose=0),
                                  model.predict(X[..., None], verbose=0))


# -- labels, after the model is built (also when it is built by fit from x's shape) ---------------
@pytest.mark.parametrize("built", [True, False])
def test_sparse_labels_out_of_range(built):
    model = classifier(input_shape=(4,) if built else None)
    with pytest.raises(InputError, match=r"y has class ids up to 5 but the model's last layer "
                                         r"has 3 units.*Dense\(6\).*Received: y\[3\]=5"):
        fit(model, y=np.array([0, 1, 2, 5, 1, 0, 5, 2]))
    assert model.compile_report.programs == []  # nothing was compiled


def test_sparse_labels_one_based():
    with pytest.raises(InputError, match=r"look 1-based: subtract 1"):
        fit(classifier(input_shape=None), y=Y + 1)


def test_sparse_labels_negative():
    with pytest.raises(InputError, match=r"class ids from 0 to 2.*negative.*Received: y\[2\]=-1"):
        fit(classifier(input_shape=None), y=np.array([0, 1, -1, 2, 0, 1, 2, 0]))


def test_sparse_labels_fractional():
    y = Y.astype(np.float32)
    y[5] = 1.5
    with pytest.raises(InputError, match=r"integer class ids.*fractional part.*Received: "
                                         r"y\[5\]=1.5"):
        fit(classifier(input_shape=None), y=y)


def test_sparse_labels_integral_floats_train(model):
    history = fit(model, y=Y.astype(np.float64))
    assert np.isfinite(history.history["loss"][0])


def test_one_hot_labels_to_sparse_loss():
    with pytest.raises(InputError, match=r"y looks one-hot.*categorical_crossentropy"):
        fit(classifier(input_shape=None), y=np.eye(3)[Y])


def test_last_layer_of_one_unit_for_sparse_labels():
    with pytest.raises(InputError, match=r"1 unit can only predict class 0.*sigmoid"):
        fit(classifier(units=1, activation="sigmoid", input_shape=None), y=Y % 2)


def test_integer_labels_to_categorical_loss():
    model = classifier(loss="categorical_crossentropy", input_shape=None)
    with pytest.raises(InputError, match=r"one class id per sample.*"
                                         r"sparse_categorical_crossentropy"):
        fit(model, y=Y)


def test_categorical_width_mismatch():
    model = classifier(loss="categorical_crossentropy", input_shape=None)
    with pytest.raises(InputError, match=r"y has 5 classes.*last layer has 3 units.*Dense\(5\)"):
        fit(model, y=np.eye(5)[Y])


def test_categorical_labels_outside_unit_interval():
    model = classifier(loss="categorical_crossentropy", input_shape=None)
    with pytest.raises(InputError, match=r"values in \[0, 1\].*Received: y\[0, 0\]=2.0"):
        fit(model, y=2 * np.eye(3)[Y])


def test_binary_labels_outside_unit_interval():
    model = classifier(units=1, activation="sigmoid", loss="binary_crossentropy",
                       input_shape=None)
    with pytest.raises(InputError, match=r"values in \[0, 1\] for loss='binary_crossentropy'"
                                         r".*sparse_categorical_crossentropy.*Received: y\[2\]=2"):
        fit(model, y=Y)


def test_binary_loss_with_a_wide_last_layer():
    model = classifier(units=3, activation="sigmoid", loss="binary_crossentropy",
                       input_shape=None)
    with pytest.raises(InputError, match=r"last layer needs 1 unit \(Dense\(1, activation="
                                         r"'sigmoid'\)\)"):
        fit(model, y=Y % 2)


def test_regression_label_shape():
    model = classifier(units=2, activation=None, loss="mse", input_shape=None)
    with pytest.raises(InputError, match=r"must have the model's output shape, \(8, 2\).*"
                                         r"Dense\(3\)"):
        fit(model, y=np.zeros((N, 3)))


def test_evaluate_checks_labels_too(model):
    with pytest.raises(InputError, match=r"y has class ids up to 9"):
        model.evaluate(X, np.full(N, 9), verbose=0)


# -- NaN and infinity ----------------------------------------------------------------------------
def test_nan_in_x(model):
    x = X.copy()
    x[5, 2] = np.nan
    x[6, 0] = np.inf
    with pytest.raises(InputError, match=r"x contains 2 non-finite values \(1 NaN, 1 infinite\) "
                                         r"in 2 of its 8 samples.*nan_to_num.*Received: "
                                         r"x\[5, 2\]=nan"):
        fit(model, x=x)
    with pytest.raises(InputError, match=r"x contains 2 non-finite"):
        model.predict(x, verbose=0)
    with pytest.raises(InputError, match=r"validation_data\[0\] contains 2 non-finite"):
        fit(model, validation_data=(x, Y))


def test_inf_in_y():
    model = classifier(units=1, activation=None, loss="mse", input_shape=None)
    y = np.zeros(N, np.float32)
    y[3] = -np.inf
    with pytest.raises(InputError, match=r"y contains 1 non-finite.*Received: y\[3\]=-inf"):
        fit(model, y=y)


def test_float64_overflowing_float32(model):
    x = X.astype(np.float64)
    x[1, 1] = 1e300
    with pytest.raises(InputError, match=r"x is float64 and kilnet computes in float32"):
        fit(model, x=x)


def test_integers_beyond_int32(model):
    x = np.zeros((N, 4), np.int64)
    x[0, 0] = 2**40
    with pytest.raises(InputError, match=r"beyond the int32 range.*astype\('float32'\)"):
        model.predict(x, verbose=0)


# -- warnings -------------------------------------------------------------------------------------
def test_uint8_images_without_rescaling_warn_once_per_fit():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (N, 2, 2), dtype=np.uint8)
    model = classifier(input_shape=None, first=[layers.Flatten(input_shape=(2, 2))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(model, x=images, validation_data=(images, Y))
    ours = [w for w in caught if issubclass(w.category, InputWarning)]
    assert len(ours) == 1
    assert "x holds integer pixel values up to" in str(ours[0].message)
    assert "Divide by 255" in str(ours[0].message)
    assert "Rescaling(1 / 255)" in str(ours[0].message)
    assert ours[0].filename == __file__  # attributed to the caller's line
    assert np.isfinite(history.history["loss"][0])  # training continues

    rescaled = classifier(input_shape=None, first=[layers.Rescaling(1 / 255, input_shape=(2, 2)),
                                                   layers.Flatten()])
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        rescaled.predict(images, batch_size=4, verbose=0)


def _scaled_by_normalization():   # the ViT tutorial: an adapted Normalization, nested
    inputs = kilnet.Input((2, 2))
    prep = kilnet.Sequential([layers.Normalization(mean=100.0, variance=5000.0)], name="prep")
    return kilnet.Model(inputs, layers.Dense(3)(layers.Flatten()(prep(inputs))))


def _scaled_by_an_op():   # x / 255 written in the graph
    inputs = kilnet.Input((2, 2))
    return kilnet.Model(inputs, layers.Dense(3)(layers.Flatten()(inputs / 255.0)))


@pytest.mark.parametrize("make", [_scaled_by_normalization, _scaled_by_an_op])
def test_inputs_scaled_inside_the_model_do_not_warn(make):
    images = np.random.default_rng(2).integers(0, 256, (N, 2, 2), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        make().predict(images, batch_size=4, verbose=0)


def test_from_logits_with_softmax_warns():
    model = kilnet.Sequential([layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam",
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(InputWarning, match=r"from_logits=True but the last layer already applies "
                                          r"softmax.*Dense\(3\)"):
        fit(model)


def test_sigmoid_with_from_logits_and_softmax_on_one_unit_warn():
    sigmoid = kilnet.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(4,))])
    sigmoid.compile(optimizer="adam", loss=losses.BinaryCrossentropy(from_logits=True))
    with pytest.warns(InputWarning, match="already applies sigmoid"):
        validation.check_targets(sigmoid, sigmoid.compiled.objective, [Y % 2], y_names=["y"])
    one = kilnet.Sequential([layers.Dense(1, activation="softmax", input_shape=(4,))])
    one.compile(optimizer="adam", loss=losses.BinaryCrossentropy())
    with pytest.warns(InputWarning, match="softmax to a single unit"):
        validation.check_targets(one, one.compiled.objective, [Y % 2], y_names=["y"])


# -- property: any malformed input gets success or a documented error, never an internal one -------
_VALID_X_DTYPES = ["float32", "float64", "float16", "uint8", "int64", "int8", "bool"]


def _x_mutation(draw, x):
    kind = draw(st.sampled_from(["length", "shape", "dtype", "special", "pixels", "list", "odd"]))
    if kind == "length":
        return x[:draw(st.sampled_from([0, 5]))]
    if kind == "shape":
        return draw(st.sampled_from([x[:, :3], x[..., None], x[:, 0], x.reshape(6, 2, 2)]))
    if kind == "dtype":
        return x.astype(draw(st.sampled_from(["object", "str", "complex64"])))
    if kind == "special":
        x = x.astype(draw(st.sampled_from(["float32", "float64", "float16"])))  # copies
        value = np.float64(draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e39, 7e4, 3e38])))
        with np.errstate(over="ignore"):  # 1e39 in float32 is inf, as a user would get it
            x.flat[draw(st.integers(0, x.size - 1))] = value
        return x
    if kind == "pixels":
        return (np.abs(x.astype(np.float64)) * 255).astype(draw(st.sampled_from(["uint8", "int64", "float32"])))
    if kind == "list":
        return x.tolist()
    return draw(st.sampled_from([None, 3.0, [[1.0, 2.0], [3.0]], "abcdef", {"x": 1}]))


def _y_mutation(draw, y):
    kind = draw(st.sampled_from(["length", "one_hot", "shape", "range", "fraction", "special",
                                 "dtype", "odd"]))
    if kind == "length":
        return y[:draw(st.sampled_from([0, 5]))]
    if kind == "one_hot":
        return np.eye(draw(st.sampled_from([3, 4])))[y]
    if kind == "shape":
        return draw(st.sampled_from([y[:, None], np.stack([y] * 4, 1).reshape(6, 2, 2)]))
    if kind == "range":
        y = y.astype(np.int64)
        y[draw(st.integers(0, 5))] = draw(st.sampled_from([-1, 3, 2**40, -2**40]))
        return y
    if kind == "fraction":
        return y + draw(st.sampled_from([0.5, 1e-3, 0.0]))
    if kind == "special":
        y = y.astype(draw(st.sampled_from(["float32", "float64"])))
        with np.errstate(over="ignore"):
            y[draw(st.integers(0, 5))] = np.float64(draw(st.sampled_from([np.nan, np.inf, 1e39])))
        return y
    if kind == "dtype":
        return y.astype(draw(st.sampled_from(["object", "str", "bool", "float16", "uint8"])))
    return draw(st.sampled_from([None, 1, [0, 1, [2]], "012012"]))


@st.composite
def datasets(draw):
    """A valid 6-sample dataset for the 4 -> 3 classifier, then a user mistake in x, y, both
    or neither."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.uniform(-1, 1, (6, 4)).astype(draw(st.sampled_from(_VALID_X_DTYPES)))
    y = rng.integers(0, 3, 6)
    if draw(st.booleans()):
        x = _x_mutation(draw, x)
    if draw(st.booleans()):
        y = _y_mutation(draw, y)
    return x, y


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(call=st.sampled_from(["fit", "evaluate", "predict"]), data=datasets(),
       batch_size=st.sampled_from([4, 4, 4, 4, 0, -1, 2.5]),
       validation_split=st.sampled_from([0.0, 0.0, 0.0, 0.0, -0.5, 1.0]))
def test_malformed_inputs_get_documented_errors_only(model, call, data, batch_size,
                                                     validation_split):
    x, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        try:
            if call == "fit":
                model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0,
                          validation_split=validation_split)
            elif call == "evaluate":
                model.evaluate(x, y, batch_size=batch_size, verbose=0)
            else:
                out = model.predict(x, batch_size=batch_size, verbose=0)
                assert out.shape == (len(x), 3) and np.isfinite(out).all()
            event(f"{call}: success")
        except validation.DOCUMENTED_ERRORS as error:
            event(f"{call}: {type(error).__name__}")
            first_line = str(error).splitlines()[0]
            assert isinstance(error, NonFiniteError) or "Received" in first_line, first_line


def test_labels_of_a_variable_length_output_take_its_length():
    """A sequence model's output (None, None, 6): (batch, 5) class ids and (batch, 5, 6)
    one-hot labels fit; labels of another rank are still refused."""
    inputs = kilnet.Input(shape=(None, 3))
    outputs = kilnet.layers.Dense(6, activation="softmax")(
        kilnet.layers.SimpleRNN(4, return_sequences=True)(inputs))
    model = kilnet.Model(inputs, outputs)
    x = np.ones((8, 5, 3), np.float32)
    ids = np.arange(40).reshape(8, 5) % 6
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, ids, epochs=1, verbose=0)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, np.eye(6, dtype=np.float32)[ids], epochs=1, verbose=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(kilnet.InputError, match="one integer class id per sample"):
        model.fit(x, ids[:, :, None, None], epochs=1, verbose=0)
