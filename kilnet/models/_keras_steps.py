"""Keras's default train_step and test_step in its JAX form, for a model that overrides
`compute_metrics` or `get_metrics_result`: Keras's fit and evaluate log what those return
(extra entries, renamed keys), so such a model runs these steps, which call them as Keras's
do, instead of kilnet's built-in steps (which compute the compiled metrics themselves).
They run inside kilnet's compiled loops as a train_step / test_step of yours would."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kilnet import _scope, structure, utils


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

    def loss_fn(trainable):
        y_pred, new_non_trainable = model.stateless_call(trainable, non_trainable, x,
                                                         training=True)
        loss, _ = model.stateless_compute_loss(trainable, new_non_trainable, metric_vars, x,
                                               y, y_pred, sample_weight, training=True)
        scaled = trainer.scale_loss(loss, optimizer_vars)
        return scaled, (loss, y_pred, new_non_trainable)

    (_, (loss, y_pred, non_trainable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        trainable)
    # the Trainer's own apply: the compiled optimizer (a LossScaleOptimizer's unscaling too)
    trainable, optimizer_vars = trainer.stateless_apply(optimizer_vars, grads, trainable)
    logs, metric_vars = _metrics_after_batch(model, metric_vars, loss, x, y, y_pred,
                                            sample_weight)
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
    y_pred, non_trainable = model.stateless_call(trainable, non_trainable, x, training=False)
    loss, _ = model.stateless_compute_loss(trainable, non_trainable, metric_vars, x, y,
                                           y_pred, sample_weight, training=False)
    logs, metric_vars = _metrics_after_batch(model, metric_vars, loss, x, y, y_pred,
                                            sample_weight)
    return logs, (trainable, non_trainable, metric_vars)


def _metrics_after_batch(model, metric_vars, loss, x, y, y_pred, sample_weight):
    """(logs, new metrics_variables) after a batch, from the state `metric_vars`: the loss
    tracker takes the loss weighted by the batch's size (each output's tracker that output's
    loss, with several), and `model.compute_metrics` the rest,
    as Keras's steps update them; the model's metric Variables are left as they were."""
    variables = model.metrics_variables
    scope = _scope.Scope(bindings={id(v): value for v, value in zip(variables, metric_vars)},
                         trains_nothing=True)
    with _scope.opened(scope):
        batch_size = jax.tree.leaves(x)[0].shape[0]
        loss_tracker = model.compiled.keras_metrics()[0]
        loss_tracker.update_state(loss, sample_weight=batch_size)
        _update_output_loss_trackers(model, y, y_pred, sample_weight, batch_size)
        # read inside the scope: a result that is a Variable reads its bound state
        logs = jax.tree.map(jnp.asarray, model.compute_metrics(x, y, y_pred, sample_weight))
    new = [scope.assigned.get(id(v), scope.bindings[id(v)]) for v in variables]
    return logs, new


def _update_output_loss_trackers(model, y, y_pred, sample_weight, batch_size):
    """Each output's loss tracker ("a_loss") takes that output's batch loss, before its loss
    weight, as Keras's compiled loss updates them. A compute_loss of yours replaces the
    compiled losses: its trackers are left alone."""
    trackers = model.compiled.output_loss_trackers()
    if not trackers or model.overrides_compute_loss:
        return
    objective = model.compiled.objective
    labels = objective.with_sample_weight(structure.program_labels(objective, y), sample_weight)
    _, parts = objective.per_sample_losses(labels, model.output_list(y_pred))
    for name, tracker in trackers.items():
        tracker.update_state(_scope.mean_over_real_samples(parts[name]),
                             sample_weight=batch_size)
