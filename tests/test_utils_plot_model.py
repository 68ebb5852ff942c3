"""plot_model: a PNG for a Sequential and a branching functional model, and the layout's
structure (every layer a box at its depth, every connection an arrow)."""

from __future__ import annotations

import pytest

import kilnet
from kilnet import layers, utils
from kilnet.utils._plot_model import model_graph


def _branching():
    x = kilnet.Input((8,), name="features")
    left = layers.Dense(4, activation="relu", name="left")(x)
    right = layers.Dense(4, name="right")(x)
    merged = layers.Concatenate(name="merge")([left, right])
    return kilnet.Model(x, layers.Dense(1, name="score")(merged))


def test_branching_layout_has_every_layer_and_edge():
    graph = model_graph(_branching(), show_shapes=True, show_layer_names=True,
                        show_layer_activations=True)
    depth = {n["id"]: n["depth"] for n in graph["nodes"]}
    assert depth == {"features": 0, "left": 1, "right": 1, "merge": 2, "score": 3}
    assert sorted(graph["edges"]) == sorted([("features", "left"), ("features", "right"),
                                             ("left", "merge"), ("right", "merge"),
                                             ("merge", "score")])
    labels = {n["id"]: n["label"] for n in graph["nodes"]}
    assert labels["left"] == "left (Dense)\nActivation: relu\nOutput shape: (None, 4)"
    assert {n["column"] for n in graph["nodes"] if n["depth"] == 1} == {0, 1}


@pytest.mark.parametrize("rankdir", ["TB", "LR"])
def test_png_written_for_sequential_and_functional(tmp_path, rankdir):
    seq = kilnet.Sequential([kilnet.Input((4,)), layers.Dense(3, name="hidden"),
                             layers.Dense(1, name="out")])
    for model, name in ((seq, "seq.png"), (_branching(), "branch.png")):
        path = tmp_path / name
        utils.plot_model(model, to_file=path, show_layer_names=True, rankdir=rankdir, dpi=50)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = [n["label"] for n in model_graph(seq, show_layer_names=True)["nodes"]]
    assert any(label.startswith("hidden (Dense)") for label in names)
    assert any(label.startswith("out (Dense)") for label in names)


def test_refusals(tmp_path):
    model = _branching()
    with pytest.raises(ValueError, match="rankdir"):
        utils.plot_model(model, to_file=tmp_path / "m.png", rankdir="XY")
    with pytest.raises(ValueError, match="expand_nested"):
        utils.plot_model(model, to_file=tmp_path / "m.png", expand_nested=True)
    with pytest.raises(ValueError, match="layer_range"):
        utils.plot_model(model, to_file=tmp_path / "m.png", layer_range=["a", "b"])
    with pytest.raises(ValueError, match="Build it first"):
        utils.plot_model(kilnet.Sequential([layers.Dense(2)]), to_file=tmp_path / "m.png")
