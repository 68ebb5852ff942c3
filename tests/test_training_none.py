"""`training=None` and calls run in no mode, as Keras 3 resolves them; evaluate(x) handing an
x-only batch to a model's own test_step.

Keras's rule for a call's `training`: the value the caller passed, None included; else the
mode of the call it runs inside; else its `call`'s own default, which may be None. A call
resolved to None gets `training=None`, and the layers it calls take their own defaults.
Each test defines its layers once per library (Keras, JAX backend, and kilnet), records the
`training` each call saw and compares it and the outputs with Keras's.
"""

from __future__ import annotations

import numpy as np
import pytest

import kilnet

keras = pytest.importorskip("keras", reason="the reference is Keras itself")

X = np.arange(6, dtype="float32").reshape(2, 3)


def _scale(training):
    """A factor that tells the three modes apart in the numbers."""
    return {None: 3.0, True: 2.0, False: 1.0}[training]


def _probe_classes(lib, seen):
    class Probe(lib.layers.Layer):   # `training=None` default: Keras's usual form
        def __init__(self, tag, **kwargs):
            super().__init__(**kwargs)
            self.tag = tag

        def call(self, x, training=None):
            seen.append((self.tag, training))
            return x * _scale(training)

    class Trains(lib.layers.Layer):  # `training=True` default (keras.io's DeiT)
        def call(self, x, training=True):
            seen.append(("trains", training))
            return x * _scale(training)

    class Outer(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = Probe("first")
            self.trains = Trains()
            self.given_none = Probe("given_none")

        def call(self, x, training=None):
            seen.append(("outer", training))
            x = self.first(x)
            x = self.trains(x)
            return self.given_none(x, training=None)   # an explicit None, last

    return Probe, Trains, Outer


def _record(lib, run):
    """(the `training` each call saw, the output) of run(classes), after a first call that
    builds the layers (Keras traces a first call to build, kilnet too)."""
    seen = []
    classes = _probe_classes(lib, seen)
    layer, call = run(*classes)
    call(layer)
    seen.clear()
    return seen, np.asarray(call(layer)).tolist()


CASES = {
    "no mode": lambda p, t, o: (p("p"), lambda layer: layer(X)),
    "explicit None": lambda p, t, o: (p("p"), lambda layer: layer(X, training=None)),
    "explicit None over a True default": lambda p, t, o: (t(), lambda layer: layer(
        X, training=None)),
    "nested, no mode": lambda p, t, o: (o(), lambda layer: layer(X)),
    "nested, training=True": lambda p, t, o: (o(), lambda layer: layer(X, training=True)),
    "nested, training=False": lambda p, t, o: (o(), lambda layer: layer(X, training=False)),
    "nested, training=None": lambda p, t, o: (o(), lambda layer: layer(X, training=None)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_each_call_sees_as_keras(case):
    ours, theirs = (_record(lib, CASES[case]) for lib in (kilnet, keras))
    assert ours == theirs


def test_training_none_cases_are_what_keras_documents():
    """The Keras behaviours the comparisons above rest on, spelled out."""
    seen, _ = _record(kilnet, CASES["no mode"])
    assert seen == [("p", None)]
    seen, _ = _record(kilnet, CASES["explicit None over a True default"])
    assert seen == [("trains", None)]
    seen, out = _record(kilnet, CASES["nested, training=True"])
    assert seen == [("outer", True), ("first", True), ("trains", True), ("given_none", None)]
    assert out == (X * 2 * 2 * 3).tolist()


def _stateless_record(lib):
    seen = []
    probe_class, _, outer_class = _probe_classes(lib, seen)
    results = []
    for layer in (probe_class("p"), outer_class()):
        layer(X)
        seen.clear()
        out, _ = layer.stateless_call(layer.trainable_variables,
                                      layer.non_trainable_variables, X)
        results.append((list(seen), np.asarray(out).tolist()))
    dropout = lib.layers.Dropout(0.5, seed=1)
    dropout.build(X.shape)
    out, _ = dropout.stateless_call([], dropout.non_trainable_variables, X)
    results.append(np.asarray(out).tolist())
    return results


def test_stateless_call_without_training_resolves_as_a_call_as_keras():
    ours, theirs = _stateless_record(kilnet), _stateless_record(keras)
    assert ours == theirs
    assert ours[0][0] == [("p", None)]
    assert ours[2] == X.tolist()   # Dropout infers


def test_functional_model_in_no_mode_passes_none_to_keras_form_calls():
    results = {}
    for lib in (keras, kilnet):
        seen = []
        probe_class, trains_class, _ = _probe_classes(lib, seen)
        inputs = lib.Input((3,))
        y = probe_class("given_false")(inputs, training=False)
        y = probe_class("said_none")(y, training=None)
        y = probe_class("unsaid")(y)
        model = lib.Model(inputs, trains_class()(y))
        model(X)
        seen.clear()
        out = np.asarray(model(X)).tolist()
        results[lib.__name__] = (list(seen), out)
    assert results["kilnet"] == results["keras"]


def _keeps_first_column_when_inferring(lib):
    class KeepsFirstColumn(lib.layers.Layer):   # its output's width depends on the mode
        def call(self, x, training=True):
            return x * 2 if training else x[:, :1]

    return KeepsFirstColumn


def test_sequential_without_input_builds_in_its_layers_default_modes_as_keras():
    """A Sequential without an Input builds at its first call, running its layers in no
    mode: each layer takes its own default there (a call(training=True) trains), as Keras's,
    so the Dense after it is built for the width the calls give."""
    results = {}
    for lib in (keras, kilnet):
        model = lib.Sequential([_keeps_first_column_when_inferring(lib)(),
                                lib.layers.Dense(2, name="after")])
        first = np.asarray(model(X))
        model.get_layer("after").set_weights([np.full((3, 2), 0.5, "float32"),
                                              np.zeros(2, "float32")])
        results[lib.__name__] = (first.shape, np.asarray(model(X)).tolist())
    assert results["kilnet"] == results["keras"]
    assert results["kilnet"][0] == (2, 2)


# -- evaluate(x) and a model's own test_step -----------------------------------------------------
def _own_test_step_model(lib):
    class OwnTestStep(lib.Model):   # Keras's JAX form
        def test_step(self, state, data):
            trainable, non_trainable, metric_values = state
            y, non_trainable = self.stateless_call(trainable, non_trainable, data)
            return {"mean": lib.ops.mean(y)}, (trainable, non_trainable, metric_values)

    inputs = lib.Input((3,))
    return OwnTestStep(inputs, lib.layers.Dense(2, name="dense")(inputs))


def _evaluate_x_only(lib, fit_first):
    model = _own_test_step_model(lib)
    model.compile(optimizer="sgd", loss="mse")
    if fit_first:
        model.fit(X, np.ones((2, 2), "float32"), batch_size=2, verbose=0)
    model.get_layer("dense").set_weights([np.full((3, 2), 0.5, "float32"),
                                          np.array([1.0, -1.0], "float32")])
    return model.evaluate(X, batch_size=2, verbose=0, return_dict=True)


def test_evaluate_hands_an_x_only_batch_to_the_models_own_test_step():
    # Keras builds its compiled loss on the first fit or evaluate, with the batch's y: before
    # a fit, evaluate(x) fails there; after it, the step gets the x-only batch.
    theirs = _evaluate_x_only(keras, fit_first=True)
    for fit_first in (True, False):
        ours = _evaluate_x_only(kilnet, fit_first)
        assert ours.keys() == theirs.keys() == {"mean"}
        np.testing.assert_allclose(ours["mean"], theirs["mean"], rtol=1e-6)
    assert theirs["mean"] == pytest.approx(np.mean(X @ np.full((3, 2), 0.5)))


def test_evaluate_without_targets_still_refused_for_a_model_without_its_own_step():
    inputs = kilnet.Input((3,))
    model = kilnet.Model(inputs, kilnet.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="y is required"):
        model.evaluate(X, verbose=0)
