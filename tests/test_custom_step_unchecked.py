"""A model's own train_step (Keras's JAX form) in fit's normal loop is applied as it comes, as
kilnet's own step is (kilnet.programs.custom_train_step): the chunk's closing check sees a
non-finite step and the host replays the chunk checked. Its compiled program stays about
the size of the step itself however many weights the model has (keras.io's real_nvp, 120
weights, took 40-75 s to compile each of its training programs when every step was checked
leaf by leaf), and a non-finite step still stops fit at that step with the weights before it.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
import pytest

import kilnet
from kilnet.errors import NonFiniteError
from _keras_twins import OwnTrainStep

LAYERS = 12
FEATURES = 3
BATCH = 8


def _model_class(lib, peak_log=False):
    """A Model subclass with a train_step of its own in Keras's JAX form over a list of
    Dense layers (real_nvp's shape: many weights, a loss tracker, stateless_call).
    `peak_log`: the step learns from its batch clipped to [-10, 10] and also logs ten times
    the batch's largest value, a log of that batch alone."""

    class OwnStep(OwnTrainStep, lib.Model):
        def __init__(self):
            super().__init__()
            self.stack = [lib.layers.Dense(FEATURES, activation="tanh", name=f"d{i}")
                          for i in range(LAYERS)]
            self.tracker = lib.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.tracker]

        def call(self, x):
            for layer in self.stack:
                x = layer(x)
            return x

        def step_loss(self, tv, ntv, data, step):
            x = lib.ops.clip(data, -10.0, 10.0) if peak_log else data
            y, ntv = self.stateless_call(tv, ntv, x)
            return lib.ops.mean(lib.ops.square(y - x)), ntv

        def train_step(self, state, data):
            logs, state = super().train_step(state, data)
            if peak_log:
                logs["peak"] = lib.ops.max(data) * 10.0
            return logs, state

    return OwnStep


def _twins(peak_log=False):
    keras.utils.clear_session()
    theirs = _model_class(keras, peak_log)()
    ours = _model_class(kilnet, peak_log)()
    x = np.zeros((1, FEATURES), np.float32)
    theirs(x), ours(x)
    ours.set_weights(theirs.get_weights())
    theirs.compile(optimizer=keras.optimizers.Adam(0.01))
    ours.compile(optimizer=kilnet.optimizers.Adam(0.01))
    return theirs, ours


def _data(rows):
    return np.random.default_rng(0).normal(size=(rows, FEATURES)).astype(np.float32)


def _train_programs(model, kind):
    return [program for key, program in model.compiled._programs.items() if key[0] == kind]


def _ands(program) -> int:
    return program.as_text().count(" and(")


def test_its_training_program_does_not_grow_with_the_weights_squared():
    theirs, ours = _twins()
    x = _data(4 * BATCH)
    want = theirs.fit(x, batch_size=BATCH, epochs=2, shuffle=False, verbose=0).history
    have = ours.fit(x, batch_size=BATCH, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(have["loss"], want["loss"], rtol=1e-5)
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-5, atol=1e-6)
    (program,) = _train_programs(ours, "train")
    leaves = 3 * len(ours.trainable_weights)   # weights, Adam's two moments
    # Checked leaf by leaf, each leaf's select held the whole chain of per-leaf "and"s
    # (here 3,000 of them); the closing check joins its few groups' results.
    assert _ands(program) < leaves


def test_a_non_finite_step_stops_fit_there_with_the_weights_before_it():
    theirs, ours = _twins()
    x = _data(3 * BATCH)
    theirs.fit(x[:BATCH], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    bad = x.copy()
    bad[BATCH + 2, 1] = 3e38   # finite, in the second batch: its square is not
    with pytest.raises(NonFiniteError, match=r"epoch 1, step 2\b"):
        ours.fit(bad, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-5, atol=1e-6)
    # found by the checked replay, whose program grows with the leaves, not their square:
    # its few uses of the step's finiteness each hold the chain of per-leaf "and"s
    (replay,) = _train_programs(ours, "train_checked")
    leaves = 3 * len(ours.trainable_weights)
    assert _ands(replay) < 6 * leaves < leaves ** 2 / 10


def test_a_step_whose_log_alone_is_not_finite_stops_fit_there():
    """The step's weights and metric variables stay finite (it learns from the clipped
    batch) and the next step's log is finite again: the fault is in that step's logs only."""
    theirs, ours = _twins(peak_log=True)
    x = _data(3 * BATCH)
    theirs.fit(x[:BATCH], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    bad = x.copy()
    bad[BATCH + 2, 1] = 3e38   # ten times it is not finite
    with pytest.raises(NonFiniteError, match=r"epoch 1, step 2\b"):
        ours.fit(bad, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-5, atol=1e-6)
