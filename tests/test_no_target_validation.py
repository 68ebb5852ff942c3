"""Models whose loss comes from add_loss (keras.io's endpoint-layer and OCR models) validated
and evaluated on inputs alone, as Keras 3 (JAX backend) runs them: validation_data that is not
a tuple (a dict by input name, one array) is x_val alone, and evaluate, fit's validation and
predict share one model in any order. Keras is the reference, from the same weights.
"""

from __future__ import annotations

import os
import warnings

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import structure  # noqa: E402
from kilnet.errors import InputError, InputWarning  # noqa: E402

RNG = np.random.default_rng(7)
X = {"a": RNG.normal(size=(8, 3)).astype("float32"),
     "t": RNG.normal(size=(8, 1)).astype("float32")}
X_VAL = {"a": RNG.normal(size=(6, 3)).astype("float32"),
         "t": RNG.normal(size=(6, 1)).astype("float32")}
Y = RNG.normal(size=(8, 1)).astype("float32")
WEIGHTS = np.linspace(0.5, 2.0, 8).astype("float32")


def _endpoint_layer(lib):
    class EndpointLoss(lib.layers.Layer):
        """The loss of the prediction against a target given as an input (keras.io's CTC
        endpoint layer, with a squared error)."""

        def call(self, target, prediction):
            self.add_loss(lib.ops.mean((prediction - target) ** 2))
            return prediction

    return EndpointLoss()


def _two_input_model(lib):
    features = lib.Input((3,), name="a")
    target = lib.Input((1,), name="t")
    prediction = lib.layers.Dense(1, name="d")(features)
    return lib.Model([features, target], _endpoint_layer(lib)(target, prediction))


def _one_input_model(lib):
    """The target is the first feature: a model of one input, so x_val can be one array."""
    features = lib.Input((4,), name="a")
    prediction = lib.layers.Dense(1, name="d")(features)
    return lib.Model(features, _endpoint_layer(lib)(features[:, :1], prediction))


def _pair(make):
    """kilnet's model and Keras's, compiled alike, with kilnet's initial weights in both."""
    ours, theirs = make(kilnet), make(keras)
    theirs.set_weights(ours.get_weights())
    for model in (ours, theirs):
        model.compile(optimizer="sgd")
    return ours, theirs


def _as_list(x):
    return [x["a"], x["t"]]


def _fit(model, x, validation_data, epochs=2):
    return model.fit(x, validation_data=validation_data, batch_size=4, epochs=epochs,
                     shuffle=False, verbose=0).history


def _assert_same_history(ours, theirs):
    assert sorted(ours) == sorted(theirs) == ["loss", "val_loss"]
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-7)


def test_validation_data_as_a_dict_of_inputs_as_keras():
    """keras.io's captcha_ocr validates on a dict of inputs (no targets): Keras reads a
    validation_data that is not a tuple as x_val alone."""
    ours, theirs = _pair(_two_input_model)
    _assert_same_history(_fit(ours, X, X_VAL), _fit(theirs, X, X_VAL))
    np.testing.assert_allclose(ours.get_weights()[0], theirs.get_weights()[0], rtol=1e-5)


def test_validation_data_of_one_array_for_a_model_of_one_input_as_keras():
    x = np.concatenate([X["t"], X["a"]], axis=1)
    x_val = np.concatenate([X_VAL["t"], X_VAL["a"]], axis=1)
    ours, theirs = _pair(_one_input_model)
    _assert_same_history(_fit(ours, x, x_val), _fit(theirs, x, x_val))


def test_validation_data_as_a_dict_beside_batches_of_inputs_as_keras():
    """Training batches from a generator of (x,) and validation_data a dict of inputs."""
    def batches():
        while True:
            for start in (0, 4):
                yield ({key: value[start:start + 4] for key, value in X.items()},)

    ours, theirs = _pair(_two_input_model)
    histories = [model.fit(batches(), steps_per_epoch=2, validation_data=X_VAL, epochs=2,
                           verbose=0).history for model in (ours, theirs)]
    _assert_same_history(*histories)


def test_validation_data_of_inputs_alone_for_a_model_that_needs_targets_names_it():
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    for validation_data, given in ((X["a"], r"x_val alone \(a ndarray"),
                                   ((X["a"],), r"\(x_val,\)")):
        with pytest.raises(InputError, match=r"validation_data must give targets: the model's "
                                             r"loss or metrics read labels for 'dense.*"
                                             r"validation_data=\(x_val, y_val\). Received: "
                                             r"validation_data as " + given):
            model.fit(X["a"], Y, validation_data=validation_data, verbose=0)


