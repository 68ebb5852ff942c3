"""Sub-layers kept in lists and dicts filled after they are assigned (keras.io's variable
selection network: `self.grns = []` then `self.grns.append(...)`), nested, removed; and the
key order a layer called on a dict sees. Compared with Keras itself."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

KINDS = ("list appended", "list extended", "dict filled", "dict literal", "removed again")
# Keras 3.15 does not track these (its count is 0 and fit leaves their weights alone); kilnet
# does, as it tracks the forms above
BEYOND_KERAS = ("nested lists", "setdefault")


def _holder(lib, kind):
    layers = lib.layers

    class Holder(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            make = [layers.Dense(3, kernel_initializer="ones"), layers.Dense(3)]
            if kind == "list appended":
                self.parts = []
                for layer in make:
                    self.parts.append(layer)
            elif kind == "list extended":
                self.parts = []
                self.parts += make
            elif kind == "dict filled":
                self.parts = {}
                self.parts["b"], self.parts["a"] = make
            elif kind == "dict literal":
                self.parts = {"b": make[0], "a": make[1]}
            elif kind == "nested lists":
                self.parts = [[], []]
                self.parts[0].append(make[0])
                self.parts[1].append(make[1])
            elif kind == "setdefault":
                self.parts = {}
                self.parts.setdefault("b", make[0])
                self.parts.setdefault("a", make[1])
            elif kind == "removed again":
                self.parts = list(make) + [layers.Dense(5)]
                self.parts.pop()

        def chain(self):
            items = list(self.parts.values()) if isinstance(self.parts, dict) else self.parts
            return [item[0] if isinstance(item, list) else item for item in items]

        def call(self, x):
            first, second = self.chain()
            return first(x) + second(x)

    return Holder


@pytest.mark.parametrize("kind", KINDS)
def test_layers_added_to_container_attributes_are_tracked_as_in_keras(kind):
    x = np.random.default_rng(0).random((4, 2)).astype("float32")
    y = np.random.default_rng(1).random((4, 3)).astype("float32")
    found = {}
    for lib in (keras, kilnet):
        inputs = lib.Input((2,))
        model = lib.Model(inputs, _holder(lib, kind)()(inputs))
        found[lib] = model
    assert found[kilnet].count_params() == found[keras].count_params() == 18
    found[kilnet].set_weights(found[keras].get_weights())
    for lib, model in found.items():
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
    for mine, theirs in zip(found[kilnet].get_weights(), found[keras].get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", BEYOND_KERAS)
def test_layers_in_nested_or_setdefault_containers_are_tracked(kind):
    inputs = kilnet.Input((2,))
    model = kilnet.Model(inputs, _holder(kilnet, kind)()(inputs))
    assert model.count_params() == 18
    before = model.get_weights()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 2)), np.zeros((4, 3)), epochs=1, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_layer_called_on_a_dict_sees_the_keys_in_the_order_given():
    """keras.io's variable selection network loops `for name in inputs`: Keras keeps the
    dict's order; kilnet's trees sorted the keys, so each feature met another network."""
    found = {}
    for lib in (keras, kilnet):
        class FirstKey(lib.layers.Layer):
            def call(self, inputs):
                return lib.ops.concatenate([inputs[k] for k in inputs], axis=-1)[:, :1]

        inputs = {"zeta": lib.Input((1,), name="zeta"), "alpha": lib.Input((1,), name="alpha")}
        model = lib.Model(inputs, FirstKey()(inputs))
        data = {"zeta": np.full((2, 1), 1.0, "float32"), "alpha": np.full((2, 1), 2.0, "float32")}
        found[lib] = (float(model.predict(data, verbose=0)[0, 0]),
                      float(np.asarray(FirstKey()(data))[0, 0]))
    assert found[kilnet] == found[keras] == (1.0, 1.0)


def _set_before_init(lib):
    """keras.io's Switch Transformer style: the layers, a weight and a SeedGenerator kept
    before super().__init__() is called."""
    layers = lib.layers

    class Early(lib.Model):
        def __init__(self):
            self.units = 3
            self.blocks = []
            self.blocks.append(layers.Dense(self.units))
            self.head = layers.Dense(2)
            self.scale = lib.Variable(np.full((2,), 0.5, "float32"), name="scale")
            self.noise = lib.random.SeedGenerator(3)
            super().__init__()

        def call(self, x):
            return self.head(self.blocks[0](x)) * self.scale

    return Early()


def test_attributes_set_before_super_init_are_tracked_as_in_keras():
    x = np.random.default_rng(0).random((4, 5)).astype("float32")
    y = np.random.default_rng(1).random((4, 2)).astype("float32")
    found = {lib: _set_before_init(lib) for lib in (keras, kilnet)}
    for model in found.values():
        model(x)
    ours, theirs = found[kilnet], found[keras]
    assert ours.count_params() == theirs.count_params() == 2 + 18 + 8
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert len(ours.layers) == len(theirs.layers) == 2
    assert len(ours.seed_states()) == 1   # the SeedGenerator's state, a variable, not a weight
    assert len(ours.non_trainable_variables) == len(theirs.non_trainable_variables) == 1
    ours.set_weights(theirs.get_weights())
    for lib, model in found.items():
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-5, atol=1e-7)
