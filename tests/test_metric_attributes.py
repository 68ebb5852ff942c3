"""Metric objects a model or its layers keep as attributes (`self.tracker =
kilnet.metrics.Mean(name="l")` in `__init__`) are in `model.metrics` after the loss tracker and
the compiled metrics, as in Keras 3: a JAX-form train_step written for Keras finds them in
`metrics_variables` at Keras's positions, the built-in steps log their results (without
updating them), and fit, evaluate and the on_batch calls reset them and leave their Variables
as Keras's do. Each case runs Keras itself from the same weights."""

from __future__ import annotations

import os
import zipfile

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import h5py  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

X = np.linspace(0, 1, 24, dtype="float32").reshape(8, 3)
Y = np.ones((8, 1), "float32")
KERNEL = np.full((3, 1), 0.5, "float32")
BIAS = np.zeros(1, "float32")


def _values(variables) -> list:
    return [float(np.asarray(v.value if hasattr(v, "value") else v)) for v in variables]


def tracked_step_model(lib):
    """A model whose own JAX train_step updates a tracker kept as an attribute, finding its
    state in metrics_variables by position, as code written for Keras does."""
    class Tracked(lib.Model):
        def __init__(self):
            super().__init__(name="tracked")
            self.d = lib.layers.Dense(1, name="d")
            self.tracker = lib.metrics.Mean(name="l")

        def call(self, x, training=None):
            return self.d(x)

        def train_step(self, state, data):
            trainable, non_trainable, optimizer_vars, metric_vars = state
            x, y = data[0], data[1]

            def loss_of(trainable):
                y_pred, _ = self.stateless_call(trainable, non_trainable, x, training=True)
                return lib.ops.mean((y_pred - y) ** 2)

            loss, grads = jax.value_and_grad(loss_of)(trainable)
            trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                       trainable)
            metric_vars = list(metric_vars)
            metric_vars[2:4] = self.tracker.stateless_update_state(metric_vars[2:4], loss)
            logs = {"l": self.tracker.stateless_result(metric_vars[2:4]),
                    "count": metric_vars[3]}
            return logs, (trainable, non_trainable, optimizer_vars, metric_vars)

        def test_step(self, state, data):
            trainable, non_trainable, metric_vars = state
            y_pred, _ = self.stateless_call(trainable, non_trainable, data[0])
            metric_vars = list(metric_vars)
            metric_vars[2:4] = self.tracker.stateless_update_state(
                metric_vars[2:4], lib.ops.mean(lib.ops.abs(y_pred - data[1])))
            logs = {"l": self.tracker.stateless_result(metric_vars[2:4]),
                    "count": metric_vars[3]}
            return logs, (trainable, non_trainable, metric_vars)

    model = Tracked()
    model.compile(optimizer=lib.optimizers.SGD(0.1))
    model(X)
    model.d.set_weights([KERNEL, BIAS])
    return model


def test_an_own_train_step_finds_an_attribute_metric_at_keras_positions():
    ours, theirs = tracked_step_model(kilnet), tracked_step_model(keras)
    assert [m.name for m in ours.metrics] == [m.name for m in theirs.metrics] == ["loss", "l"]
    assert ([v.name for v in ours.metrics_variables]
            == [v.name for v in theirs.metrics_variables]
            == ["total", "count", "total", "count"])
    mine = ours.fit(X, Y, batch_size=4, epochs=3, shuffle=False, verbose=0).history
    reference = theirs.fit(X, Y, batch_size=4, epochs=3, shuffle=False, verbose=0).history
    assert sorted(mine) == sorted(reference)
    for name in reference:
        np.testing.assert_allclose(mine[name], reference[name], rtol=1e-6, atol=1e-6)
    assert mine["count"] == [2.0, 2.0, 2.0]   # reset at each epoch's start: two batches each
    # fit leaves the last epoch's state in the tracker, as Keras's
    np.testing.assert_allclose(_values(ours.tracker.variables),
                               _values(theirs.tracker.variables), rtol=1e-6)
    assert float(ours.tracker.result()) == pytest.approx(mine["l"][-1], rel=1e-6)
    # an own test_step's evaluation starts from the reset state and leaves its own
    mine = ours.evaluate(X, Y, batch_size=4, verbose=0, return_dict=True)
    reference = theirs.evaluate(X, Y, batch_size=4, verbose=0, return_dict=True)
    assert mine["count"] == reference["count"] == 2.0
    np.testing.assert_allclose(mine["l"], reference["l"], rtol=1e-6)
    np.testing.assert_allclose(_values(ours.tracker.variables),
                               _values(theirs.tracker.variables), rtol=1e-6)