def test_validation_data_dict_with_a_wrong_key_names_validation_data():
    model, _ = _pair(_two_input_model)
    with pytest.raises(InputError, match=r"validation_data must have one entry per model "
                                         r"inputs \['a', 't'\]; missing \['t'\]"):
        _fit(model, X, {"a": X_VAL["a"], "b": X_VAL["t"]})


@pytest.mark.parametrize("order", ["evaluate first", "fit first"])
def test_evaluate_and_validation_on_inputs_alone_in_either_order_as_keras(order):
    """evaluate(x) and fit's validation_data=(x,) on one model, with the same shapes (as
    captcha_ocr): the second call must not run a program compiled for the first one's
    arguments."""
    results = []
    for model in _pair(_two_input_model):
        x = _as_list(X)
        if order == "evaluate first":
            results.append((model.evaluate(x, batch_size=4, verbose=0),
                            _fit(model, x, (x,), epochs=1)))
        else:
            history = _fit(model, x, (x,), epochs=1)
            results.append((model.evaluate(x, batch_size=4, verbose=0), history))
    (ours_loss, ours_history), (theirs_loss, theirs_history) = results
    np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-5)
    _assert_same_history(ours_history, theirs_history)


def test_evaluate_then_validation_share_one_compiled_program():
    """evaluate(x) and fit's validation on the same shapes give the programs the same
    arguments (no labels as None), so validation reuses evaluate's program."""
    model, _ = _pair(_two_input_model)
    model.evaluate(X, batch_size=4, verbose=0)
    _fit(model, X, X, epochs=1)
    names = [info["name"] for info in model.compile_report.programs]
    assert sum(name.startswith("evaluate loop") for name in names) == 1, names


def test_programs_are_told_apart_by_their_arguments_tree(monkeypatch):
    """No labels given to the programs as () by evaluate and as None by fit's validation (as
    before they were made one form): each call still runs a program compiled for its own
    arguments, not one compiled for the same shapes in another tree."""
    packed_empty = []

    def labels_as_evaluate_packed_them_before(arrays):
        if arrays:
            return structure.pack(arrays)
        packed_empty.append(arrays)
        return () if len(packed_empty) == 1 else None   # evaluate's, then fit's

    monkeypatch.setattr(structure, "pack_labels", labels_as_evaluate_packed_them_before)
    ours, theirs = _pair(_two_input_model)
    losses = []
    for model in (ours, theirs):
        first = model.evaluate(X, batch_size=4, verbose=0)
        history = _fit(model, X, X_VAL, epochs=1)
        losses.append([first, *history["loss"], *history["val_loss"],
                       model.evaluate(X, batch_size=4, verbose=0)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_calls_mixed_on_one_model_as_keras():
    """evaluate, fit and predict in turn with and without targets and sample weights: the
    targets and weights weight nothing here (no compiled loss), as in Keras, and kilnet says
    so for the weights."""
    ours, theirs = _pair(_two_input_model)
    logs = []
    for model in (ours, theirs):
        x = _as_list(X)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = [model.evaluate(x, batch_size=4, verbose=0),
                      model.predict(X, batch_size=4, verbose=0),
                      *_fit(model, x, (x, Y), epochs=1).values(),
                      model.evaluate(x, Y, batch_size=4, verbose=0),
                      model.evaluate(x, sample_weight=WEIGHTS, batch_size=4, verbose=0),
                      *_fit(model, X, (x, None, WEIGHTS), epochs=1).values(),
                      model.predict(x, batch_size=4, verbose=0),
                      model.evaluate(X, batch_size=4, verbose=0),
                      model.get_weights()[0]]
        logs.append((values, [str(w.message) for w in caught
                              if issubclass(w.category, InputWarning)]))
    (ours_values, ours_warnings), (theirs_values, _) = logs
    for mine, reference in zip(ours_values, theirs_values):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-7)
    assert len(ours_warnings) == 2
    assert ours_warnings[0].startswith("sample_weight has no effect: sample weights weight "
                                       "the losses that compile(loss=...) computes")
    assert ours_warnings[1].startswith("validation_data[2] has no effect")
