"""SwapEMAWeights: evaluate (and predict) with the optimizer's moving average of the weights.

The average lives in the optimizer state (an optimizer made with use_ema=True keeps it as the
last stage of its Optax chain, kilnet.optimizers.moving_average_of_weights); swapping exchanges
it with the trained weights in the training state, and a second swap undoes the first."""

from __future__ import annotations

from kilnet import optimizers
from kilnet.callbacks._base import Callback


class SwapEMAWeights(Callback):
    """Keras's SwapEMAWeights: the model holds the moving average of its weights (its
    optimizer needs use_ema=True) during each evaluation and prediction, and its trained
    weights again after. With `swap_on_epoch=True` it also holds the averages from each
    epoch's end to the next epoch's beginning, so that other callbacks (ModelCheckpoint) see
    them, and keeps them after the last epoch.

    Example:
        >>> import numpy as np, kilnet
        >>> model = kilnet.Sequential([kilnet.Input(shape=(2,)), kilnet.layers.Dense(1)])
        >>> model.compile(optimizer=kilnet.optimizers.SGD(0.1, use_ema=True), loss="mse")
        >>> x, y = np.ones((8, 2), "float32"), np.zeros((8, 1), "float32")
        >>> history = model.fit(x, y, epochs=2, validation_data=(x, y), verbose=0,
        ...                     callbacks=[kilnet.callbacks.SwapEMAWeights()])
        >>> len(history.history["val_loss"])
        2
    """

    def __init__(self, swap_on_epoch=False):
        super().__init__()
        self.swap_on_epoch = swap_on_epoch
        self._averages_in_model = False

    def _swap(self):
        trainer = self.model.compiled
        state = trainer.state
        params, opt_state = optimizers.swap_moving_average(state.params, state.opt_state)
        trainer.state = state._replace(params=params, opt_state=opt_state)
        self._averages_in_model = not self._averages_in_model

    def _finalize(self):
        """The averages become the optimizer's too (they are in the model now), so that fit's
        end, which puts the optimizer's averages in the model, keeps them."""
        state = self.model.compiled.state
        _, opt_state = optimizers.swap_moving_average(state.params, state.opt_state)
        self.model.compiled.state = state._replace(opt_state=opt_state)

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch and self._averages_in_model:
            self._swap()

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_on_epoch and not self._averages_in_model:
            self._swap()
            if epoch == self.params.get("epochs", 0) - 1:
                self._finalize()

    def on_test_begin(self, logs=None):
        if not self._averages_in_model:
            self._swap()

    def on_test_end(self, logs=None):
        if self._averages_in_model:
            self._swap()

    def on_predict_begin(self, logs=None):
        if not self._averages_in_model:
            self._swap()

    def on_predict_end(self, logs=None):
        # Keras 3.15 tests `not` here, so after a predict its model keeps the averages; this
        # restores the trained weights, as the callback's documentation says.
        if self._averages_in_model:
            self._swap()