def gap_model(lib):
    """A model holding a metric the built-in steps never update."""
    class WithGap(lib.Model):
        def __init__(self):
            super().__init__(name="with_gap")
            self.d = lib.layers.Dense(1, name="d")
            self.gap = lib.metrics.Mean(name="gap")

        def call(self, x, training=None):
            return self.d(x)

    model = WithGap()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    model(X)
    model.d.set_weights([KERNEL, BIAS])
    return model


def test_built_in_fit_and_evaluate_log_an_attribute_metric():
    ours, theirs = gap_model(kilnet), gap_model(keras)
    fit = dict(batch_size=4, epochs=2, shuffle=False, verbose=0, validation_data=(X, Y))
    mine, reference = ours.fit(X, Y, **fit).history, theirs.fit(X, Y, **fit).history
    assert list(mine) == list(reference) == ["gap", "loss", "mae", "val_gap", "val_loss",
                                             "val_mae"]
    for name in reference:
        np.testing.assert_allclose(mine[name], reference[name], rtol=1e-6, atol=1e-7)
    assert mine["gap"] == [0.0, 0.0]
    mine = ours.evaluate(X, Y, verbose=0, return_dict=True)
    reference = theirs.evaluate(X, Y, verbose=0, return_dict=True)
    assert list(mine) == list(reference) == ["gap", "loss", "mae"]
    np.testing.assert_allclose(list(mine.values()), list(reference.values()), rtol=1e-6)
    np.testing.assert_allclose(ours.evaluate(X, Y, verbose=0),
                               theirs.evaluate(X, Y, verbose=0), rtol=1e-6)   # loss, mae, gap
    # Keras 3 names the compiled metrics together "compile_metrics"
    assert ours.metrics_names == ["loss", "mae", "gap"]
    assert theirs.metrics_names == ["loss", "compile_metrics", "gap"]
    mine = ours.train_on_batch(X, Y, return_dict=True)
    reference = theirs.train_on_batch(X, Y, return_dict=True)
    assert list(mine) == list(reference) == ["gap", "loss", "mae"]
    np.testing.assert_allclose(list(mine.values()), list(reference.values()), rtol=1e-6)


