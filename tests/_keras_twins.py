"""Keras's JAX-form custom steps, written once for the tests that run one model class on
Keras and on kilnet and compare.

keras.io's "customizing what happens in fit() with JAX" form: `train_step(self, state,
data)` takes (trainable, non-trainable, optimizer, metric) variables and returns (logs, new
state); `test_step` the same without the optimizer's. Most keras.io examples that use it
differ only in the loss, so a test's model class mixes in `OwnTrainStep` / `OwnTestStep`
(before `lib.Model`, which must stay last) and defines

    step_loss(self, trainable, non_trainable, data, step) -> (loss, new non_trainable)

(`step`: "train" or "test") and a Mean metric `self.tracker`, whose result the steps log
under the class's `log_name` ("loss" by default). Either library's Model takes the mixed-in
methods as the class's own: both look them up on the class.
"""

import jax


class OwnTrainStep:
    """train_step: the gradient of step_loss("train") applied by the compiled optimizer, the
    loss averaged in `self.tracker`."""

    log_name = "loss"

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metric_vars = state
        (loss, non_trainable), grads = jax.value_and_grad(
            lambda t: self.step_loss(t, non_trainable, data, "train"), has_aux=True)(trainable)
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                   trainable)
        metric_vars = self.tracker.stateless_update_state(metric_vars, loss)
        return ({self.log_name: self.tracker.stateless_result(metric_vars)},
                (trainable, non_trainable, optimizer_vars, metric_vars))


class OwnTestStep:
    """test_step: step_loss("test") averaged in `self.tracker`."""

    log_name = "loss"

    def test_step(self, state, data):
        trainable, non_trainable, metric_vars = state
        loss, non_trainable = self.step_loss(trainable, non_trainable, data, "test")
        metric_vars = self.tracker.stateless_update_state(metric_vars, loss)
        return ({self.log_name: self.tracker.stateless_result(metric_vars)},
                (trainable, non_trainable, metric_vars))


class OwnSteps(OwnTrainStep, OwnTestStep):
    """Both steps."""
