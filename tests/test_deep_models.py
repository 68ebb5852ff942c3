"""Deep chains: a model of thousands of layers builds without Python's recursion limit, and
building or loading a Sequential costs one symbolic call per layer (not one per layer per
layer added before it, which made a 60,000-layer file take minutes to load)."""

from __future__ import annotations

import numpy as np

import kilnet

DEPTH = 1200  # past Python's default recursion limit of 1000


def test_a_functional_chain_deeper_than_the_recursion_limit_builds_and_runs():
    x = inputs = kilnet.Input(shape=(2,))
    for _ in range(DEPTH):
        x = kilnet.layers.Dense(2)(x)
    model = kilnet.Model(inputs, x)
    assert len(model.layers) == DEPTH + 1
    model.build(seed=0)
    model.set_weights([np.eye(2, dtype=np.float32), np.ones(2, np.float32)] * DEPTH)
    sample = np.array([[1.0, -2.0]], np.float32)
    np.testing.assert_allclose(model(sample), sample + DEPTH)  # x + 1 at every layer


def test_a_long_sequential_calls_each_layer_once_when_built_and_loaded(tmp_path):
    chain = [kilnet.layers.Dense(2) for _ in range(DEPTH)]
    model = kilnet.Sequential([kilnet.Input(shape=(2,))] + chain)
    assert all(len(layer.inbound_nodes) == 1 for layer in chain)
    model.save(tmp_path / "deep.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "deep.kilnet")
    assert all(len(layer.inbound_nodes) == 1 for layer in loaded.layers)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in chain]


def test_default_names_skip_given_ones_while_numbering_on():
    model = kilnet.Sequential([kilnet.Input(shape=(2,)), kilnet.layers.Dense(2, name="dense_2"),
                               kilnet.layers.Dense(2), kilnet.layers.Dense(2),
                               kilnet.layers.Dense(2), kilnet.layers.Dense(2)])
    assert [layer.name for layer in model.layers] == ["dense_2", "dense", "dense_1", "dense_3",
                                                      "dense_4"]
    model.pop()
    model.add(kilnet.layers.Dense(2))
    assert model.layers[-1].name == "dense_4"  # the popped name is free again
