"""What a model's metrics and its own JAX-form train_step / test_step report, as Keras 3
reports it: the paths of metric variables, and the order and names of the logs a step
returns (nested result dicts flattened where their key sorts, as Keras's logs are). Each case
runs Keras itself on the same data and weights."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import jax  # noqa: E402
import numpy as np  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

X = np.linspace(0, 1, 32, dtype="float32").reshape(8, 4)
Y = np.ones((8, 1), "float32")


def _dense_model(lib, cls=None):
    inputs = lib.Input((4,), name="x")
    outputs = lib.layers.Dense(1, kernel_initializer="ones", name="d")(inputs)
    return (cls or lib.Model)(inputs, outputs)


def test_metric_variable_paths_follow_the_metric_name():
    paths = {}
    for lib in (keras, kilnet):
        lib.utils.clear_session()
        model = _dense_model(lib)
        model.compile("sgd", "mse", metrics=["mae", lib.metrics.RootMeanSquaredError()])
        model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
        held = lib.metrics.Mean()
        paths[lib] = ([v.path for v in model.metrics_variables],
                      [v.path for v in held.variables])
    assert paths[kilnet] == paths[keras]
    assert paths[keras][1] == ["mean/total", "mean/count"]


def _walk_metrics(model, metrics_variables, y, y_pred, loss, sample_weight=None):
    """Keras's guide loop: each of model.metrics updated from its slice of the state, the
    loss tracker with the loss, the others with (y, y_pred); logs by metric name."""
    logs, new = {}, []
    for metric in model.metrics:
        state = metrics_variables[len(new):len(new) + len(metric.variables)]
        if metric.name.endswith("loss"):
            state = metric.stateless_update_state(state, loss)
        else:
            state = metric.stateless_update_state(state, y, y_pred,
                                                  sample_weight=sample_weight)
        logs[metric.name] = metric.stateless_result(state)
        new += state
    return logs, new


def guide_model(lib, last_result_only=False):
    """keras.io's "Customizing what happens in fit() with JAX": a train_step and test_step
    walking model.metrics; `last_result_only` as the guide writes its first train_step
    (`logs = metric.stateless_result(...)` in the loop: the compiled metrics' dict)."""
    class Guide(lib.Model):
        def train_step(self, state, data):
            trainable, non_trainable, optimizer_vars, metric_vars = state
            x, y = data

            def loss_fn(trainable):
                y_pred, _ = self.stateless_call(trainable, non_trainable, x, training=True)
                return self.compute_loss(x, y, y_pred), y_pred

            (loss, y_pred), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
            trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                       trainable)
            logs, metric_vars = _walk_metrics(self, metric_vars, y, y_pred, loss)
            if last_result_only:
                logs = logs[self.metrics[-1].name]
            return logs, (trainable, non_trainable, optimizer_vars, metric_vars)

        def test_step(self, state, data):
            trainable, non_trainable, metric_vars = state
            x, y = data
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x)
            loss = self.compute_loss(x, y, y_pred)
            logs, metric_vars = _walk_metrics(self, metric_vars, y, y_pred, loss)
            return logs, (trainable, non_trainable, metric_vars)

    model = _dense_model(lib, Guide)
    model.compile(lib.optimizers.SGD(0.1), "mse", metrics=["mae"])
    return model


def _rounded(logs):
    return {name: round(float(value), 5) for name, value in logs.items()}


def _history(model):
    history = model.fit(X, Y, epochs=2, batch_size=4, verbose=0, shuffle=False,
                        validation_data=(X, Y))
    return {name: [round(v, 5) for v in values] for name, values in history.history.items()}


def test_a_step_logging_the_compiled_metrics_dict_logs_as_keras():
    # {"loss": ..., "compile_metrics": {"mae": ...}}: Keras flattens the dict where its key
    # sorts, so "mae" comes before "loss" in the history and evaluate's dict
    got = {}
    for lib in (keras, kilnet):
        lib.utils.clear_session()
        model = guide_model(lib)
        history = _history(model)
        got[lib] = (list(history), history, [m.name for m in model.metrics],
                    len(model.metrics_variables),
                    list(model.evaluate(X, Y, verbose=0, return_dict=True)),
                    _rounded(model.evaluate(X, Y, verbose=0, return_dict=True)),
                    [round(v, 5) for v in model.evaluate(X, Y, verbose=0)],
                    model.metrics_names)
    assert got[kilnet] == got[keras]
    assert got[keras][0][:2] == ["mae", "loss"]
    assert got[keras][2] == ["loss", "compile_metrics"]