class Holder:
    """Layers holding metrics, nested: Keras lists a metric of a layer held by a layer once
    per level, and its metrics_variables with it."""

    @staticmethod
    def model(lib):
        class Inner(lib.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.inner = lib.layers.Dense(2, name="inner")
                self.hm = lib.metrics.Mean(name="hm")

            def call(self, x, training=None):
                return self.inner(x)

        class Outer(lib.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.h = Inner(name="h")
                self.om = lib.metrics.Sum(name="om")

            def call(self, x, training=None):
                return self.h(x)

        class Net(lib.Model):
            def __init__(self):
                super().__init__(name="net")
                self.o = Outer(name="o")
                self.d = lib.layers.Dense(1, name="d")
                self.tracker = lib.metrics.Mean(name="l")

            def call(self, x, training=None):
                return self.d(self.o(x))

        return Net()


def test_layers_metrics_in_keras_order_before_and_after_compile(tmp_path):
    ours, theirs = Holder.model(kilnet), Holder.model(keras)
    before = ["l", "om", "hm", "hm"]
    assert [m.name for m in ours.metrics] == [m.name for m in theirs.metrics] == before
    assert len(ours.metrics_variables) == len(theirs.metrics_variables) == 7
    assert [m.name for m in ours.o.metrics] == [m.name for m in theirs.o.metrics] == ["om", "hm"]
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss="mse")
    assert [m.name for m in ours.metrics] == [m.name for m in theirs.metrics] == [
        "loss", *before]
    assert ([v.name for v in ours.metrics_variables]
            == [v.name for v in theirs.metrics_variables])
    ours(X)
    theirs(X)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.evaluate(X, Y, verbose=0), theirs.evaluate(X, Y, verbose=0),
                               rtol=1e-6)   # loss, l, om, hm, hm
    # the metrics' state is in no weights file, as Keras writes none
    groups = {}
    for lib, model in (("kilnet", ours), ("keras", theirs)):
        model.tracker.update_state(3.0)
        path = tmp_path / f"{lib}.weights.h5"
        model.save_weights(str(path))
        model.save(str(tmp_path / f"{lib}.keras"))
        with zipfile.ZipFile(tmp_path / f"{lib}.keras") as archive:
            archive.extract("model.weights.h5", tmp_path / lib)
        for name, path in (("weights.h5", path), (".keras", tmp_path / lib / "model.weights.h5")):
            with h5py.File(path) as f:
                names = []
                f.visit(names.append)
            groups[lib, name] = sorted(names)
    assert groups["kilnet", "weights.h5"] == groups["keras", "weights.h5"]
    assert groups["kilnet", ".keras"] == groups["keras", ".keras"]
    assert not any("tracker" in name or "hm" in name for name in sum(groups.values(), []))


def test_a_metrics_override_replaces_the_list():
    """Keras's way for a model's own steps: the override is the whole list, and the built-in
    evaluate logs its metrics' results, reset (kilnet logs the loss too: see the README)."""
    lists = {}
    for lib in (kilnet, keras):
        class Overridden(lib.Model):
            def __init__(self):
                super().__init__(name="overridden")
                self.d = lib.layers.Dense(1, name="d")
                self.kept = lib.metrics.Mean(name="kept")
                self.other = lib.metrics.Mean(name="other")

            def call(self, x, training=None):
                return self.d(x)

            @property
            def metrics(self):
                return [self.kept]

        model = Overridden()
        model.compile(optimizer="sgd", loss="mse")
        names = ([m.name for m in model.metrics], len(model.metrics_variables),
                 model.metrics_names)
        model.kept.update_state(4.0)
        logs = model.evaluate(X, Y, verbose=0, return_dict=True)
        lists[lib.__name__] = names, logs["kept"], "other" in logs, float(model.kept.result())
    assert lists["kilnet"] == lists["keras"] == ((["kept"], 2, ["kept"]), 0.0, False, 0.0)


def test_reset_metrics_and_the_state_left_by_each_call():
    ours, theirs = gap_model(kilnet), gap_model(keras)
    left = {}
    for lib, model in (("kilnet", ours), ("keras", theirs)):
        seen = []
        model.gap.update_state(3.0)
        model.reset_metrics()
        seen.append(float(model.gap.result()))
        model.gap.update_state(3.0)
        model.evaluate(X, Y, verbose=0)   # resets, as each evaluation starts
        seen.append(float(model.gap.result()))
        model.gap.update_state(5.0)
        model.test_on_batch(X, Y)
        seen.append(float(model.gap.result()))
        model.gap.update_state(5.0)
        model.predict(X, verbose=0)   # leaves metrics alone
        seen.append(float(model.gap.result()))
        left[lib] = seen
    assert left["kilnet"] == left["keras"] == [0.0, 0.0, 0.0, 5.0]
