"""The metrics compile() made, held together as one metric named "compile_metrics", as Keras 3
lists them in `model.metrics` (after the loss tracker). A JAX-form train_step written for
Keras walks `model.metrics`, updates this one with `(y, y_pred)` and gets its result as a dict
of the compiled metrics' results by log name ({"mae": ...}); its variables are theirs, in
order, so `metrics_variables` is laid out as Keras's."""

from __future__ import annotations

from kilnet import metrics as metrics_lib
from kilnet import structure


class CompileMetrics(metrics_lib.Metric):
    """The compiled metrics of a model (`objective`: its kilnet.objective.Objective) as one
    metric, as Keras's `model.metrics[1]` after compile(metrics=...).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
        >>> model.compile(loss="mse", metrics=["mae"])
        >>> container = model.metrics[1]
        >>> container.name, [m.name for m in container.metrics]
        ('compile_metrics', ['mae'])
        >>> state = container.stateless_update_state(
        ...     container.stateless_reset_state(), np.zeros((2, 1)), np.ones((2, 1)))
        >>> {name: float(value) for name, value in container.stateless_result(state).items()}
        {'mae': 1.0}
    """

    def __init__(self, objective, model):
        super().__init__(name="compile_metrics")
        object.__setattr__(self, "objective", objective)
        object.__setattr__(self, "_model", model)
        for position, slot in enumerate(objective.slots):
            # a Metric attribute joins this one's state (Metric.__setattr__), in slot order
            setattr(self, f"slot_{position}", slot.metric)

    @property
    def metrics(self) -> list:
        """The compiled metrics: every output's unweighted ones, then every output's weighted
        ones, as Keras's `CompileMetrics.metrics` orders them.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse", metrics=["mae"], weighted_metrics=["mse"])
            >>> container = model.metrics[1]
            >>> [metric.name for metric in container.metrics]
            ['mae', 'mse']
        """
        return [slot.metric for slot in self.objective.slots]

    def stateless_update_state(self, metric_variables, y_true, y_pred, sample_weight=None):
        """The new state after `update_state(y_true, y_pred, sample_weight)`, as
        Metric.stateless_update_state; the metric itself is left as it was.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse", metrics=["mae"], weighted_metrics=["mse"])
            >>> container = model.metrics[1]
            >>> state = container.stateless_update_state(
            ...     container.stateless_reset_state(), np.zeros((2, 1)), np.ones((2, 1)),
            ...     sample_weight=np.array([1.0, 0.0]))
            >>> {k: float(v) for k, v in container.stateless_result(state).items()}
            {'mae': 1.0, 'mse': 1.0}
        """
        # given on, as it came (one array per output too): each weighted metric takes its own
        return super().stateless_update_state(metric_variables, y_true, y_pred, sample_weight)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Update each compiled metric from its output's labels and predictions (`y_true`,
        `y_pred` as a step gets and computes them); the weighted metrics also take
        `sample_weight` (one array for every output, or one per output), as Keras's.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse", metrics=["mae"], weighted_metrics=["mse"])
            >>> container = model.metrics[1]
            >>> container.update_state(np.zeros((2, 1)), np.array([[1.0], [3.0]]),
            ...                        sample_weight=np.array([1.0, 0.0]))
            >>> {k: float(v) for k, v in container.result().items()}
            {'mae': 2.0, 'mse': 1.0}
        """
        objective = self.objective
        labels = structure.program_labels(objective, y_true)
        if sample_weight is not None:
            labels = objective.with_sample_weight(labels, sample_weight)
        by_head = objective.labels_by_head(labels)
        weights = objective.weights_by_head(labels)
        outputs = self._model.output_list(y_pred)
        for slot in objective.slots:
            index = slot.head.index
            if slot.weighted:
                slot.metric.update_state(by_head[index], outputs[index],
                                         sample_weight=weights.get(index))
            else:
                slot.metric.update_state(by_head[index], outputs[index])

    def result(self) -> dict:
        """The compiled metrics' results by log name ("mae"; "a_mae" with several outputs),
        as Keras's.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse", metrics=["mae"], weighted_metrics=["mse"])
            >>> container = model.metrics[1]
            >>> container.update_state(np.zeros((2, 1)), np.ones((2, 1)))
            >>> {k: float(v) for k, v in container.result().items()}
            {'mae': 1.0, 'mse': 1.0}
        """
        return {slot.name: slot.metric.result() for slot in self.objective.slots}

    def reset_state(self) -> None:
        """Reset every compiled metric, as Keras's.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse", metrics=["mae"], weighted_metrics=["mse"])
            >>> container = model.metrics[1]
            >>> container.update_state(np.zeros((2, 1)), np.ones((2, 1)))
            >>> container.reset_state()
            >>> {k: float(v) for k, v in container.result().items()}
            {'mae': 0.0, 'mse': 0.0}
        """
        for slot in self.objective.slots:
            slot.metric.reset_state()

    def get_config(self) -> dict:
        """Not saved: compile() makes this metric (Keras's raises too).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse", metrics=["mae"], weighted_metrics=["mse"])
            >>> container = model.metrics[1]
            >>> container.get_config()
            Traceback (most recent call last):
            ...
            NotImplementedError: The compiled metrics are made by compile(): compile the model again instead of saving this metric's config.
        """
        raise NotImplementedError("The compiled metrics are made by compile(): compile the "
                                  "model again instead of saving this metric's config.")
