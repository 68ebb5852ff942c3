"""A model's own compute_loss in the forms keras.io's examples write it: Keras's earlier
signature (allow_empty instead of training, as the knowledge-distillation example has it),
compile() with metrics but no loss, and a model that holds other models. Against Keras 3: the
same losses, metrics and weights after training."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference training is Keras's")

import kilnet  # noqa: E402


def distiller_class(lib):
    """keras.io's knowledge-distillation Distiller, for Keras or kilnet."""

    class Distiller(lib.Model):
        def __init__(self, student, teacher):
            super().__init__()
            self.teacher = teacher
            self.student = student

        def compile(self, optimizer, metrics, student_loss_fn, distillation_loss_fn,
                    alpha=0.1, temperature=3):
            super().compile(optimizer=optimizer, metrics=metrics)
            self.student_loss_fn = student_loss_fn
            self.distillation_loss_fn = distillation_loss_fn
            self.alpha = alpha
            self.temperature = temperature

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         allow_empty=False):
            teacher_pred = self.teacher(x, training=False)
            student_loss = self.student_loss_fn(y, y_pred)
            distillation_loss = self.distillation_loss_fn(
                lib.ops.softmax(teacher_pred / self.temperature, axis=1),
                lib.ops.softmax(y_pred / self.temperature, axis=1),
            ) * (self.temperature**2)
            return self.alpha * student_loss + (1 - self.alpha) * distillation_loss

        def call(self, x):
            return self.student(x)

    return Distiller


def _mlp(lib, width, name):
    return lib.Sequential([lib.Input((6,)), lib.layers.Dense(width, activation="relu"),
                           lib.layers.Dense(4)], name=name)


def _distill(lib, weights):
    teacher, student = _mlp(lib, 12, "teacher"), _mlp(lib, 5, "student")
    for model, values in zip((teacher, student), weights):
        model.set_weights(values)
    distiller = distiller_class(lib)(student=student, teacher=teacher)
    distiller.compile(optimizer=lib.optimizers.SGD(0.1),
                      metrics=[lib.metrics.SparseCategoricalAccuracy()],
                      student_loss_fn=lib.losses.SparseCategoricalCrossentropy(from_logits=True),
                      distillation_loss_fn=lib.losses.KLDivergence(), alpha=0.1,
                      temperature=10)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6)).astype("float32"), rng.integers(0, 4, 32)
    history = distiller.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return history.history, distiller.evaluate(x, y, verbose=0), student.get_weights()


def test_the_distillation_example_trains_as_keras():
    rng = np.random.default_rng(1)
    weights = [[rng.normal(scale=0.5, size=w.shape).astype("float32")
                for w in _mlp(keras, width, "m").get_weights()] for width in (12, 5)]
    mine, theirs = _distill(kilnet, weights), _distill(keras, weights)
    for key in ("loss", "sparse_categorical_accuracy"):
        np.testing.assert_allclose(mine[0][key], theirs[0][key], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mine[1], theirs[1], rtol=1e-4, atol=1e-6)
    for a, b in zip(mine[2], theirs[2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_labels_reach_compute_loss_without_a_compiled_loss_or_metrics():
    seen = []

    class OwnLoss(kilnet.Model):
        def __init__(self):
            super().__init__()
            self.dense = kilnet.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            seen.append(None if y is None else tuple(y.shape))
            return kilnet.ops.mean((y_pred - y) ** 2)

    model = OwnLoss()
    model.compile(optimizer="sgd")
    model.fit(np.ones((8, 3), "float32"), np.ones((8, 1), "float32"), batch_size=4,
              epochs=1, verbose=0)
    assert seen and all(shape == (4, 1) for shape in seen)
