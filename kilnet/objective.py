"""What compile() makes of `loss`, `loss_weights` and `metrics`: one Head per model output.

A head knows its output's loss (or none: that output is not trained), the loss's weight in the
total, its metrics, and whether the loss is computed from the output's logits (the output layer's
softmax/sigmoid folded into the loss, which is numerically stable). The compiled programs
(kilnet.programs) ask the Objective for the per-sample total loss and for the sums it logs.

Log names follow Keras: with one output, "loss" and the metric names ("accuracy"); with several,
"loss" (the weighted total), then "<output>_loss" and "<output>_<metric>" per output. Weighted
metrics (compile's weighted_metrics) come after the metrics and keep their name unless a metric
has it already; then they are "weighted_<metric>" (Keras's CompileMetrics rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from kilnet import losses as losses_lib
from kilnet.errors import InputError
from kilnet import metrics as metrics_lib


per_sample_mean = losses_lib.per_sample_mean


@dataclass
class Head:
    """One model output as compile() sees it."""

    index: int                      # position among the model's outputs
    name: str                       # the output's name (dict key or producing layer's name)
    shape: tuple                    # the output's shape without the batch axis
    loss: losses_lib.Loss | None    # None: the output has no loss (no labels needed)
    weight: float | None = None     # loss_weights entry (None: 1, and no multiplication)
    metric_ids: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    weighted_metric_ids: list = field(default_factory=list)
    weighted_metrics: list = field(default_factory=list)  # these use the sample weights
    use_logits: bool = False        # the loss reads the output's pre-activation
    given_loss: losses_lib.Loss | None = None  # the loss as compile() got it (for messages)
    masked: bool = False            # the output carries a sequence mask (per time step)

    @property
    def needs_labels(self) -> bool:
        # the metric ids too: compile() knows them before their objects are made
        return self.loss is not None or bool(self.metrics or self.metric_ids
                                             or self.weighted_metrics or self.weighted_metric_ids)


@dataclass
class MetricSlot:
    """One compiled metric of one output, under its log name."""

    head: Head
    metric: metrics_lib.Metric
    name: str
    weighted: bool  # uses fit's sample_weight / class_weight (compile's weighted_metrics)


class Objective:
    """The heads of a compiled model and what the compiled step computes from them."""

    def __init__(self, heads: list[Head]):
        self.heads = heads
        self.multi = len(heads) > 1   # metric names carry the output's name
        # per-output losses are computed (and logged) when more than one output has a loss
        self.several_output_losses = sum(h.loss is not None for h in heads) > 1
        # The model overrides compute_loss (build's custom_loss): its outputs' losses are
        # logged only once a step was seen to reach the default compute_loss (a
        # `super().compute_loss(...)` in yours), as Keras's compiled loss makes its trackers
        # when first called; the trainer notes it (Trainer.note_default_loss_reached).
        self.custom_loss = False
        self.default_loss_reached = False
        self.targets = [h for h in heads if h.needs_labels]  # the order labels are given in
        self.has_loss = any(h.loss is not None for h in heads)

    # -- names ---------------------------------------------------------------------------------
    @property
    def slots(self) -> list[MetricSlot]:
        """Every compiled metric with its log name: the metrics, then the weighted metrics.
        A repeated name gets "_1", "_2"...; a weighted metric whose name is taken becomes
        "weighted_<name>" (as Keras names them)."""
        taken, slots = {}, []

        def unique(name):
            if name not in taken:
                taken[name] = 1
                return name
            taken[name] += 1
            return f"{name}_{taken[name] - 1}"

        def prefixed(head, name):
            return f"{head.name}_{name}" if self.multi else name

        for head in self.heads:
            for metric in head.metrics:
                slots.append(MetricSlot(head, metric, unique(prefixed(head, metric.name)),
                                        False))
        for head in self.heads:
            for metric in head.weighted_metrics:
                name = prefixed(head, metric.name)
                if name in taken:
                    name = prefixed(head, "weighted_" + metric.name)
                slots.append(MetricSlot(head, metric, unique(name), True))
        return slots

    @property
    def output_loss_names(self) -> list[str]:
        """The log names of each output's own loss ("a_loss"), logged when several outputs
        have a loss, as Keras's (under a compute_loss of yours, once it was seen to call the
        default one: see custom_loss); else none.

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input((2,))
            >>> model = kilnet.Model(inputs, [kilnet.layers.Dense(1, name="a")(inputs),
            ...                               kilnet.layers.Dense(1, name="b")(inputs)])
            >>> model.compile(loss=["mse", "mae"])
            >>> model.compiled.objective.output_loss_names
            ['a_loss', 'b_loss']
        """
        if self.custom_loss and not self.default_loss_reached:
            return []
        return self.summed_output_loss_names

    @property
    def summed_output_loss_names(self) -> list[str]:
        """The per-output losses the compiled programs sum, by log name: every output's with
        a loss when several have one, also under a compute_loss of yours before they are
        logged (its calls of the default one are only seen as the step is traced, after
        the sums were made).

        Example:
            >>> import kilnet
            >>> class Yours(kilnet.Model):
            ...     def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
            ...                      training=True):
            ...         return super().compute_loss(x, y, y_pred, sample_weight, training)
            >>> inputs = kilnet.Input((2,))
            >>> model = Yours(inputs, [kilnet.layers.Dense(1, name="a")(inputs),
            ...                        kilnet.layers.Dense(1, name="b")(inputs)])
            >>> model.compile(loss=["mse", "mae"])
            >>> objective = model.compiled.objective
            >>> objective.summed_output_loss_names, objective.output_loss_names
            (['a_loss', 'b_loss'], [])
        """
        if not self.several_output_losses:
            return []
        return [name for name, _ in self.heads_with_loss]

    @property
    def heads_with_loss(self) -> list[tuple[str, Head]]:
        """(log name of its own loss, head) of each output that has a loss, in output order:
        the names of the per-output losses wherever they are logged or tracked.

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input((2,))
            >>> model = kilnet.Model(inputs, [kilnet.layers.Dense(1, name="a")(inputs),
            ...                               kilnet.layers.Dense(1, name="b")(inputs)])
            >>> model.compile(loss=[None, "mae"])
            >>> [(name, head.index) for name, head in model.compiled.objective.heads_with_loss]
            [('b_loss', 1)]
        """
        return [(f"{head.name}_loss", head) for head in self.heads if head.loss is not None]

    @property
    def sum_names(self) -> list[str]:
        return ["loss", *self.output_loss_names] + [slot.name for slot in self.slots]

    @property
    def result_names(self) -> list[str]:
        """The order evaluate() lists its results in, Keras's: the loss and the outputs'
        losses, then the metrics, as compiled for one output and sorted by name for several
        (Keras's names of per-output metrics are not its log keys, so it lists them sorted).

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input(shape=(2,))
            >>> model = kilnet.Model(inputs, [kilnet.layers.Dense(1, name="b")(inputs),
            ...                               kilnet.layers.Dense(1, name="a")(inputs)])
            >>> model.compile(loss=["mse", "mse"], metrics=[["mape", "mae"], ["mae"]])
            >>> model.metrics_names
            ['loss', 'b_loss', 'a_loss', 'a_mae', 'b_mae', 'b_mape']
        """
        front = self.sum_names[:len(self.sum_names) - len(self.slots)]
        metrics = [slot.name for slot in self.slots]
        return front + (metrics if len(self.heads) == 1 else sorted(metrics))

    @property
    def weight_names(self) -> list[str]:
        """Sums of metric weights, for metrics whose count is not the sample count: a masked
        output's metrics (means over its real steps) and weighted metrics."""
        return [slot.name + "#weight" for slot in self.slots
                if (slot.head.masked or slot.weighted) and not slot.metric.stateful]

    def zero_states(self) -> dict:
        """The starting variables of metrics with state (confusion counts), by log name."""
        return {slot.name + "#state": slot.metric.stateless_reset_state() for slot in self.slots
                if slot.metric.stateful}

    def log_values(self, sums: dict) -> dict:
        """The epoch's logs from the sums (host values): means over the real samples (or the
        real steps of a masked output, or the weights), and results of metrics with state."""
        count = float(sums["count"])  # 0 when every step so far was skipped: no mean, nan
        stateful = {slot.name: slot.metric for slot in self.slots if slot.metric.stateful}
        logs = {}
        for name in self.sum_names:
            if name in stateful:
                result = np.asarray(stateful[name].stateless_result(sums[name + "#state"]))
                # one value per class or threshold (F1Score(average=None)): a list, as JSON
                logs[name] = float(result) if result.ndim == 0 else result.tolist()
                continue
            weight = float(sums[name + "#weight"]) if name + "#weight" in sums else count
            logs[name] = float(sums[name]) / weight if weight else float("nan")
        return logs

    @property
    def any_masked(self) -> bool:
        return any(h.masked for h in self.heads)

    @property
    def logits_flags(self):
        """What Model.apply(..., logits=...) gets: a bool for one output, else one per output."""
        flags = [h.use_logits for h in self.heads]
        return flags[0] if len(flags) == 1 else flags

    # -- the computation, traced inside the compiled programs ----------------------------------
    def labels_by_head(self, y) -> dict:
        """Head index -> label batch, from what the program got (an array, or a tuple)."""
        return {h.index: label for h, label in zip(self.targets, self._split(y)[0])}

    def _split(self, y):
        """(labels, sample weights or None): fit(sample_weight=...) appends the weights to
        the labels the programs get (kilnet.fit): one array for every output (one entry more
        than the targets), or one per trained output (twice the targets' entries). The
        weights come as a tuple of one array, or of one per trained output."""
        ys = (y,) if not isinstance(y, tuple) else y
        count = len(self.targets)
        if count > 1 and len(ys) == 2 * count:
            return ys[:count], ys[count:]
        if len(ys) == count + 1:
            return ys[:-1], ys[-1:]
        return ((y,) if count == 1 else tuple(y)), None

    def weights_by_head(self, y) -> dict:
        """Output index -> its sample weights, from the programs' labels `y` (as
        with_sample_weight makes them): one array given for all outputs goes to each trained
        one; empty when `y` carries no weights.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> inputs = kilnet.Input((2,))
            >>> model = kilnet.Model(inputs, [kilnet.layers.Dense(1, name="a")(inputs),
            ...                               kilnet.layers.Dense(1, name="b")(inputs)])
            >>> model.compile(loss=["mse", "mse"])
            >>> objective = model.compiled.objective
            >>> y = objective.with_sample_weight((np.zeros((2, 1)), np.zeros((2, 1))),
            ...                                  np.array([1.0, 2.0]))
            >>> {index: w.tolist() for index, w in objective.weights_by_head(y).items()}
            {0: [1.0, 2.0], 1: [1.0, 2.0]}
        """
        weights = self._split(y)[1]
        if weights is None:
            return {}
        if len(weights) == 1:
            return {head.index: weights[0] for head in self.targets}
        return {head.index: w for head, w in zip(self.targets, weights)}

    def split_sample_weight(self, y) -> tuple:
        """(labels as the model's loss takes them: one array for one trained output, else a
        tuple; fit's sample weights: None, one array, or a list with one per output), from
        what the programs got."""
        labels, weights = self._split(y)
        if weights is not None:
            weights = weights[0] if len(weights) == 1 else list(weights)
        return (labels[0] if len(self.targets) == 1 else tuple(labels)), weights

    def with_sample_weight(self, y, sample_weight) -> tuple:
        """The labels `y` carrying `sample_weight` (one array, or one per trained output as a
        list or a dict by name, as Keras's compute_loss takes them) as the programs' labels
        carry fit's, times any weights they carry already.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input(shape=(2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse")
            >>> labels, weights = model.compiled.objective.with_sample_weight(
            ...     np.zeros((3, 1)), np.array([1.0, 2.0, 0.0]))
            >>> weights.tolist()
            [1.0, 2.0, 0.0]
        """
        if sample_weight is None:
            return y
        labels, carried = self._split(y)
        given = self._given_weights(sample_weight)
        if carried is not None:
            if len(carried) != len(given):   # one for all against one per output
                carried, given = (carried * len(given), given * len(carried))
            given = tuple(weights_product(c, g) for c, g in zip(carried, given))
        return tuple(labels) + given

    def _given_weights(self, sample_weight) -> tuple:
        per_output = self.weights_per_output(sample_weight)
        if per_output is not None:
            return tuple(jnp.asarray(w, jnp.float32) for _, w in per_output)
        return (jnp.asarray(sample_weight, jnp.float32),)

    def weights_per_output(self, sample_weight, argument="sample_weight"):
        """[(output name, its weights)] in the trained outputs' order when `sample_weight` is
        given per output, as Keras takes it (a dict by name, or a list or tuple of arrays, one
        per output; a one-output model's weights in a list of one, as a step's data holds
        them), else None (one array for every output). fit's checks (kilnet.validation) and
        compute_loss read them so.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> x = kilnet.Input(shape=(2,))
            >>> model = kilnet.Model(x, [kilnet.layers.Dense(1, name="a")(x),
            ...                          kilnet.layers.Dense(1, name="b")(x)])
            >>> model.compile(loss="mse")
            >>> pairs = model.compiled.objective.weights_per_output({"b": np.ones(3),
            ...                                                    "a": np.zeros(3)})
            >>> [(name, w.tolist()) for name, w in pairs]
            [('a', [0.0, 0.0, 0.0]), ('b', [1.0, 1.0, 1.0])]
        """
        names = [head.name for head in self.targets]
        if isinstance(sample_weight, dict):
            if set(sample_weight) != set(names):
                raise InputError(
                    f"{argument} as a dict needs one entry per trained output, by name: "
                    f"{names}. Received: {argument} with keys "
                    f"{sorted(map(str, sample_weight))}")
            return [(name, sample_weight[name]) for name in names]
        if not isinstance(sample_weight, (list, tuple)) or not all(
                np.ndim(w) >= 1 for w in sample_weight):
            return None
        if len(names) == 1:   # a list of one array (a step's container), not nested numbers
            if len(sample_weight) == 1 and hasattr(sample_weight[0], "shape"):
                return [(names[0], sample_weight[0])]
            return None
        if len(sample_weight) != len(names):
            raise InputError(
                f"{argument} as a list needs one array per trained output ({len(names)}: "
                f"{names}), or pass one array for all. Received: {len(sample_weight)} arrays")
        return list(zip(names, sample_weight))

    def per_sample_losses(self, y, outputs: list, masks=None, weight=None) -> tuple:
        """(total per sample, {log name: per-sample loss of each output}). `masks`: each
        output's sequence mask (or None); `weight`: the batch's real samples (1) and padding."""
        labels = self.labels_by_head(y)
        weights = self.weights_by_head(y)
        total, parts = None, {}
        for name, head in self.heads_with_loss:
            mask = None if masks is None else masks[head.index]
            sample_weight = weights.get(head.index)
            if head.loss.overrides_call:
                value = _your_call(head.loss, labels[head.index], outputs[head.index],
                                   sample_weight)
            else:
                value = self._per_sample_loss(head, labels[head.index], outputs[head.index],
                                              mask, weight, sample_weight)
            if self.several_output_losses:
                parts[name] = value
            if head.weight is not None:
                value = value * head.weight
            total = value if total is None else total + value
        return total, parts

    @staticmethod
    def _per_sample_loss(head, labels, output, mask, weight, sample_weight):
        """One output's loss per sample, from its loss's unreduced values."""
        if head.loss.batch_level and weight is not None:
            # a loss of the whole batch: the padding rows must not enter it
            values = head.loss.per_sample(labels, output, rows=weight > 0)
        elif mask is not None:
            # a loss's own mask (ignore_class) joins the output's: counted once, as Keras
            values, counted = head.loss.values_and_mask(labels, output)
            if counted is not None:
                mask = mask & counted
        else:
            values = head.loss(labels, output)
        if sample_weight is not None and sample_weight.ndim > 1:
            # weights per loss value (a sequence loss's tokens): Keras's sum_over_batch_size,
            # sum(loss * weight) / the number of values, is the mean of these per sample
            values = values * element_weights(sample_weight, values.shape, head.name)
        value = (per_sample_mean(values) if mask is None
                 else _masked_per_sample(values, mask, weight))
        if sample_weight is not None and sample_weight.ndim == 1:
            # Keras's sum_over_batch_size: sum(loss * weight) / the batch's samples
            value = value * sample_weight
        return value

    def predictions(self, model, outputs: list) -> list:
        """The outputs as the user sees them (activation applied where logits were kept)."""
        return [model.activate_output(h.index, outputs[h.index]) if h.use_logits
                else outputs[h.index] for h in self.heads]

    def add_sums(self, sums, y, predictions, per_sample_total, parts, weight, masks=None):
        """This batch's loss and metrics added to the running sums, real samples only. The
        metrics of a masked output add its real steps, with their own count (as Keras weighs
        metrics by the mask); weighted metrics weigh each sample by its sample weight."""
        labels = self.labels_by_head(y)
        weights = self.weights_by_head(y)
        new = dict(sums)
        new["loss"] = sums["loss"] + jnp.sum(per_sample_total * weight)
        for name, value in parts.items():
            new[name] = sums[name] + jnp.sum(value * weight)
        for slot in self.slots:
            index = slot.head.index
            mask = None if masks is None else masks[index]
            steps = _metric_weights(weight, weights.get(index) if slot.weighted else None,
                                    mask, slot.head.name)
            if slot.metric.stateful:  # confusion counts: the metric updates its own state
                new[slot.name + "#state"] = slot.metric.stateless_update_state(
                    sums[slot.name + "#state"], labels[index], predictions[index],
                    sample_weight=steps)
                continue
            values = slot.metric.per_sample(labels[index], predictions[index])
            if jnp.ndim(values) == 0:   # a function of the whole batch: the batch's value
                values = jnp.broadcast_to(values, steps.shape)
            values = _mean_to_rank(values, steps.ndim)
            steps = element_weights(steps, values.shape, slot.head.name, "the metric's values")
            if steps.ndim > 1:
                # Keras averages each sample's weights and weighted values over its steps, so
                # a step of a batch of longer sequences counts less (batches padded each to
                # its own length); batches of one length give the same ratio either way
                steps = steps / math.prod(steps.shape[1:])
            new[slot.name] = sums[slot.name] + jnp.sum(values * steps)
            if slot.name + "#weight" in sums:
                new[slot.name + "#weight"] = sums[slot.name + "#weight"] + jnp.sum(steps)
        new["count"] = sums["count"] + jnp.sum(weight)
        return new


def _your_call(loss, y_true, y_pred, sample_weight):
    """Per-sample values from a Loss class of yours that defines its own `__call__`: it gets
    what Keras's compile gives it, `(y_true, y_pred, sample_weight)` (so the sample weights
    are its to use, and are not applied again), and returns the batch's loss, which Keras
    trains on as it stands. The programs reduce per-sample values (a step's loss is their
    mean, an epoch's the sum over its samples / its samples), so a single number is given to
    every row: the step trains on that number, and the epoch's loss is the batches' numbers
    weighted by batch size, as Keras's loss tracker weighs each batch by its size. Such a
    number cannot leave a padded last batch's padding rows out, so none reaches it: the class
    is code of yours, for which fit and evaluate run a partial last batch at its own size
    (Trainer.runs_your_batch_code), and its number is the real batch's, as in Keras. A
    result with a batch axis is taken as per-sample values (averaged over further axes)."""
    values = jnp.asarray(loss(y_true, y_pred, sample_weight), jnp.float32)
    if values.ndim == 0:
        return jnp.broadcast_to(values, jnp.shape(y_pred)[:1])
    return per_sample_mean(values)


# -- from compile()'s arguments ---------------------------------------------------------------------
def build(model, loss, loss_weights, metrics, *, weighted_metrics=None,
          custom_loss=False, reduced_by_your_step=False) -> Objective:
    """The Objective for `model` (built or with known output specs) from compile()'s args.
    custom_loss: the model overrides compute_loss, which gets the outputs as the user sees
    them (no logits shortcut) and gives one total (the per-output losses are logged only
    where it calls the default one: Objective.output_loss_names).
    No loss at all is allowed, as in Keras: the model's add_loss terms (or its own train_step)
    are then the loss; a model that has none trains on a loss of 0, as Keras's, with a
    warning (programs.warn_nothing_trains). reduced_by_your_step: the model has its own
    train_step, so a loss of a reduction kilnet's steps cannot apply is kept, and refused
    only where they would reduce it (losses.LossYourStepReduces)."""
    # a model without call() has no outputs: its own steps compute what they train on
    specs = model.output_specs if getattr(model, "defines_call", True) else []
    names = [s.name for s in specs]
    losses = _per_output(loss, names, "loss", broadcast=True)
    weights = _per_output(loss_weights, names, "loss_weights", broadcast=False)
    metric_lists = _metrics_per_output(metrics, names)
    weighted_lists = _metrics_per_output(weighted_metrics, names, "weighted_metrics")
    activations = model.output_activations()
    masked = _masked_outputs(model)
    heads = []
    for index, spec in enumerate(specs):
        resolved = (None if losses[index] is None
                    else losses_lib.get(losses[index], reduced_by_your_step))
        weight = weights[index]
        if weight is not None and not isinstance(weight, (int, float)):
            raise TypeError(f"loss_weights must hold numbers. Received: {weight!r} for output "
                            f"{spec.name!r}")
        # (a __call__ of yours gets the outputs as Keras's does: no logits shortcut)
        use_logits = (not custom_loss and resolved is not None and not resolved.from_logits
                      and resolved.logits_of is not None and not resolved.overrides_call
                      and activations[index] == resolved.logits_of)
        heads.append(Head(index=index, name=spec.name, shape=tuple(spec.shape),
                          loss=resolved.with_logits() if use_logits else resolved,
                          weight=None if weight is None else float(weight),
                          metric_ids=metric_lists[index],
                          weighted_metric_ids=weighted_lists[index], use_logits=use_logits,
                          given_loss=resolved, masked=masked[index]))
    objective = Objective(heads)
    if custom_loss:   # your compute_loss reads the labels of every output, as Keras gives them
        objective.custom_loss = True
        objective.targets = list(heads)
    resolve_metrics(objective, label_shapes=None)
    return objective


def element_weights(sample_weight, shape, output_name, what="the loss's values"):
    """Weights per value (rank >= 2) brought to `shape`, the values' shape, by Keras's rule
    (a trailing axis of size 1 on either side is dropped or added), or an InputError saying
    which shapes disagree.

    Example:
        >>> import numpy as np
        >>> element_weights(np.ones((4, 3, 1)), (4, 3), "dense").shape
        (4, 3)
    """
    weights = jnp.asarray(sample_weight, jnp.float32)
    if weights.ndim == len(shape) + 1 and weights.shape[-1] == 1:
        weights = weights[..., 0]
    elif len(shape) == weights.ndim + 1 and shape[-1] == 1:
        weights = weights[..., None]
    try:
        if jnp.broadcast_shapes(weights.shape, tuple(shape)) == tuple(shape):
            return jnp.broadcast_to(weights, shape)
    except ValueError:
        pass
    per_value = ", ".join(["samples"] + [str(d) for d in shape[1:]])
    raise InputError(
        f"sample_weight does not fit {what} of output {output_name!r}: a batch of it has "
        f"shape {tuple(sample_weight.shape)}, the values {tuple(shape)}. Give one weight per "
        f"sample, shape (samples,), or one per value, shape ({per_value})")


def weights_product(a, b):
    """Two sets of sample weights multiplied, the one of lower rank spread over the other's
    extra axes (per-sample weights times per-token ones).

    Example:
        >>> import numpy as np
        >>> weights_product(np.array([1.0, 0.0]), np.ones((2, 3))).tolist()
        [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.ndim < b.ndim:
        a = a.reshape(a.shape + (1,) * (b.ndim - a.ndim))
    elif b.ndim < a.ndim:
        b = b.reshape(b.shape + (1,) * (a.ndim - b.ndim))
    return a * b


def _metric_weights(weight, sample_weight, mask, output_name):
    """What each metric value of the batch counts: the real samples (`weight`), times the
    sample weights of a weighted metric, times the output's sequence mask."""
    rows = weight if sample_weight is None or sample_weight.ndim > 1 else weight * sample_weight
    steps = rows if mask is None else mask.astype(jnp.float32) * rows[:, None]
    if sample_weight is not None and sample_weight.ndim > 1:
        shape = sample_weight.shape[:1] + (mask.shape[1:] if mask is not None
                                           else sample_weight.shape[1:])
        steps = weights_product(
            element_weights(sample_weight, shape, output_name, "the metric's values"), steps)
    return steps


def _mean_to_rank(values, ndim):
    """Values averaged over their axes past `ndim`, as Keras reduces a metric's values to
    its weights' rank."""
    if values.ndim <= ndim:
        return values
    return values.mean(axis=tuple(range(ndim, values.ndim)))


def _masked_per_sample(values, mask, weight):
    """Per-step losses of a masked output, as Keras reduces them: the batch's loss is the sum
    over real steps divided by their number (padding samples excluded). Written per sample so
    that the usual mean over the batch's real samples gives exactly that."""
    weight = jnp.ones(values.shape[:1], jnp.float32) if weight is None else weight
    steps = mask.astype(jnp.float32)
    real_steps = jnp.sum(steps * weight[:, None])
    scale = jnp.where(real_steps > 0, jnp.sum(weight) / jnp.maximum(real_steps, 1e-30), 0.0)
    return jnp.sum(values * steps, axis=1) * scale


def _masked_outputs(model) -> list:
    if not getattr(model, "is_functional", False):
        return [False] * len(model.output_specs or [])
    return [tensor.has_mask for tensor in model.graph.outputs]


def resolve_metrics(objective: Objective, label_shapes) -> bool:
    """Make each head's metric objects. "accuracy" depends on the labels' shape (Keras), known
    only at fit/evaluate: called again then. True when something changed."""
    shapes = label_shapes or [None] * len(objective.targets)
    by_head = {h.index: shape for h, shape in zip(objective.targets, shapes)}
    changed = False
    for head in objective.heads:
        for ids, attribute in ((head.metric_ids, "metrics"),
                               (head.weighted_metric_ids, "weighted_metrics")):
            new = [metrics_lib.get(m, loss=head.given_loss, label_shape=by_head.get(head.index),
                                   output_shape=head.shape) for m in ids]
            if [type(m) for m in new] != [type(m) for m in getattr(head, attribute)]:
                setattr(head, attribute, new)
                changed = True
    return changed


def _per_output(value, names, argument, *, broadcast):
    """One entry per output from a single value, a list or a dict keyed by output name."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"compile({argument}=...) has keys {unknown} that are not outputs "
                             f"of the model; its outputs are {names}. Received: "
                             f"{argument}={value!r}")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"compile({argument}=...) as a list needs one entry per output "
                             f"({len(names)}: {names}). Received: {len(value)} entries")
        return list(value)
    if value is None or broadcast:
        return [value] * len(names)
    raise TypeError(f"With several outputs, {argument} must be a list or a dict by output name "
                    f"({names}). Received: {argument}={value!r}")


def _metrics_per_output(metrics, names, argument="metrics") -> list[list]:
    if metrics is None:
        return [[] for _ in names]
    if isinstance(metrics, dict):
        per = _per_output(metrics, names, argument, broadcast=False)
        return [[] if m is None else (list(m) if isinstance(m, (list, tuple)) else [m])
                for m in per]
    if not isinstance(metrics, (list, tuple)):
        raise TypeError(f"{argument} must be a list, e.g. {argument}=['accuracy'], or a dict by "
                        f"output name. Received: {argument}={metrics!r}")
    if len(names) == 1:
        return [list(metrics)]
    if len(metrics) == len(names) and any(isinstance(m, (list, tuple)) or m is None
                                          for m in metrics):
        return [[] if m is None else (list(m) if isinstance(m, (list, tuple)) else [m])
                for m in metrics]
    if len(metrics) == len(names):
        # Keras 3 reads a list as long as the outputs as one metric per output.
        return [[m] for m in metrics]
    # Keras 3 refuses a shorter flat list; kilnet applies each metric to every output.
    return [list(metrics) for _ in names]
