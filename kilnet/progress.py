"""Progress display for fit/evaluate/predict.

On a terminal (or in Jupyter, which rich renders as a live widget) each epoch gets a live bar
with steps, elapsed time, ETA, loss and metrics. Anywhere else (a log file, CI) an epoch is
exactly one plain line, with no ANSI codes or carriage returns.
"""

from __future__ import annotations

import numbers
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _jupyter_widgets_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("ipywidgets") is not None


def resolve_verbose(verbose) -> int:
    """Keras's verbose values as 0, 1 or 2: "auto" and True mean 1 (a live bar on a terminal, one
    line per epoch elsewhere), False means 0 (silent), 2 one plain line per epoch."""
    if isinstance(verbose, str):
        if verbose == "auto":
            return 1
    elif isinstance(verbose, bool):
        return int(verbose)
    elif isinstance(verbose, numbers.Integral) and verbose in (0, 1, 2):
        return int(verbose)
    raise ValueError("verbose must be 'auto', 0, 1, 2, True or False. "
                     f"Received: verbose={verbose!r}")


def format_logs(logs: dict, gains: dict | None = None) -> str:
    parts = []
    for name, value in logs.items():
        # Keras's Progbar rule: small magnitudes (a learning rate) in scientific notation.
        small = value != 0 and abs(value) <= 1e-3
        text = f"{name}: {value:.4e}" if small else f"{name}: {value:.4f}"
        if gains and name in gains:
            text += f" ({gains[name]})"
        parts.append(text)
    return " - ".join(parts)


class EpochProgress:
    """One object per fit/evaluate call; `verbose` as in Keras."""

    def __init__(self, verbose, total_epochs: int, steps: int, stream=None, title="Epoch"):
        self.stream = stream or sys.stdout
        self.verbose = resolve_verbose(verbose)
        self.total_epochs = total_epochs
        self.steps = steps
        self.title = title
        console = Console(file=self.stream)
        # In Jupyter rich draws the live bar in an ipywidgets Output that updates in place;
        # without ipywidgets it would show nothing, so fall back to one line per epoch.
        self.live = self.verbose == 1 and (
            console.is_terminal or (console.is_jupyter and _jupyter_widgets_available()))
        self.console = console
        self._bar = None
        self._task = None
        self._began = time.perf_counter()

    def epoch_begin(self, epoch: int):
        self._began = time.perf_counter()
        if not self.live:
            return
        label = f"{self.title} {epoch + 1}/{self.total_epochs}" if self.total_epochs else self.title
        self._bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                             TextColumn("{task.fields[logs]}"), console=self.console,
                             transient=False)
        self._bar.start()
        self._task = self._bar.add_task(label, total=self.steps, logs="")

    def update(self, steps_done: int, logs: dict):
        if self._bar is not None:
            self._bar.update(self._task, completed=steps_done, logs=format_logs(logs))

    def epoch_end(self, epoch: int, logs: dict, gains: dict | None = None, steps_done=None):
        """The epoch's last line. steps_done: the steps run when the epoch ended early (the
        data ran out); default all of them."""
        seconds = time.perf_counter() - self._began
        done = self.steps if steps_done is None else steps_done
        if self._bar is not None:
            self._bar.update(self._task, completed=done, logs=format_logs(logs, gains))
            self._bar.stop()
            self._bar = None
            return
        if self.verbose == 0:
            return
        head = f"{self.title} {epoch + 1}/{self.total_epochs}" if self.total_epochs else self.title
        steps = f"{done}/{self.steps}" if self.steps else "?"
        line = f"{head} - {steps} - {seconds:.1f}s"
        if logs:
            line += f" - {format_logs(logs, gains)}"
        print(line, file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
