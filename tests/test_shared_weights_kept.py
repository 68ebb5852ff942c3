"""A model's first call never redraws weights another model already has: the functional
guide's feature extraction (a second model over the same layers) and the transfer-learning
pattern (a pretrained base model called inside a new model) keep the weights they were given,
as in Keras; build(seed=...) still draws every weight from the seed."""

from __future__ import annotations

import numpy as np

import kilnet
from kilnet import layers


def _base():
    inputs = kilnet.Input((8, 8, 3))
    x = layers.Flatten()(layers.Conv2D(4, 3)(inputs))
    base = kilnet.Model(inputs, layers.Dense(2)(x))
    return base


def test_a_feature_extraction_model_keeps_the_shared_weights():
    base = _base()
    features = kilnet.Model(inputs=base.input, outputs=[l.output for l in base.layers])
    base.set_weights([np.full(w.shape, 0.1, np.float32) for w in base.get_weights()])
    image = np.ones((1, 8, 8, 3), np.float32)
    expected = base.predict(image, verbose=0)   # 6*6*4 * (27*0.1 + 0.1) * 0.1 + 0.1 = 40.42
    np.testing.assert_allclose(expected, [[40.42, 40.42]], rtol=1e-5)
    outputs = features(image)   # the second model's first call
    np.testing.assert_allclose(np.asarray(outputs[-1]), expected, rtol=1e-6)
    np.testing.assert_allclose(base.predict(image, verbose=0), expected, rtol=1e-6)


def test_a_pretrained_base_inside_a_new_model_keeps_its_weights():
    inputs = kilnet.Input((8,))
    base = kilnet.Model(inputs, layers.Dense(3)(inputs), name="base")
    base.set_weights([np.full((8, 3), 0.1, np.float32), np.zeros(3, np.float32)])
    base.trainable = False
    inputs = kilnet.Input((8,))
    model = kilnet.Model(inputs, layers.Dense(1)(base(inputs, training=False)))
    model(np.ones((2, 8), np.float32))   # built by its first call
    np.testing.assert_array_equal(base.get_weights()[0], np.float32(0.1))
    assert len(model.trainable_weights) == 2   # only the new head


def test_build_with_a_seed_still_draws_every_weight_from_it():
    def nested():
        inputs = kilnet.Input((4,))
        inner = kilnet.Model(inputs, layers.Dense(3)(inputs))
        outer_in = kilnet.Input((4,))
        return kilnet.Model(outer_in, layers.Dense(2)(inner(outer_in)))

    first, second = nested(), nested()
    second.build()                  # draws from a fresh seed first
    first.build(seed=7)
    second.build(seed=7)            # redrawn from the seed, nested model included
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
