"""Keras's registry helpers (get_custom_objects, custom_object_scope), utils.Progbar and
utils.get_source_inputs, against Keras itself where it has the same name."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import kilnet  # noqa: E402
from kilnet import utils  # noqa: E402


# -- the registry ------------------------------------------------------------------------------

class Tripled(kilnet.layers.Layer):
    """A layer of the user's that no allowlist knows."""

    def call(self, inputs):
        return inputs * 3


def _saved_model_with_custom_layer(tmp_path):
    inputs = kilnet.Input(shape=(2,))
    model = kilnet.Model(inputs, Tripled()(inputs))
    path = tmp_path / "m.kilnet"
    with kilnet.saving.custom_object_scope({"Tripled": Tripled}):
        model.save(path)
    return model, path


def test_custom_object_scope_lets_load_model_find_a_class_and_ends_with_the_block(tmp_path):
    model, path = _saved_model_with_custom_layer(tmp_path)
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    with pytest.raises(Exception, match="Tripled"):
        kilnet.models.load_model(path)
    with kilnet.utils.custom_object_scope({"Tripled": Tripled}):
        loaded = kilnet.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), 3 * x)
    with pytest.raises(Exception, match="Tripled"):
        kilnet.models.load_model(path)   # the scope is closed again


def test_an_inner_scope_replaces_the_outer_one_as_in_keras():
    ours, theirs = [], []
    for lib, seen in ((kilnet, ours), (keras, theirs)):
        with lib.saving.custom_object_scope({"a": abs}):
            with lib.saving.custom_object_scope({"b": len}):
                seen.append(lib.saving.get_registered_object("a"))
            seen.append(lib.saving.get_registered_object("a"))
    assert ours == theirs == [None, abs]


def test_get_custom_objects_is_the_live_registry(tmp_path):
    table = kilnet.utils.get_custom_objects()
    assert table is kilnet.saving.get_custom_objects()
    table["Tripled"] = Tripled
    try:
        assert kilnet.saving.get_registered_object("Tripled") is Tripled
        assert kilnet.saving.get_registered_name(Tripled) == "Tripled"
        model, path = _saved_model_with_custom_layer(tmp_path)
        loaded = kilnet.models.load_model(path)
        assert type(loaded.layers[-1]) is Tripled
    finally:
        del table["Tripled"]
    assert kilnet.saving.get_registered_object("Tripled") is None


def test_custom_object_scope_refuses_a_non_dict():
    with pytest.raises(TypeError, match="Received: list"):
        kilnet.saving.custom_object_scope([Tripled])


def test_utils_names_are_the_saving_and_backend_ones():
    for name in ("register_keras_serializable", "get_custom_objects", "custom_object_scope",
                 "CustomObjectScope", "get_registered_name", "get_registered_object"):
        assert getattr(kilnet.utils, name) is getattr(kilnet.saving, name)
    assert kilnet.utils.is_keras_tensor is kilnet.backend.is_keras_tensor
    with pytest.raises(AttributeError, match="no_such_helper"):
        kilnet.utils.no_such_helper


# -- get_source_inputs -------------------------------------------------------------------------

def _diamond(lib):
    a, b = lib.Input(shape=(3,)), lib.Input(shape=(3,))
    hidden = lib.layers.Dense(4)(b)
    out = lib.layers.Concatenate()([hidden, lib.layers.Dense(4)(a), hidden])
    return [a, b], out


def test_get_source_inputs_equals_keras_order():
    (ka, kb), kout = _diamond(keras)
    (a, b), out = _diamond(kilnet)
    theirs = ["a" if t is ka else "b" for t in keras.utils.get_source_inputs(kout)]
    ours = ["a" if t is a else "b" for t in utils.get_source_inputs(out)]
    assert ours == theirs
    assert utils.get_source_inputs(a) == [a]
    with pytest.raises(TypeError, match="Received: ndarray"):
        utils.get_source_inputs(np.ones(3))


# -- Progbar -----------------------------------------------------------------------------------

UPDATES = [(1, [("loss", 0.9), ("acc", 0.1)]), (3, [("loss", 0.5), ("acc", 0.4)]),
           (4, [("loss", 0.25), ("acc", np.array([0.5, 0.7]))]),
           (6, [("loss", 0.125), ("acc", 0.8)])]


def _keras_shown(capsys, target, updates, **kwargs):
    """The metric values Keras's Progbar prints at each update (verbose=1, every update)."""
    bar = keras.utils.Progbar(target, interval=0.0, **kwargs)
    shown = []
    for current, values in updates:
        capsys.readouterr()
        bar.update(current, values)
        text = capsys.readouterr().out
        shown.append({k: float(v) for k, v in re.findall(r"(\w+): ([-0-9.e+]+)", text)})
    return shown


@pytest.mark.parametrize("stateful", [None, ["acc"]])
def test_progbar_shows_keras_averages(capsys, stateful):
    theirs = _keras_shown(capsys, 6, UPDATES, stateful_metrics=stateful)
    bar = utils.Progbar(6, stateful_metrics=stateful, stream=io.StringIO())
    for (current, values), shown in zip(UPDATES, theirs):
        bar.update(current, values)
        ours = bar.averages()
        assert set(ours) == set(shown)
        for name in ours:
            assert ours[name] == pytest.approx(shown[name], abs=6e-5, rel=1e-3)


def test_progbar_stateless_metrics_list_and_add(capsys):
    theirs = _keras_shown(capsys, None, [(2, [("x", 1.0), ("y", 2.0)]), (5, [("x", 4.0), ("y", 8.0)])],
                          stateless_metrics=["x"])
    bar = utils.Progbar(None, stateless_metrics=["x"], stream=io.StringIO())
    bar.add(2, [("x", 1.0), ("y", 2.0)])
    bar.add(3, [("x", 4.0), ("y", 8.0)])
    assert bar.averages() == pytest.approx(theirs[-1])


def test_progbar_log_gets_one_line_and_terminal_a_live_bar():
    log = io.StringIO()
    bar = utils.Progbar(3, stream=log)
    for step in (1, 2, 3):
        bar.update(step, [("loss", 1.0)])
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("3/3 - ") and "step - loss: 1.0000" in lines[0]

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    bar = utils.Progbar(4, interval=0.0, stream=tty, width=8)
    bar.update(2, [("loss", 0.5)])
    assert "[===>....] 2/4" in tty.getvalue() and "\n" not in tty.getvalue()
    bar.update(4)
    assert tty.getvalue().endswith("\n") and "4/4 - " in tty.getvalue()
    silent = io.StringIO()
    utils.Progbar(2, verbose=0, stream=silent).update(2, [("a", 1.0)])
    assert silent.getvalue() == ""


@pytest.mark.parametrize("kwargs, match", [
    (dict(target=-1), "target=-1"), (dict(target=2.5), "target=2.5"),
    (dict(target=3, stateful_metrics=["a"], stateless_metrics=["b"]), "stateless_metrics"),
    (dict(target=3, verbose=5), "verbose=5")])
def test_progbar_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        utils.Progbar(**kwargs)
