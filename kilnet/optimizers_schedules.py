"""Keras-named learning-rate schedules, returned as Optax schedules (functions of the step)."""

from __future__ import annotations

import types

import optax


def ExponentialDecay(initial_learning_rate, decay_steps, decay_rate, staircase=False):
    return optax.exponential_decay(initial_learning_rate, transition_steps=decay_steps,
                                   decay_rate=decay_rate, staircase=staircase)


def CosineDecay(initial_learning_rate, decay_steps, alpha=0.0):
    return optax.cosine_decay_schedule(initial_learning_rate, decay_steps, alpha=alpha)


def PiecewiseConstantDecay(boundaries, values):
    if len(values) != len(boundaries) + 1:
        raise ValueError("values must have one more entry than boundaries. "
                         f"Received: boundaries={boundaries!r}, values={values!r}")
    return optax.piecewise_constant_schedule(
        values[0], {b: values[i + 1] / values[i] for i, b in enumerate(boundaries)})


schedules = types.SimpleNamespace(
    ExponentialDecay=ExponentialDecay, CosineDecay=CosineDecay,
    PiecewiseConstantDecay=PiecewiseConstantDecay)
