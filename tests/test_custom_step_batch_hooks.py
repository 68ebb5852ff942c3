"""A model's own train_step fed by a PyDataset or a generator, with a callback reading every
batch's end: the per-batch logs are Keras's (the buffers that carry them were made before
the step's logs were known, and the first chunk failed with a pytree structure error)."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402
from _keras_twins import OwnTrainStep  # noqa: E402

X = np.linspace(-1, 1, 24, dtype="float32").reshape(8, 3)
Y = np.linspace(0, 1, 8, dtype="float32").reshape(8, 1)


def _run(lib, source):
    class Model(OwnTrainStep, lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(1, kernel_initializer="ones", name="dense")
            self.tracker = lib.metrics.Mean(name="loss")

        def call(self, x):
            return self.dense(x)

        @property
        def metrics(self):
            return [self.tracker]

        def step_loss(self, trainable, non_trainable, data, step):
            x, y = data
            predicted, new = self.stateless_call(trainable, non_trainable, x)
            return lib.ops.mean((predicted - y) ** 2), new

    class Batches(lib.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return X[4 * index:4 * index + 4], Y[4 * index:4 * index + 4]

    seen = []

    class Record(lib.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, round(float(logs["loss"]), 6)))

    model = Model()
    model.compile(optimizer=lib.optimizers.SGD(0.1))
    data = Batches() if source == "pydataset" else (
        (X[i:i + 4], Y[i:i + 4]) for _ in range(2) for i in (0, 4))
    model.fit(data, epochs=2, steps_per_epoch=2, shuffle=False, verbose=0,
              callbacks=[Record()])
    return seen


@pytest.mark.parametrize("source", ["pydataset", "generator"])
def test_every_batch_end_sees_the_own_steps_logs_as_keras(source):
    ours, theirs = _run(kilnet, source), _run(keras, source)
    assert len(ours) == 4
    assert ours == theirs
