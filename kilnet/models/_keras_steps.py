"""Keras's default train_step and test_step in its JAX form, for a model that overrides
`compute_metrics` or `get_metrics_result`: Keras's fit and evaluate log what those return
(extra entries, renamed keys), so such a model runs these steps, which call them as Keras's
do, instead of kilnet's built-in steps (which compute the compiled metrics themselves).
They run inside kilnet's compiled loops as a train_step / test_step of yours would."""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp

from kilnet import _scope, utils


def keras_train_step(model, state, data):
    """One training step as Keras's JAX trainer runs it: the loss from `compute_loss`, its
    gradients applied by the optimizer, then the loss tracker and `compute_metrics`. Under a
    LossScaleOptimizer (mixed_float16) the gradients are of the scaled loss, which the
    compiled optimizer unscales, as Keras's `compute_loss_and_updates` scales it.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> class Hooked(kilnet.Model):
        ...     def compute_metrics(self, x, y, y_pred, sample_weight=None):
        ...         return dict(super().compute_metrics(x, y, y_pred, sample_weight), seen=1.0)
        >>> inputs = kilnet.Input((2,))
        >>> model = Hooked(inputs, kilnet.layers.Dense(1)(inputs))
        >>> type(model).train_step is keras_train_step   # a metric hook brings these steps
        True
        >>> model.compile("sgd", "mse")
        >>> sorted(model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0).history)
        ['loss', 'seen']
    """
    trainable, non_trainable, optimizer_vars, metric_vars = state
    x, y, sample_weight = utils.unpack_x_y_sample_weight(data)
    trainer = model.require_compiled()
    # (read first: the default compute_loss may make loss trackers, which the state lacks)
    bound = list(zip(model.metrics_variables, metric_vars))

    def loss_fn(trainable):
        y_pred, new_non_trainable = model.stateless_call(trainable, non_trainable, x,
                                                         training=True)
        with recording_output_losses(model) as output_losses:
            loss, _ = model.stateless_compute_loss(trainable, new_non_trainable, metric_vars,
                                                   x, y, y_pred, sample_weight, training=True)
        scaled = trainer.scale_loss(loss, optimizer_vars)
        return scaled, (loss, y_pred, new_non_trainable, output_losses)

    (_, (loss, y_pred, non_trainable, output_losses)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(trainable)
    # the Trainer's own apply: the compiled optimizer (a LossScaleOptimizer's unscaling too)
    trainable, optimizer_vars = trainer.stateless_apply(optimizer_vars, grads, trainable)
    logs, metric_vars = _metrics_after_batch(model, bound, loss, output_losses, x, y,
                                            y_pred, sample_weight)
    return logs, (trainable, non_trainable, optimizer_vars, metric_vars)


def keras_test_step(model, state, data):
    """One evaluation step as Keras's JAX trainer runs it (see keras_train_step): the loss
    from `compute_loss`, then the loss trackers and `compute_metrics`.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> class Renamed(kilnet.Model):
        ...     def get_metrics_result(self):
        ...         return {"my_" + k: v for k, v in super().get_metrics_result().items()}
        >>> inputs = kilnet.Input((2,))
        >>> model = Renamed(inputs, kilnet.layers.Dense(1, kernel_initializer="zeros")(inputs))
        >>> type(model).test_step is keras_test_step
        True
        >>> model.compile("sgd", "mse")
        >>> model.evaluate(np.ones((4, 2)), np.ones((4, 1)), verbose=0, return_dict=True)
        {'my_loss': 1.0}
    """
    trainable, non_trainable, metric_vars = state
    x, y, sample_weight = utils.unpack_x_y_sample_weight(data)
    bound = list(zip(model.metrics_variables, metric_vars))   # (see keras_train_step)
    y_pred, non_trainable = model.stateless_call(trainable, non_trainable, x, training=False)
    with recording_output_losses(model) as output_losses:
        loss, _ = model.stateless_compute_loss(trainable, non_trainable, metric_vars, x, y,
                                               y_pred, sample_weight, training=False)
    logs, metric_vars = _metrics_after_batch(model, bound, loss, output_losses, x, y,
                                            y_pred, sample_weight)
    return logs, (trainable, non_trainable, metric_vars)


def _metrics_after_batch(model, bound, loss, output_losses, x, y, y_pred, sample_weight):
    """(logs, new metrics_variables) after a batch, from the state `bound` ((Variable, value)
    pairs of model.metrics_variables as the step began): the loss
    tracker takes the loss weighted by the batch's size, each output's tracker each of
    `output_losses` (recording_output_losses), and `model.compute_metrics` the rest,
    as Keras's steps update them; the model's metric Variables are left as they were."""
    variables = [variable for variable, _ in bound]
    scope = _scope.Scope(bindings={id(v): value for v, value in bound},
                         trains_nothing=True)
    with _scope.opened(scope):
        batch_size = jax.tree.leaves(x)[0].shape[0]
        loss_tracker = model.compiled.keras_metrics()[0]
        loss_tracker.update_state(loss, sample_weight=batch_size)
        _update_output_loss_trackers(model, output_losses, batch_size)
        # read inside the scope: a result that is a Variable reads its bound state
        logs = jax.tree.map(jnp.asarray, model.compute_metrics(x, y, y_pred, sample_weight))
    new = [scope.assigned.get(id(v), scope.bindings[id(v)]) for v in variables]
    return logs, new


def _update_output_loss_trackers(model, output_losses, batch_size):
    """Each output's loss tracker ("a_loss") takes that output's batch loss, before its loss
    weight, once for each time the step reached the default compute_loss, as Keras's
    compiled loss updates them when it runs: a compute_loss of yours that never calls
    `super().compute_loss(...)` leaves them alone."""
    trackers = model.compiled.output_loss_trackers()
    for losses in output_losses:
        for name, tracker in trackers.items():
            if id(tracker.variables[0]) not in _scope.current().bindings:
                continue   # made in this very trace (the logs are then found again)
            tracker.update_state(losses[name], sample_weight=batch_size)


_recording = contextvars.ContextVar("kilnet_output_losses", default=None)


@contextlib.contextmanager
def recording_output_losses(model):
    """Collect, in the list it yields, each output's batch loss ({"a_loss": ...}) each time
    `model`'s default compute_loss runs inside (record_output_losses): the steps update the
    per-output loss trackers from them, so an override of compute_loss that calls
    `super().compute_loss(...)` logs them as Keras's does, and one that doesn't, doesn't.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> inputs = kilnet.Input((2,))
        >>> model = kilnet.Model(inputs, [kilnet.layers.Dense(1, name="a")(inputs),
        ...                               kilnet.layers.Dense(1, name="b")(inputs)])
        >>> model.compile(loss=["mse", "mae"])
        >>> with recording_output_losses(model) as output_losses:
        ...     _ = model.compute_loss(y=[np.zeros((2, 1)), np.zeros((2, 1))],
        ...                            y_pred=[np.ones((2, 1)), 3 * np.ones((2, 1))])
        >>> [{name: float(value) for name, value in losses.items()} for losses in output_losses]
        [{'a_loss': 1.0, 'b_loss': 3.0}]
    """
    output_losses = []
    token = _recording.set((model, output_losses))
    try:
        yield output_losses
    finally:
        _recording.reset(token)


def record_output_losses(model, per_sample_parts):
    """Called by the default compute_loss with each output's per-sample losses (by tracker
    name): kept, as batch means over the real samples, where recording_output_losses(model)
    is open; nothing otherwise (kilnet's built-in steps, a compute_loss called elsewhere)."""
    recording = _recording.get()
    if recording is None or recording[0] is not model:
        return
    model.compiled.note_default_loss_reached()
    recording[1].append({name: _scope.mean_over_real_samples(values)
                         for name, values in per_sample_parts.items()})
