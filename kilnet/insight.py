"""What the numbers of a training run mean: per-epoch gains and a plateau analysis.

    history = model.fit(x_train, y_train, epochs=5)
    print(history.plateau())          # or kilnet.insight.analyze_plateau(history.history)

The analysis looks only at the per-epoch numbers in the history. Accuracy-like metrics (names
containing "acc") are judged by their gain in percentage points; losses by their relative
improvement. A run has *plateaued* when the judged metric gained less than the threshold for
`patience` consecutive epochs at the end of the run (defaults: accuracy < 0.5 points, or loss
< 2 % better, for 2 epochs). Other verdicts: "still improving", "noisy" (the metric goes up and
down by more than it moves overall), "diverging" (the training loss rises, or is not finite)
and "overfitting" (the validation loss rises while the training loss keeps falling).

EarlyStopping(monitor="accuracy", min_delta=0.005, patience=2, restore_best_weights=True)
stops a run at the plateau this module detects with its defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

IMPROVING = "still improving"
PLATEAUED = "plateaued"
NOISY = "noisy"
DIVERGING = "diverging"
OVERFITTING = "overfitting"
TOO_SHORT = "too short"
# Added to every verdict of a history without validation data: the training numbers alone
# cannot show overfitting.
NO_VALIDATION = ("Without validation data, overfitting cannot be judged: pass "
                 "validation_split=0.1 or validation_data=(x_val, y_val) to fit (kilnet train: "
                 "--validation-split 0.1).")
VERDICTS = (IMPROVING, PLATEAUED, NOISY, DIVERGING, OVERFITTING, TOO_SHORT)

# History entries that are not measurements: no gains shown, not analysed, not plotted
# ("epoch" is the list of epoch indices that run folders store beside the metrics).
NOT_METRICS = ("epoch", "learning_rate", "lr")
_NOT_METRICS = NOT_METRICS


# -- gains ------------------------------------------------------------------------------------
def is_accuracy_like(name: str) -> bool:
    """Higher is better and the value is a fraction: shown as percentage points."""
    base = name[4:] if name.startswith("val_") else name
    return "acc" in base or base in ("auc", "precision", "recall")


def gain(name: str, previous: float, current: float) -> float:
    """The change of `name` from one epoch to the next: percentage points for accuracy-like
    metrics, the plain difference otherwise."""
    delta = float(current) - float(previous)
    return 100.0 * delta if is_accuracy_like(name) else delta


def format_gain(name: str, value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:+.2f}" if is_accuracy_like(name) else f"{value:+.4f}"


def epoch_gains(previous: dict | None, logs: dict) -> dict[str, float]:
    """Per-metric change since the previous epoch's logs; empty for the first epoch."""
    if not previous:
        return {}
    return {name: gain(name, previous[name], value) for name, value in logs.items()
            if name in previous and name not in _NOT_METRICS
            and _finite(previous[name]) and _finite(value)}