def test_the_guides_train_step_returning_the_last_metrics_result():
    got = {}
    for lib in (keras, kilnet):
        lib.utils.clear_session()
        got[lib] = _history(guide_model(lib, last_result_only=True))
    assert got[kilnet] == got[keras]
    assert list(got[keras]) == ["mae", "val_loss", "val_mae"]


def test_the_compiled_metrics_of_several_outputs_in_a_step_of_yours():

    def build(lib):
        class Step(lib.Model):
            def train_step(self, state, data):
                trainable, non_trainable, optimizer_vars, metric_vars = state
                x, y, sample_weight = data
                y_pred, _ = self.stateless_call(trainable, non_trainable, x, training=True)
                logs, metric_vars = _walk_metrics(self, metric_vars, y, y_pred, 1.0,
                                                  sample_weight)
                return logs, (trainable, non_trainable, optimizer_vars, metric_vars)

        inputs = lib.Input((4,), name="x")
        a = lib.layers.Dense(1, kernel_initializer="ones", name="a")(inputs)
        b = lib.layers.Dense(1, kernel_initializer="zeros", name="b")(inputs)
        model = Step(inputs, [a, b])
        model.compile("sgd", ["mse", "mae"], metrics=[["mae"], ["mse"]],
                      weighted_metrics=[["mae"], []])
        return model

    weights = np.linspace(0, 1, 8).astype("float32")
    got = {}
    for lib in (keras, kilnet):
        lib.utils.clear_session()
        model = build(lib)
        history = model.fit(X, [Y, 2 * Y], sample_weight=weights, epochs=1, batch_size=8,
                            verbose=0).history
        # model.metrics hold a tracker per output's loss after the compiled metrics
        got[lib] = ({name: round(values[0], 5) for name, values in history.items()},
                    [metric.name for metric in model.metrics], len(model.metrics_variables))
    assert got[kilnet] == got[keras]
    assert got[keras][1] == ["loss", "compile_metrics", "a_loss", "b_loss"]
    assert len(got[keras][0]) == 6


