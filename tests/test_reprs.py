"""Layers and models print as Keras's do: `<Dense name=dense, built=False>` (keras.io's
Sequential guide prints `model.layers`); compared with Keras 3's reprs."""

from __future__ import annotations

import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kilnet  # noqa: E402


def both(make):
    return make(kilnet), make(keras)


def test_layers_print_their_class_name_and_built_state_as_keras():
    ours, theirs = both(lambda lib: lib.layers.Dense(3, activation="relu", name="dense"))
    assert repr(ours) == repr(theirs) == "<Dense name=dense, built=False>"
    ours.build((None, 2))
    theirs.build((None, 2))
    assert repr(ours) == repr(theirs) == "<Dense name=dense, built=True>"
    assert str(ours) == str(theirs)


def test_models_print_as_keras():
    def sequential(lib):
        return lib.Sequential([lib.layers.Dense(2, name="a"), lib.layers.Dense(1, name="b")],
                              name="seq")
    ours, theirs = both(sequential)
    assert repr(ours.layers) == repr(theirs.layers)
    assert repr(ours) == repr(theirs) == "<Sequential name=seq, built=False>"

    def functional(lib):
        x = lib.Input(shape=(2,), name="x")
        return lib.Model(x, lib.ops.mean(lib.layers.Dense(1, name="d")(x), axis=-1), name="f")
    ours, theirs = both(functional)
    ours.build()
    assert repr(ours) == repr(theirs) == "<Functional name=f, built=True>"
    # Keras numbers op names per process (mean, mean_1, ...): compare the form, names aside
    def form(op):
        return re.sub(r"name=([a-z_]+?)(_\d+)?([,>])", r"name=\1\3", repr(op))
    assert [form(op) for op in ours.operations] == [form(op) for op in theirs.operations]
    assert repr(ours.operations[-1]) == f"<Operation name={ours.operations[-1].name}>"
    assert ours.predict(np.ones((1, 2)), verbose=0).shape == (1,)
