"""plot_history: the training curves of a run as a PNG.

    history = model.fit(x_train, y_train, validation_split=0.1, epochs=10)
    kilnet.plot_history(history, "curves.png")

Loss on the left, accuracy (or another metric) on the right, training and validation per epoch,
and the plateau found by kilnet.insight.analyze_plateau shaded. Drawn with matplotlib's Agg
renderer on a Figure object: the user's pyplot backend and open figures are left alone.
"""

from __future__ import annotations

import math
import os

from kilnet import insight

FIGSIZE = (10.0, 4.0)  # inches: with DPI 100, a 1000 x 400 pixel image
DPI = 100
TRAIN_COLOR, VAL_COLOR, PLATEAU_COLOR = "#1f77b4", "#ff7f0e", "#9e9e9e"


def plot_history(history, path=None, *, title: str | None = None, plateau=True,
                 figsize=FIGSIZE, dpi: int = DPI):
    """Draw loss and accuracy per epoch (training and validation) and mark the plateau.

    history: a History (what fit returns) or its .history dict.
    path: where to write the PNG (a path or a binary file object); None returns the
        matplotlib Figure instead.
    plateau: True to analyse the history and shade the plateau, False for none, or a
        kilnet.insight.PlateauReport already computed.
    Returns the path written (or the Figure when path is None).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hist = getattr(history, "history", history)
    if isinstance(hist, dict):
        hist = {k: [math.nan if v is None else float(v) for v in values]
                for k, values in hist.items() if k not in insight.NOT_METRICS and values}
    if not isinstance(hist, dict) or not hist:
        raise ValueError("plot_history needs a History (what fit returns) or its .history dict "
                         f"with at least one epoch. Received: {history!r}")
    report = plateau
    if plateau is True:
        report = insight.analyze_plateau(hist)
    elif plateau is False or plateau is None:
        report = None

    panels = _panels(hist)
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, name in zip(axes, panels):
        _draw_panel(ax, hist, name, report)
    verdict = f"verdict: {report.verdict}" if report is not None else ""
    fig.suptitle(" - ".join(t for t in (title, verdict) if t) or "Training history",
                 fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.85, wspace=0.22)
    if path is None:
        return fig
    target = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    fig.savefig(target, format="png", dpi=dpi)
    return target


def _panels(hist: dict) -> list[str]:
    """The training-side series to draw: the loss first, then the first accuracy-like metric
    (or the first other metric)."""
    names = [n for n in hist if not n.startswith("val_") and n not in insight.NOT_METRICS]
    if not names:  # only validation series
        names = [n[4:] for n in hist if n.startswith("val_")]
    loss = next((n for n in names if n == "loss"), names[0])
    other = [n for n in names if n != loss]
    accuracy = next((n for n in other if insight.is_accuracy_like(n)), None)
    return [loss] + ([accuracy or other[0]] if other else [])


def _draw_panel(ax, hist, name, report):
    accuracy_like = insight.is_accuracy_like(name)
    scale = 100.0 if accuracy_like else 1.0
    epochs = 0
    for key, label, color in ((name, "training", TRAIN_COLOR),
                              ("val_" + name, "validation", VAL_COLOR)):
        values = hist.get(key)
        if not values:
            continue
        xs = list(range(1, len(values) + 1))
        ax.plot(xs, [scale * float(v) for v in values], marker="o", markersize=4,
                color=color, label=label)
        epochs = max(epochs, len(values))
    if report is not None and report.reached and report.epoch:
        # Shaded from the last epoch that still gained: the flat segments lie after it.
        ax.axvspan(report.epoch - 1, epochs + 0.5, color=PLATEAU_COLOR, alpha=0.25,
                   label=f"{report.verdict} after epoch {report.epoch - 1}")
    ax.set_xlim(0.5, epochs + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{name} (%)" if accuracy_like else name)
    ax.set_title(name)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