def hooked_model(lib, hook):
    """A model overriding compute_metrics (an extra entry and a metric of its own, as Keras's
    compute_metrics docstring shows) or get_metrics_result (renamed entries)."""
    class Hooked(lib.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.spread = lib.metrics.Mean(name="spread")

        if hook == "compute_metrics":
            def compute_metrics(self, x, y, y_pred, sample_weight=None):
                results = dict(super().compute_metrics(x, y, y_pred, sample_weight))
                self.spread.update_state(lib.ops.abs(y_pred - y))
                results["spread"] = self.spread.result()
                results["double_mae"] = results["mae"] * 2
                return results
        else:
            def get_metrics_result(self):
                results = super().get_metrics_result()
                return {"my_" + name: value for name, value in results.items()}

    inputs = lib.Input((4,), name="x")
    outputs = lib.layers.Dense(1, kernel_initializer="ones", name="d")(inputs)
    model = Hooked(inputs, outputs)
    model.compile(lib.optimizers.SGD(0.05), "mse", metrics=["mae"])
    return model


def _fit_and_evaluate(model):
    history = model.fit(X, Y, epochs=2, batch_size=3, verbose=0, shuffle=False,
                        validation_data=(X[:5], Y[:5]))
    history = {name: [round(v, 4) for v in values] for name, values in history.history.items()}
    return (list(history), history,
            {name: round(v, 4) for name, v in model.evaluate(X, Y, verbose=0,
                                                             return_dict=True).items()},
            [round(v, 4) for v in model.evaluate(X, Y, verbose=0)])


def test_fit_and_evaluate_log_what_a_compute_metrics_override_returns():
    got = {}
    for lib in (keras, kilnet):
        lib.utils.clear_session()
        got[lib] = _fit_and_evaluate(hooked_model(lib, "compute_metrics"))
    assert got[kilnet] == got[keras]
    assert got[keras][0] == ["double_mae", "loss", "mae", "spread", "val_double_mae",
                             "val_loss", "val_mae", "val_spread"]


def test_fit_and_evaluate_log_what_a_get_metrics_result_override_returns():
    got = {}
    for lib in (keras, kilnet):
        lib.utils.clear_session()
        got[lib] = _fit_and_evaluate(hooked_model(lib, "get_metrics_result"))
    assert got[kilnet] == got[keras]
    assert got[keras][0] == ["my_loss", "my_mae", "my_spread", "val_my_loss", "val_my_mae",
                             "val_my_spread"]


def test_the_logs_each_callback_hook_gets_from_a_step_logging_a_dict():
    got = {}
    for lib in (keras, kilnet):
        lib.utils.clear_session()
        seen = {}

        class Record(lib.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                seen.setdefault("train_batch", list(logs))

            def on_test_batch_end(self, batch, logs=None):
                seen.setdefault("test_batch", list(logs))

            def on_test_end(self, logs=None):
                seen.setdefault("test_end", list(logs))

            def on_epoch_end(self, epoch, logs=None):
                seen.setdefault("epoch", list(logs))

            def on_train_end(self, logs=None):
                seen.setdefault("train_end", list(logs))

        guide_model(lib).fit(X, Y, epochs=1, batch_size=4, verbose=0,
                             validation_data=(X, Y), callbacks=[Record()])
        got[lib] = seen
    assert got[kilnet] == got[keras]
    assert got[keras]["test_end"] == ["loss", "mae"]   # a flat copy, sorted again
    assert got[keras]["test_batch"] == ["mae", "loss"]


def _mixed_float16_history(lib, model_class):
    lib.utils.clear_session()
    lib.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = lib.Input((4,), name="x")
        hidden = lib.layers.Dense(3, kernel_initializer="ones", name="h")(inputs)
        outputs = lib.layers.Dense(1, kernel_initializer="ones", name="d",
                                   dtype="float32")(hidden)
        model = (model_class or lib.Model)(inputs, outputs)
        model.compile(lib.optimizers.SGD(0.01), "mse", metrics=["mae"])
        history = model.fit(X, Y, epochs=3, batch_size=4, verbose=0, shuffle=False).history
    finally:
        lib.mixed_precision.set_global_policy("float32")
    return history


def test_a_compute_metrics_override_trains_under_mixed_float16_as_keras():
    # the loss is scaled before its gradients are taken, and the compiled LossScaleOptimizer
    # unscales them: the same steps as without the override
    got = {}
    for lib in (keras, kilnet):
        class Passing(lib.Model):
            def compute_metrics(self, x, y, y_pred, sample_weight=None):
                return super().compute_metrics(x, y, y_pred, sample_weight)

        got[lib] = [_mixed_float16_history(lib, cls) for cls in (None, Passing)]
    for plain, hooked in [got[kilnet], got[keras], (got[kilnet][1], got[keras][1])]:
        assert list(plain) == list(hooked) == ["loss", "mae"]
        for name in plain:
            np.testing.assert_allclose(plain[name], hooked[name], rtol=1e-3)
    assert got[keras][0]["loss"][-1] < 0.75 * got[keras][0]["loss"][0]   # it trains


def test_a_metric_hook_of_several_outputs_logs_each_outputs_loss_as_keras():
    # Keras's model.metrics hold a tracker per output's loss, which its steps update and
    # get_metrics_result reads; evaluate's list puts them after the loss, as Keras's
    # _flatten_metrics_in_order does (the compiled metrics' own names, "mae", match no log
    # name "a_mae" there, so those follow sorted by name)
    weights = np.linspace(0, 1, 8).astype("float32")
    got = {}
    for lib in (keras, kilnet):
        class Hooked(lib.Model):
            def compute_metrics(self, x, y, y_pred, sample_weight=None):
                return dict(super().compute_metrics(x, y, y_pred, sample_weight), extra=1.0)

        lib.utils.clear_session()
        inputs = lib.Input((4,), name="x")
        a = lib.layers.Dense(1, kernel_initializer="ones", name="a")(inputs)
        b = lib.layers.Dense(1, kernel_initializer="zeros", name="b")(inputs)
        model = Hooked(inputs, [a, b])
        model.compile(lib.optimizers.SGD(0.05), ["mse", "mae"], loss_weights=[0.5, 2.0],
                      metrics=[["mae"], ["mse"]], weighted_metrics=[["mae"], []])
        history = model.fit(X, [Y, 2 * Y], sample_weight=weights, epochs=2, batch_size=3,
                            verbose=0, shuffle=False, validation_data=(X, [Y, 2 * Y])).history
        got[lib] = ({name: [round(v, 4) for v in values] for name, values in history.items()},
                    [round(float(v), 4) for v in model.evaluate(X, [Y, 2 * Y], verbose=0)],
                    model.metrics_names)
    assert got[kilnet] == got[keras]
    assert list(got[keras][0]) == ["a_loss", "a_mae", "a_weighted_mae", "b_loss", "b_mse",
                                   "extra", "loss", *("val_" + name for name in (
                                       "a_loss", "a_mae", "a_weighted_mae", "b_loss",
                                       "b_mse", "extra", "loss"))]
    assert len(got[keras][1]) == 7 and got[keras][1][-1] == 1.0


def _two_output_history(lib, own_compute_loss):
    """fit + validation history of a two-output model with a pass-through compute_metrics
    override and the given compute_loss (rounded), built from fixed weights."""
    class Hooked(lib.Model):
        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            return super().compute_metrics(x, y, y_pred, sample_weight)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            return own_compute_loss(self, x, y, y_pred, sample_weight, training)

    lib.utils.clear_session()
    inputs = lib.Input((4,), name="x")
    a = lib.layers.Dense(1, kernel_initializer="ones", name="a")(inputs)
    b = lib.layers.Dense(1, kernel_initializer="zeros", name="b")(inputs)
    model = Hooked(inputs, [a, b])
    model.compile(lib.optimizers.SGD(0.05), ["mse", "mae"], loss_weights=[0.5, 2.0])
    history = model.fit(X, [Y, 2 * Y], epochs=2, batch_size=3, verbose=0, shuffle=False,
                        validation_data=(X, [Y, 2 * Y])).history
    return {name: [round(v, 4) for v in values] for name, values in history.items()}


def test_a_compute_loss_calling_super_logs_each_outputs_loss_as_keras():
    # `loss = super().compute_loss(...); return loss + extra`: Keras's compiled loss updates
    # each output's tracker inside the base compute_loss, so a_loss / b_loss log real values
    def plus_extra(self, x, y, y_pred, sample_weight, training):
        loss = super(type(self), self).compute_loss(x, y, y_pred, sample_weight,
                                                    training=training)
        return loss + 0.1 * lib_ops(self).mean(y_pred[1] ** 2)

    got = {lib: _two_output_history(lib, plus_extra) for lib in (keras, kilnet)}
    assert got[kilnet] == got[keras]
    assert min(got[keras]["a_loss"] + got[keras]["b_loss"]) > 0


def test_a_compute_loss_not_calling_super_leaves_each_outputs_loss_alone_as_keras():
    def own_loss(self, x, y, y_pred, sample_weight, training):
        return lib_ops(self).mean((y[0] - y_pred[0]) ** 2)

    got = {lib: _two_output_history(lib, own_loss) for lib in (keras, kilnet)}
    assert got[kilnet] == got[keras]
    # never reached, Keras's compiled loss never builds its trackers: they log nothing
    assert "a_loss" not in got[keras] and "b_loss" not in got[keras]


def lib_ops(model):
    return keras.ops if isinstance(model, keras.Model) else kilnet.ops


def test_a_compute_loss_reading_a_weight_trains_it_as_keras():
    # the extra term reads a kernel: Keras's step differentiates it with the rest (a weight
    # penalty), so the weights, losses and per-output losses follow Keras's
    def penalized(self, x, y, y_pred, sample_weight, training):
        loss = super(type(self), self).compute_loss(x, y, y_pred, sample_weight,
                                                    training=training)
        return loss + 0.1 * self.get_layer("a").kernel[0, 0] ** 2

    got = {lib: _two_output_history(lib, penalized) for lib in (keras, kilnet)}
    assert got[kilnet] == got[keras]
