"""model.summary() as Keras 3 lays it out: shapes and counts before compile, InputLayer rows
and "Connected to" for graphs, shared layers, nested models, frozen layers, subclassed models,
and the options line_length, positions, expand_nested, show_trainable and layer_range."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import kilnet
import kilnet.summary
from kilnet import layers, ops
from kilnet.summary import model_summary


class Concat(layers.Layer):
    """A merge written in Keras's form (kilnet has no Concatenate layer yet)."""

    def call(self, inputs):
        return ops.concatenate(inputs, axis=-1)


class TwoDense(kilnet.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(4, name="hidden")
        self.head = layers.Dense(2, name="head")

    def call(self, x):
        return self.head(self.hidden(x))


def table_rows(text) -> list[list[str]]:
    """The cells of each table row (rows drawn on one line each)."""
    return [[cell.strip() for cell in line.strip("│").split("│")]
            for line in text.splitlines() if line.startswith("│")]


def row(text, label) -> list[str]:
    """The row whose first cell is `label` (e.g. "dense (Dense)"), indentation ignored."""
    found = [cells for cells in table_rows(text) if cells[0].lstrip("└ ") == label]
    assert len(found) == 1, (label, text)
    return found[0]


def header(text) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


def summary_text(model):
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


def two_input_model():
    a = kilnet.Input(shape=(4,), name="a")
    b = kilnet.Input(shape=(3,), name="b")
    shared = layers.Dense(5, name="shared")
    ha = shared(layers.Dense(3, name="pa")(a))    # 4*3+3 = 15; shared: 3*5+5 = 20
    hb = shared(b)                                 # the shared layer's second call
    merged = Concat(name="concat")([ha, hb])       # (None, 10)
    out = layers.Dense(2, name="out")(merged)      # 10*2+2 = 22
    return kilnet.Model([a, b], out, name="two_inputs")


def test_sequential_before_compile_shows_shapes_and_counts():
    model = kilnet.Sequential([layers.Flatten(input_shape=(28, 28)),
                               layers.Dense(128, activation="relu"), layers.Dense(10)],
                              name="mlp")
    assert not model.built
    text = summary_text(model)
    assert model.built  # built because its input shape is known
    assert text.splitlines()[0] == 'Model: "mlp"'
    assert header(text) == ["Layer (type)", "Output Shape", "Param #"]
    assert row(text, "flatten (Flatten)")[1:] == ["(None, 784)", "0"]
    assert row(text, "dense (Dense)")[1:] == ["(None, 128)", "100,480"]
    assert row(text, "dense_1 (Dense)")[1:] == ["(None, 10)", "1,290"]
    assert len(table_rows(text)) == 3  # no InputLayer row for a Sequential (as Keras)
    assert " Total params: 101,770 (397.54 KB)" in text.splitlines()
    assert " Trainable params: 101,770 (397.54 KB)" in text.splitlines()
    assert " Non-trainable params: 0 (0.00 B)" in text.splitlines()
    assert "not built" not in text


def test_summary_before_compile_keeps_the_seeded_weights():
    """Building at summary() draws the seed compile() would have drawn: same weights."""
    def weights(with_summary):
        kilnet.utils.set_random_seed(3)
        model = kilnet.Sequential([kilnet.Input(shape=(4,)), layers.Dense(3)])
        if with_summary:
            model_summary(model)
        model.compile(optimizer="sgd", loss="mse")
        return model.get_weights()

    for a, b in zip(weights(True), weights(False)):
        np.testing.assert_array_equal(a, b)


def test_two_input_model_has_input_rows_and_connections():
    model = two_input_model()
    text = model_summary(model)
    assert header(text) == ["Layer (type)", "Output Shape", "Param #", "Connected to"]
    assert [cells[0] for cells in table_rows(text)] == [
        "a (InputLayer)", "pa (Dense)", "b (InputLayer)", "shared (Dense)",
        "concat (Concat)", "out (Dense)"]
    assert row(text, "a (InputLayer)")[1:] == ["(None, 4)", "0", "-"]
    assert row(text, "b (InputLayer)")[1:] == ["(None, 3)", "0", "-"]
    assert row(text, "pa (Dense)")[1:] == ["(None, 3)", "15", "a[0][0]"]
    assert row(text, "concat (Concat)")[1:] == ["(None, 10)", "0",
                                                "shared[0][0], shared[1][0]"]
    assert row(text, "out (Dense)")[1:] == ["(None, 2)", "22", "concat[0][0]"]
    assert "Total params: 57 (228.00 B)" in text
    assert all(len(line) == 108 for line in text.splitlines()[1:-3])  # Keras's graph width


def test_a_shared_layer_is_one_row_listing_each_call():
    model = two_input_model()
    text = model_summary(model)
    assert row(text, "shared (Dense)")[1:] == ["(None, 5)", "20", "pa[0][0], b[0][0]"]
    # One input, but a layer called twice: not a chain, so "Connected to" shows.
    x = kilnet.Input(shape=(4,), name="x")
    twice = layers.Dense(4, name="twice")
    model = kilnet.Model(x, twice(twice(x)))
    text = model_summary(model)
    assert header(text)[-1] == "Connected to"
    assert row(text, "twice (Dense)")[1:] == ["(None, 4)", "20", "x[0][0], twice[0][0]"]


def test_a_functional_chain_has_input_rows_but_no_connections():
    x = kilnet.Input(shape=(4,), name="x")
    model = kilnet.Model(x, layers.Dense(2, name="d")(layers.Dense(3)(x)))
    text = model_summary(model)
    assert header(text) == ["Layer (type)", "Output Shape", "Param #"]
    assert row(text, "x (InputLayer)")[1:] == ["(None, 4)", "0"]
    assert row(text, "d (Dense)")[1:] == ["(None, 2)", "8"]
    # A branch makes it a graph.
    h = layers.Dense(3, name="h")(x)
    model = kilnet.Model(x, [layers.Dense(1, name="p")(h), layers.Dense(1, name="q")(h)])
    text = model_summary(model)
    assert row(text, "q (Dense)")[1:] == ["(None, 1)", "4", "h[0][0]"]


def test_nested_model_is_one_row_and_expands():
    inner = kilnet.Sequential([kilnet.Input(shape=(4,)), layers.Dense(3, name="in_a"),
                               layers.Dense(2, name="in_b")], name="inner")
    x = kilnet.Input(shape=(4,), name="x")
    outer = kilnet.Model(x, layers.Dense(1, name="top")(inner(x)), name="outer")
    text = model_summary(outer)
    assert row(text, "inner (Sequential)")[1:] == ["(None, 2)", "23"]
    assert [cells[0] for cells in table_rows(text)] == [
        "x (InputLayer)", "inner (Sequential)", "top (Dense)"]
    assert "Total params: 26 (104.00 B)" in text

    expanded = model_summary(outer, expand_nested=True)
    labels = [cells[0] for cells in table_rows(expanded)]
    assert labels == ["x (InputLayer)", "inner (Sequential)", "└ in_a (Dense)",
                      "└ in_b (Dense)", "top (Dense)"]
    assert row(expanded, "in_a (Dense)")[1:] == ["(None, 3)", "15"]
    assert row(expanded, "in_b (Dense)")[1:] == ["(None, 2)", "8"]
    assert "Total params: 26 (104.00 B)" in expanded  # inner rows are not counted twice
    # kilnet.Model(inputs, outputs) is "Functional", as Keras names it.
    y = kilnet.Input(shape=(2,))
    functional = kilnet.Model(y, layers.Dense(2)(y), name="f")
    z = kilnet.Input(shape=(2,))
    text = model_summary(kilnet.Model(z, functional(z)))
    assert row(text, "f (Functional)")[1:] == ["(None, 2)", "6"]


def test_a_frozen_layer_counts_as_non_trainable():
    frozen = layers.Dense(3, name="frozen")
    model = kilnet.Sequential([kilnet.Input(shape=(4,)), frozen, layers.Dense(2, name="head")])
    frozen.trainable = False
    text = model_summary(model, show_trainable=True)
    lines = text.splitlines()
    assert " Total params: 23 (92.00 B)" in lines
    assert " Trainable params: 8 (32.00 B)" in lines
    assert " Non-trainable params: 15 (60.00 B)" in lines
    assert row(text, "frozen (Dense)")[1:] == ["(None, 3)", "15", "N"]
    assert row(text, "head (Dense)")[1:] == ["(None, 2)", "8", "Y"]
    frozen.trainable = True
    assert " Trainable params: 23 (92.00 B)" in model_summary(model).splitlines()


def test_show_trainable_adds_a_column():
    model = kilnet.Sequential([layers.Flatten(input_shape=(2, 2)), layers.Dense(2)])
    text = model_summary(model, show_trainable=True)
    assert header(text) == ["Layer (type)", "Output Shape", "Param #", "Trainable"]
    assert row(text, "flatten (Flatten)")[1:] == ["(None, 4)", "0", "-"]  # no weights
    assert row(text, "dense (Dense)")[1:] == ["(None, 2)", "10", "Y"]
    assert all(len(line) == 100 for line in text.splitlines()[1:-3])
    graph = model_summary(two_input_model(), show_trainable=True)
    assert header(graph)[-2:] == ["Connected to", "Trainable"]


def test_unbuilt_subclassed_model():
    model = TwoDense(name="two_dense")
    text = summary_text(model)
    assert not model.built
    assert row(text, "hidden (Dense)")[1:] == ["?", "0 (unbuilt)"]
    assert row(text, "head (Dense)")[1:] == ["?", "0 (unbuilt)"]
    assert "not built yet" in text
    assert "Total params" not in text


def test_built_subclassed_model():
    model = TwoDense()
    model(np.zeros((1, 3), np.float32))
    text = summary_text(model)
    assert row(text, "hidden (Dense)")[1:] == ["(None, 4)", "16"]
    assert row(text, "head (Dense)")[1:] == ["(None, 2)", "10"]
    assert "Total params: 26 (104.00 B)" in text
    assert "not built" not in text
    # A sub-layer the call never used has no weights and no shape.
    model.spare = layers.Dense(7, name="spare")
    assert row(model_summary(model), "spare (Dense)")[1:] == ["?", "0 (unbuilt)"]


def test_unbuilt_sequential_without_input_shape():
    model = kilnet.Sequential([layers.Dense(3, name="d")])
    text = model_summary(model)
    assert row(text, "d (Dense)")[1:] == ["?", "0 (unbuilt)"]
    assert "not built yet" in text
    assert not model.built


def test_line_length_positions_and_layer_range():
    model = kilnet.Sequential([kilnet.Input(shape=(4,)), layers.Dense(3, name="a"),
                               layers.Dense(3, name="b"), layers.Dense(3, name="c")])
    text = model_summary(model, line_length=60)
    assert {len(line) for line in text.splitlines()[1:-3]} == {60}
    text = model_summary(model, line_length=70, positions=[30, 50, 70])
    top = text.splitlines()[1]
    assert len(top) == 70 and top.index("┳") == 29 and top.rindex("┳") == 49
    assert model_summary(model, positions=[0.5, 0.75, 1.0]).splitlines()[1].index("┳") == 43
    shown = [cells[0] for cells in table_rows(model_summary(model, layer_range=["b", "c"]))]
    assert shown == ["b (Dense)", "c (Dense)"]
    only_b = model_summary(model, layer_range=["b", "b"])
    assert [cells[0] for cells in table_rows(only_b)] == ["b (Dense)"]
    assert "Total params: 39 (156.00 B)" in only_b  # the totals stay the whole model's


def test_bad_options_are_refused_clearly():
    model = kilnet.Sequential([kilnet.Input(shape=(4,)), layers.Dense(3)])
    with pytest.raises(ValueError, match="line_length"):
        model_summary(model, line_length=5)
    with pytest.raises(ValueError, match="positions"):
        model_summary(model, positions=[0.5, 1.0])
    with pytest.raises(ValueError, match="too narrow"):
        model_summary(model, positions=[0.01, 0.5, 1.0])
    with pytest.raises(ValueError, match="matches no layer"):
        model_summary(model, layer_range=["nope", "dense"])
    with pytest.raises(ValueError, match="two strings"):
        model_summary(model, layer_range="dense")
    with pytest.raises(TypeError):
        model_summary(model, colour=True)


def test_print_fn_receives_the_text():
    model = kilnet.Sequential([kilnet.Input(shape=(4,)), layers.Dense(3)])
    seen = []
    text = model_summary(model, print_fn=seen.append)
    assert seen == [text]


def test_compile_report_is_appended():
    model = kilnet.Sequential([kilnet.Input(shape=(4,)), layers.Dense(3)])
    assert "per training step" not in model_summary(model)
    model.compile(optimizer="sgd", loss="mse")
    text = model_summary(model)
    assert "Total params: 15 (60.00 B)" in text
    assert text.endswith(str(model.compile_report))
    assert "per training step" in text


def test_docstring_example():
    failed, attempted = doctest.testmod(kilnet.summary)
    assert failed == 0 and attempted > 0


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", "adamw", "nadam", "adagrad"])
def test_after_fit_the_parameter_lines_are_keras_with_its_optimizer_params(optimizer):
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras", reason="the reference is Keras's summary")

    def param_lines(lib):
        model = lib.Sequential([lib.Input((4,)), lib.layers.Dense(3),
                                lib.layers.BatchNormalization()])
        model.compile(optimizer, "mse")
        before = [line.strip() for line in _summary_lines(model) if "params" in line]
        model.fit(np.ones((8, 4), np.float32), np.ones((8, 3), np.float32), verbose=0)
        return before, [line.strip() for line in _summary_lines(model) if "params" in line]

    ours, theirs = param_lines(kilnet), param_lines(keras)
    assert ours == theirs
    assert ours[1][-1].startswith("Optimizer params:") and len(ours[0]) == 3


def _summary_lines(model):
    lines = []
    model.summary(print_fn=lambda text, *args, **kwargs: lines.extend(text.splitlines()))
    return lines