def gain_labels(previous: dict | None, logs: dict) -> dict[str, str]:
    """epoch_gains formatted for the progress line: {"accuracy": "+0.41", "loss": "-0.0123"}."""
    return {name: format_gain(name, g) for name, g in epoch_gains(previous, logs).items()}


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# -- the analysis -----------------------------------------------------------------------------
@dataclass
class PlateauReport:
    """The result of analyze_plateau. Epoch numbers are 1-based, as in the progress output."""

    verdict: str
    message: str
    metric: str | None                    # the series the verdict is based on
    reached: bool = False                 # did the run reach its plateau?
    epoch: int | None = None              # first epoch of the plateau (1-based)
    best_epoch: int | None = None         # epoch with the best value of `metric` (1-based)
    suggestions: list[str] = field(default_factory=list)
    history: dict = field(default_factory=dict)
    gains: dict = field(default_factory=dict)   # name -> [None, gain of epoch 2, ...]
    thresholds: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return max((len(v) for v in self.history.values()), default=0)

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "message": self.message, "metric": self.metric,
                "reached": self.reached, "epoch": self.epoch, "best_epoch": self.best_epoch,
                "suggestions": list(self.suggestions), "gains": self.gains,
                "thresholds": dict(self.thresholds)}

    def table(self, max_rows: int = 12) -> str:
        """One line per epoch: each metric's value and its change since the previous epoch."""
        names = [n for n in self.history if n not in _NOT_METRICS][:6]
        if not names or not self.epochs:
            return ""
        n_epochs = self.epochs
        cells = [[_cell(n, self.history[n], self.gains.get(n, []),
                        epoch_positions(len(self.history[n]), n_epochs).get(i))
                  for n in names] for i in range(n_epochs)]
        widths = [max(len(n), *(len(row[j]) for row in cells)) for j, n in enumerate(names)]
        lines = [("  epoch  " + "  ".join(n.ljust(w) for n, w in zip(names, widths))).rstrip()]
        rows = list(range(self.epochs))
        if len(rows) > max_rows:  # keep the start and the end, where the plateau is
            rows = rows[:3] + [None] + rows[-(max_rows - 4):]
        for i in rows:
            if i is None:
                lines.append("    ...")
                continue
            lines.append(f"  {i + 1:>5}  " + "  ".join(c.ljust(w) for c, w in
                                                       zip(cells[i], widths)).rstrip())
        return "\n".join(lines)

    def __str__(self):
        parts = []
        table = self.table()
        if table:
            unit = (" (accuracy in percentage points)"
                    if any(map(is_accuracy_like, self.history)) else "")
            parts.append(f"What each epoch gained{unit}:\n" + table)
        parts.append(f"Verdict: {self.verdict}. {self.message}")
        if self.suggestions:
            parts.append("Suggestions:\n" + "\n".join(f"  - {s}" for s in self.suggestions))
        return "\n".join(parts)


def epoch_positions(count: int, epochs: int) -> dict[int, int]:
    """Which epoch (0-based) each of `count` values of a series belongs to, as
    {epoch: index}. A validation series is shorter than the run when fit(validation_freq=k)
    validated only every k-th epoch (epochs k, 2k, ...); other shorter series are taken to end
    with the run.

    >>> epoch_positions(2, 4)   # validation_freq=2: epochs 2 and 4 (0-based 1 and 3)
    {1: 0, 3: 1}
    """
    if count >= epochs or count == 0:
        return {i: i for i in range(count)}
    freq = epochs // count
    if epochs // freq == count:
        return {(i + 1) * freq - 1: i for i in range(count)}
    return {epochs - count + i: i for i in range(count)}


def _cell(name, values, gains, i) -> str:
    if i is None or i >= len(values):
        return ""
    value = values[i]
    text = f"{value:.4f}" if _finite(value) else str(value)
    g = gains[i] if i < len(gains) else None
    return text if g is None else f"{text} ({format_gain(name, g)})"


def analyze_plateau(history, *, monitor: str | None = None, min_accuracy_points: float = 0.5,
                    min_loss_improvement: float = 0.02, patience: int = 2) -> PlateauReport:
    """Read a history (History, or its .history dict: name -> per-epoch values) and say whether
    the run is still learning, has plateaued, is noisy, diverging or overfitting.

    monitor: the series to judge; default: "val_accuracy" / "accuracy" when there is one
        (validation first), else "val_loss" / "loss".
    min_accuracy_points: an accuracy-like metric has plateaued when it gains less than this many
        percentage points per epoch (0.5 = half a point).
    min_loss_improvement: a loss-like metric has plateaued when it falls by less than this
        fraction of its value per epoch (0.02 = 2 %).
    patience: how many consecutive epochs below the threshold make a plateau.
    """
    hist = _as_dict(history)
    _check_thresholds(min_accuracy_points, min_loss_improvement, patience)
    thresholds = {"min_accuracy_points": float(min_accuracy_points),
                  "min_loss_improvement": float(min_loss_improvement), "patience": int(patience)}
    gains = {name: [None] + [gain(name, a, b) if _finite(a) and _finite(b) else None
                             for a, b in zip(values, values[1:])]
             for name, values in hist.items() if name not in _NOT_METRICS}
    metric = _choose_monitor(hist, monitor)
    report = PlateauReport(verdict=TOO_SHORT, message="", metric=metric, history=hist,
                           gains=gains, thresholds=thresholds)
    if metric is None:
        report.message = "The history has no metrics to analyse."
        return report
    values = [float(v) for v in hist[metric]]
    report.best_epoch = _best_epoch(metric, values)
    if len(values) < 2:
        report.message = ("One epoch shows where training starts, not where it goes: train for "
                          "a few epochs to see the gains.")
        report.suggestions = ["Train for more epochs (e.g. epochs=5) to see how fast it learns."]
        return report
    _judge(report, hist, metric, values, thresholds)
    if report.verdict != DIVERGING and not any(n.startswith("val_") for n in hist):
        report.message += " " + NO_VALIDATION
    return report


