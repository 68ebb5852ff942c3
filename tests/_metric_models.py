"""What the tests of metrics that hold layers share (keras.io's DDIM and GAN-ADA keep a KID
metric holding an InceptionV3 encoder as a model's attribute): the metric's tracker, for
kilnet or Keras alike, and weights drawn from a seed, so that a load that missed an array
shows."""

from __future__ import annotations

import numpy as np


def tracked_metric(lib):
    """A Metric of `lib` (kilnet or keras) whose result is its `kid_tracker`'s mean; a
    subclass adds the layers it holds (after the tracker, in attribute order) and its
    update_state."""

    class TrackedMetric(lib.metrics.Metric):
        def __init__(self, name="kid", **kwargs):
            super().__init__(name=name, **kwargs)
            self.kid_tracker = lib.metrics.Mean(name="kid_tracker")

        def result(self):
            return self.kid_tracker.result()

        def reset_state(self):
            self.kid_tracker.reset_state()

    return TrackedMetric


def draw_weights(parts, seed) -> None:
    """Set every weight of each of `parts` (models or layers) to values in [0.5, 1.5) drawn
    from `seed`."""
    rng = np.random.default_rng(seed)
    for part in parts:
        part.set_weights([rng.random(w.shape).astype("float32") + 0.5
                          for w in part.get_weights()])