def _as_dict(history) -> dict:
    hist = getattr(history, "history", history)
    if not isinstance(hist, dict):
        raise TypeError("analyze_plateau expects a History or its .history dict "
                        f"(metric name -> list of per-epoch values). Received: {history!r}")
    # JSON stores NaN as null: read it back as NaN. Metrics with one value per class
    # (F1Score(average=None)) log lists: the verdict reads the scalar series only.
    return {str(k): [math.nan if x is None else float(x) for x in v]
            for k, v in hist.items() if k not in ("epoch",) and v is not None and len(v)
            and not any(isinstance(x, (list, tuple)) for x in v)}


def _check_thresholds(points, improvement, patience):
    for arg, value in (("min_accuracy_points", points),
                       ("min_loss_improvement", improvement)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{arg} must be a number >= 0. Received: {arg}={value!r}")
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an integer >= 1. Received: patience={patience!r}")


def _choose_monitor(hist: dict, monitor: str | None) -> str | None:
    if monitor is not None:
        if monitor not in hist:
            raise ValueError(f"monitor={monitor!r} is not in the history; it has "
                             f"{sorted(hist)}. Received: monitor={monitor!r}")
        return monitor
    names = [n for n in hist if n not in _NOT_METRICS]
    for prefix in ("val_", ""):
        for want in (is_accuracy_like, lambda n: "loss" in n):
            found = [n for n in names if n.startswith(prefix) and want(n)
                     and (prefix or not n.startswith("val_"))]
            if found:
                return found[0]
    return names[0] if names else None


def _best_epoch(name: str, values: list) -> int | None:
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        return None
    best = (max if is_accuracy_like(name) else min)(v for v, _ in finite)
    return next(i for v, i in finite if v == best) + 1


def _progress(name: str, previous: float, current: float) -> float:
    """How much better `current` is than `previous`, in the unit the thresholds use:
    percentage points for accuracy-like metrics, a fraction of the value for losses."""
    if is_accuracy_like(name):
        return 100.0 * (current - previous)
    return (previous - current) / max(abs(previous), 1e-12)


def _threshold(name: str, t: dict) -> float:
    return t["min_accuracy_points"] if is_accuracy_like(name) else t["min_loss_improvement"]


def _describe(name: str, amount: float, signed: bool = False) -> str:
    if is_accuracy_like(name):
        return f"{amount:+.2f}" if signed else f"{amount:.2f} percentage points"
    return f"{100 * amount:+.1f} %" if signed else f"{100 * amount:.1f} %"


def _verb(name: str) -> str:
    return "gained" if is_accuracy_like(name) else "improved by"


def _judge(report: PlateauReport, hist: dict, metric: str, values: list, t: dict):
    patience = t["patience"]
    loss = hist.get("loss")
    n = len(values)
    if (loss and not all(map(_finite, loss))) or not all(map(math.isfinite, values)):
        return _diverging(report, "The loss became NaN or infinite: training broke down.")
    if loss and len(loss) >= 2 and _rising(loss, patience, t["min_loss_improvement"]):
        return _diverging(report, f"The training loss went up from {min(loss):.4f} to "
                                  f"{loss[-1]:.4f}: the model is getting worse, not better.")
    overfit = _overfitting(hist, patience, t["min_loss_improvement"])
    if overfit is not None:
        return _overfit(report, hist, overfit)

    steps = [_progress(metric, a, b) for a, b in zip(values, values[1:])]
    threshold = _threshold(metric, t)
    worse = [s for s in steps if s < -threshold]
    net = _progress(metric, values[0], values[-1])
    total = sum(abs(s) for s in steps)
    if len(worse) >= 2 and total > 3 * max(abs(net), 1e-12) and len(steps) >= 3:
        return _noisy(report, metric, worse, threshold)

    flat = 0
    for s in reversed(steps):
        if s >= threshold:
            break
        flat += 1
    if flat >= patience:
        start = n - flat + 1  # 1-based first epoch that gained less than the threshold
        return _plateaued(report, hist, metric, values, steps, start, threshold)
    _improving(report, metric, steps, flat, threshold, patience)


def _rising(loss: list, patience: int, tolerance: float) -> bool:
    """The training loss ends clearly above its best, after rising for `patience` epochs."""
    best = min(loss)
    if len(loss) < patience + 1 or loss[-1] <= best * (1 + tolerance) + 1e-12:
        return False
    tail = loss[-(patience + 1):]
    return all(b > a for a, b in zip(tail, tail[1:])) or loss[-1] > loss[0]


def _overfitting(hist: dict, patience: int, tolerance: float):
    """(best validation epoch index) when val_loss rose for `patience` epochs since its best
    while the training loss kept falling; else None."""
    val, loss = hist.get("val_loss"), hist.get("loss")
    if not val or not loss or len(val) < patience + 1:
        return None
    if len(loss) != len(val):  # validation_freq > 1: the training loss at the validated epochs
        positions = epoch_positions(len(val), len(loss))
        loss = [loss[epoch] for epoch in sorted(positions)]
    best = min(range(len(val)), key=lambda i: val[i])
    if len(val) - 1 - best < patience or val[-1] <= val[best] * (1 + tolerance):
        return None
    if loss[-1] >= loss[best]:
        return None
    return best


def _diverging(report, message):
    report.verdict, report.message = DIVERGING, message
    report.suggestions = [
        "Lower the learning rate, e.g. 10 times smaller "
        "(kilnet.optimizers.Adam(learning_rate=1e-4)).",
        "Check that the inputs are scaled (divide images by 255) and contain no NaN.",
        "Clip gradients: kilnet.optimizers.Adam(global_clipnorm=1.0).",
    ]


def _overfit(report, hist, best):
    val, loss = hist["val_loss"], hist["loss"]
    epochs = sorted(epoch_positions(len(val), len(loss)))  # 0-based epoch of each val value
    loss = [loss[epoch] for epoch in epochs]
    best_epoch = epochs[best] + 1
    report.verdict = OVERFITTING
    report.best_epoch = best_epoch
    report.reached, report.epoch = True, best_epoch + 1
    report.message = (
        f"The validation loss was best at epoch {best_epoch} ({val[best]:.4f}) and has risen to "
        f"{val[-1]:.4f}, while the training loss kept falling ({loss[best]:.4f} -> "
        f"{loss[-1]:.4f}): the model is memorising the training data instead of learning what "
        "carries over to new data.")
    report.suggestions = [
        f"Stop at epoch {best_epoch}: EarlyStopping(monitor='val_loss', patience=2, "
        "restore_best_weights=True) keeps the best weights for you.",
        "Add regularization: a Dropout layer (layers.Dropout(0.2)) or a smaller model.",
        "More training data helps most against overfitting.",
    ]


def _noisy(report, metric, worse, threshold):
    report.verdict = NOISY
    report.message = (
        f"{metric} went down in {len(worse)} epochs by more than "
        f"{_describe(metric, threshold)} and up again: the steps are too large or the "
        "measurement is noisy, so single epochs say little.")
    report.suggestions = [
        "Lower the learning rate (or let ReduceLROnPlateau lower it) for steadier progress.",
        "Use a larger batch_size: each update then averages more examples.",
    ]
    if metric.startswith("val_"):
        report.suggestions.append("A larger validation set gives steadier numbers.")


def _plateaued(report, hist, metric, values, steps, start, threshold):
    report.verdict, report.reached, report.epoch = PLATEAUED, True, start
    last_gains = steps[start - 2:]
    report.message = (
        f"From epoch {start} on, {metric} {_verb(metric)} less than "
        f"{_describe(metric, threshold)} per epoch "
        f"({summarise_gains(metric, last_gains)}): the model has "
        f"reached its learning plateau. The last {len(last_gains)} epochs together "
        f"{_verb(metric)} {_describe(metric, _progress(metric, values[start - 2], values[-1]))}.")
    enough = f"{start - 1} epoch was" if start == 2 else f"{start - 1} epochs were"
    report.suggestions = [
        f"Stop earlier: {enough} enough. EarlyStopping(monitor={metric!r}, "
        f"min_delta={_min_delta(metric, threshold, values[-1])}, "
        f"patience={report.thresholds['patience']}, "
        "restore_best_weights=True) stops training by itself once it no longer improves by "
        "that much.",
        "Lower the learning rate at the plateau (ReduceLROnPlateau) to gain a little more.",
    ]
    report.suggestions += _capacity_advice(hist)


def summarise_gains(metric: str, gains: list, head: int = 3) -> str:
    """A series of per-epoch gains in words: each one when there are few, else the first
    `head` and then their range, so a long run does not list dozens of +0.00.

    >>> summarise_gains("accuracy", [0.4, 0.3, 0.1, 0.0, 0.01, -0.02, 0.0])
    '+0.40, +0.30, +0.10, then 4 epochs between -0.02 and +0.01'
    """
    text = [_describe(metric, g, signed=True) for g in gains]
    if len(gains) <= head + 2:
        return ", ".join(text)
    rest = gains[head:]
    return (", ".join(text[:head]) + f", then {len(rest)} epochs between "
            f"{_describe(metric, min(rest), signed=True)} and "
            f"{_describe(metric, max(rest), signed=True)}")


def _min_delta(metric, threshold, last):
    """EarlyStopping's min_delta is absolute: points become a fraction, a relative loss
    improvement becomes that fraction of the last loss."""
    value = threshold / 100.0 if is_accuracy_like(metric) else threshold * abs(last)
    return float(f"{value:.2g}")


def _capacity_advice(hist) -> list[str]:
    """At a plateau: is the model too small (train accuracy low) or too specialised (val
    well below train)?"""
    acc = next((n for n in hist if is_accuracy_like(n) and not n.startswith("val_")), None)
    advice = []
    if acc is not None and "val_" + acc in hist:
        gap = 100.0 * (hist[acc][-1] - hist["val_" + acc][-1])
        if gap > 2.0:
            advice.append(f"Training {acc} is {gap:.1f} points above validation: more data or "
                          "regularization (Dropout) would help more than more epochs.")
            return advice
    if acc is not None and "val_" + acc not in hist and hist[acc][-1] >= 0.95:
        advice.append(f"Training {acc} is {100 * hist[acc][-1]:.1f} %: the model already fits "
                      "the training data, so a bigger model is not the answer; whether it "
                      "overfits needs validation data (see above).")
        return advice
    if acc is not None and hist[acc][-1] < 0.95:
        advice.append(f"Training {acc} stopped at {100 * hist[acc][-1]:.1f} %: a bigger model "
                      "(more units or layers) can learn more of the training data.")
    else:
        advice.append("To go beyond this plateau, change the model or the data (a bigger or "
                      "convolutional model, more data), not the number of epochs.")
    return advice


def _improving(report, metric, steps, flat, threshold, patience):
    report.verdict = IMPROVING
    last = steps[-1]
    report.message = (f"{metric} still {_verb(metric)} {_describe(metric, last)} in the last "
                      f"epoch (a plateau is less than {_describe(metric, threshold)} for "
                      f"{patience} epochs in a row).")
    if flat and last < 0:
        best = max(steps) if steps else 0.0
        report.message = (f"{metric} gained up to {_describe(metric, best)} per epoch earlier, "
                          f"but fell back by {_describe(metric, -last)} in the last one, which "
                          "a single epoch cannot tell from noise; "
                          f"{patience} epochs in a row without a gain of "
                          f"{_describe(metric, threshold)} would be a plateau.")
    elif flat:
        report.message = (f"{metric} {_verb(metric)} only {_describe(metric, last)} in the last "
                          "epoch; "
                          f"{patience} such epochs in a row would be a plateau.")
    report.suggestions = ["Train a few more epochs to see whether it keeps improving or has "
                          "reached its plateau." if flat else
                          "Train for more epochs: the model is still learning."]
