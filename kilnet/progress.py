"""Progress display for fit/evaluate/predict, right wherever the output goes.

- A terminal gets one live line per epoch, rewritten in place. It is cut to the terminal's
  width (read at every update), dropping the elapsed time, the bar and then metrics from the
  end, because a line wider than the terminal wraps and `\\r` then rewrites only its last row.
  When the epoch ends the line is replaced by the epoch's full plain line.
- A Jupyter or VS Code notebook gets one display per fit, updated in place: the finished
  epochs' full lines and the live line of the current epoch. Its final state is every epoch's
  full line, stored as text/plain (readable on GitHub or offline) and text/html.
- Anywhere else (a log file, CI) and with verbose=2 an epoch is exactly one plain line, with
  no ANSI codes or carriage returns.
- With `kilnet.config.disable_interactive_logging()` those plain lines go to Python's
  `logging` (logger "kilnet", INFO) instead, as Keras logs them then.
"""

from __future__ import annotations

import html
import logging
import numbers
import os
import sys
import time

import numpy as np

from kilnet import config

_MIN_UPDATE_SECONDS = 0.1  # live redraws closer together than this are skipped
_BAR_WIDTHS = (30, 20, 10)  # the bar shrinks through these before it is dropped


def resolve_verbose(verbose) -> int:
    """Keras's verbose values as 0, 1 or 2: "auto" and True mean 1 (a live bar on a terminal or
    in a notebook, one line per epoch elsewhere), False means 0 (silent), 2 one plain line per
    epoch.

    >>> resolve_verbose("auto"), resolve_verbose(False), resolve_verbose(2)
    (1, 0, 2)
    """
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
    """Metrics as Keras's progress bar writes them, each with its gain when given.

    >>> format_logs({"loss": 0.25, "accuracy": 0.9}, {"accuracy": "+1.00"})
    'loss: 0.2500 - accuracy: 0.9000 (+1.00)'
    """
    return " - ".join(_log_fields(logs, gains))


def _log_fields(logs: dict, gains: dict | None = None) -> list[str]:
    parts = []
    for name, value in logs.items():
        if isinstance(value, (list, tuple)):  # one value per class: shown as their mean (Keras)
            value = sum(value) / len(value) if value else float("nan")
        # Keras's Progbar rule: small magnitudes (a learning rate) in scientific notation.
        small = value != 0 and abs(value) <= 1e-3
        text = f"{name}: {value:.4e}" if small else f"{name}: {value:.4f}"
        if gains and name in gains:
            text += f" ({gains[name]})"
        parts.append(text)
    return parts


def fit_line(head: str, done: int, total: int | None, elapsed: float, logs: dict,
             width: int, bar_widths=_BAR_WIDTHS) -> str:
    """The live line of an epoch, at most `width - 1` characters (the last column stays free:
    writing into it makes some terminals wrap). Fields go as the width shrinks: first the
    elapsed time and ETA, then the bar narrows and goes, then metrics from the end; the head is
    cut last.

    >>> fit_line("Epoch 1/5", 50, 100, 2.0, {"loss": 0.5}, 200)
    'Epoch 1/5 [==============>...............] 50/100 2s ETA 2s - loss: 0.5000'
    >>> fit_line("Epoch 1/5", 50, 100, 2.0, {"loss": 0.5}, 40)
    'Epoch 1/5 50/100 - loss: 0.5000'
    """
    limit = max(width - 1, 1)
    fields = _log_fields(logs)
    count = f"{done}/{total}" if total else f"{done}/?"
    timing = f"{elapsed:.0f}s" + (f" ETA {_eta(done, total, elapsed)}" if total else "")
    tries = [(bar_widths[0], True)] + [(w, False) for w in bar_widths] if bar_widths else []
    for bar_width, show_time in tries:
        line = _compose(head, _bar(done, total, bar_width), count, timing if show_time else "",
                        fields)
        if len(line) <= limit:
            return line
    for kept in range(len(fields), -1, -1):  # no bar; metrics dropped from the end
        line = _compose(head, "", count, "", fields[:kept])
        if len(line) <= limit:
            return line
    return line[:limit - 1] + "…" if limit > 1 else line[:limit]


def _compose(head, bar, count, timing, fields) -> str:
    words = [w for w in (head, bar, count, timing) if w]
    return " - ".join([" ".join(words), *fields])


def _bar(done: int, total: int | None, width: int) -> str:
    if not total:
        return ""
    filled = min(width, int(width * done / total))
    arrow = ">" if filled < width else ""
    return "[" + "=" * max(filled - len(arrow), 0) + arrow + "." * (width - filled) + "]"


def _eta(done: int, total: int, elapsed: float) -> str:
    if done <= 0:
        return "?"
    return f"{max(elapsed * (total - done) / done, 0):.0f}s"


def terminal_width(stream=None) -> int:
    """The terminal's width in columns: $COLUMNS when set, else the terminal's own, else 80.

    >>> import io
    >>> terminal_width(io.StringIO()) > 0
    True
    """
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size((stream or sys.stdout).fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80


def in_notebook() -> bool:
    """True inside a Jupyter kernel (Jupyter, JupyterLab, VS Code, Colab): IPython is loaded
    and its shell is ZMQInteractiveShell or a subclass of it. IPython is never imported here.

    >>> in_notebook()
    False
    """
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    return shell is not None and any(cls.__name__ == "ZMQInteractiveShell"
                                     for cls in type(shell).__mro__)


def display_mode(verbose: int, stream=None) -> str:
    """Where a live display goes: "off" (verbose 0), "lines" (verbose 2, or output that is
    neither a terminal nor a notebook: one plain line when done), "notebook" or "terminal".

    >>> import io
    >>> display_mode(1, io.StringIO()), display_mode(0), display_mode(2)
    ('lines', 'off', 'lines')
    """
    if verbose == 0:
        return "off"
    if verbose == 2 or not config.is_interactive_logging_enabled():
        return "lines"
    if stream is None and in_notebook():
        return "notebook"
    tty = bool(getattr(stream or sys.stdout, "isatty", lambda: False)())
    return "terminal" if tty else "lines"


def emit(line: str, stream=None) -> None:
    """One finished line of progress or of fit's closing report: printed, or logged when
    interactive logging is off (kilnet.config.disable_interactive_logging).

    >>> import io
    >>> out = io.StringIO()
    >>> emit("Epoch 1/1 - done", out); out.getvalue()
    'Epoch 1/1 - done\\n'
    """
    if config.is_interactive_logging_enabled():
        print(line, file=stream or sys.stdout, flush=True)
    else:
        logging.getLogger("kilnet").info(line)


class _Notebook:
    """One display per fit, updated in place: the finished lines plus the live one."""

    def __init__(self):
        from IPython.display import display  # only reached inside a notebook

        self.lines: list[str] = []
        self._handle = display(self._bundle(""), raw=True, display_id=True)

    def show(self, live: str = "", fraction: float | None = None):
        self._handle.update(self._bundle(live, fraction), raw=True)

    def _bundle(self, live: str, fraction: float | None = None) -> dict:
        text = "\n".join(self.lines + ([live] if live else []))
        markup = "".join(f"<div>{html.escape(line)}</div>" for line in self.lines)
        if live:
            bar = (f'<progress value="{fraction:.3f}" max="1" style="width:12em"></progress> '
                   if fraction is not None else "")
            markup += f"<div>{bar}{html.escape(live)}</div>"
        return {"text/plain": text or " ",
                "text/html": f'<pre style="margin:0">{markup or "&nbsp;"}</pre>'}


class EpochProgress:
    """One object per fit/evaluate call; `verbose` as in Keras.

    >>> import io
    >>> out = io.StringIO()
    >>> bar = EpochProgress(1, 2, 10, stream=out)  # not a terminal: one plain line per epoch
    >>> bar.epoch_begin(0); bar.epoch_end(0, {"loss": 0.5})
    >>> out.getvalue().startswith("Epoch 1/2 - 10/10 - ")
    True
    """

    def __init__(self, verbose, total_epochs: int, steps: int, stream=None, title="Epoch"):
        self.stream = stream or sys.stdout
        self.verbose = resolve_verbose(verbose)
        self.total_epochs = total_epochs
        self.steps = steps
        self.title = title
        self.mode = display_mode(self.verbose, stream)
        self.live = self.mode in ("terminal", "notebook")
        self._notebook = None
        self._began = time.perf_counter()
        self._last_draw = 0.0
        self._open = False
        self._head = title

    def epoch_begin(self, epoch: int):
        self._began = time.perf_counter()
        self._last_draw = 0.0
        self._head = (f"{self.title} {epoch + 1}/{self.total_epochs}" if self.total_epochs
                      else self.title)
        if self.mode == "notebook" and self._notebook is None:
            self._notebook = _Notebook()
        if self.live:
            self._draw(0, {})

    def update(self, steps_done: int, logs: dict):
        now = time.perf_counter()
        if self.live and now - self._last_draw >= _MIN_UPDATE_SECONDS:
            self._draw(steps_done, logs)

    def _draw(self, done: int, logs: dict):
        self._last_draw = time.perf_counter()
        self._open = True  # a live line is on screen
        elapsed = self._last_draw - self._began
        if self.mode == "terminal":
            line = fit_line(self._head, done, self.steps, elapsed, logs,
                            terminal_width(self.stream))
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
        else:
            line = fit_line(self._head, done, self.steps, elapsed, logs, 10_000)
            self._notebook.show(line, done / self.steps if self.steps else None)

    def epoch_end(self, epoch: int, logs: dict, gains: dict | None = None, steps_done=None):
        """The epoch's last line. steps_done: the steps run when the epoch ended early (the
        data ran out); default all of them."""
        if self.mode == "off":
            return
        self._open = False
        seconds = time.perf_counter() - self._began
        done = self.steps if steps_done is None else steps_done
        steps = f"{done}/{self.steps}" if self.steps else "?"
        line = f"{self._head} - {steps} - {seconds:.1f}s"
        if logs:
            line += f" - {format_logs(logs, gains)}"
        if self.mode == "notebook":
            self._notebook.lines.append(line)
            self._notebook.show()
        elif self.mode == "terminal":  # the full line replaces the live one, once
            self.stream.write("\r\x1b[K" + line + "\n")
            self.stream.flush()
        else:
            emit(line, self.stream)

    def close(self):
        """Ends a live line that an interruption left unfinished."""
        if self.mode == "terminal" and self._open:
            self.stream.write("\n")
            self.stream.flush()
        self._open = False


class Progbar:
    """Keras's `keras.utils.Progbar`: a progress bar for loops of your own (a custom training
    loop, a data pass), shown like fit's: live in a terminal or notebook, one plain line in a
    log.

    Metrics given to `update` are averaged over the steps since the start (each value weighted
    by the steps it covers), except those named in `stateful_metrics` (shown as given); as in
    Keras, the final update shows the values it is given. A log file (or `verbose=2`) gets
    one line when the bar finishes, not one line per update.

    Args:
        target: the number of steps, or None if unknown.
        width: the bar's width in characters (it narrows, then goes, in a narrow terminal).
        verbose: 0 silent, 1 live bar, 2 one line at the end.
        interval: the least time between two redraws, in seconds.
        stateful_metrics: names of metrics shown as given (not averaged).
        stateless_metrics: names of metrics to average, the others shown as given (give at
            most one of the two lists).
        unit_name: the name of a step in the time per step ("step", "sample").

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> bar = Progbar(4, stream=out)
        >>> for step in range(1, 5):
        ...     bar.update(step, [("loss", 1.0 / step)])
        >>> round(bar.averages()["loss"], 4)   # the last update shows its own value
        0.25
        >>> out.getvalue().startswith("4/4 - ")
        True
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None,
                 stateless_metrics=None, unit_name="step", stream=None):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError("Give at most one of stateful_metrics (averaged by default) and "
                             "stateless_metrics (shown as given by default). Received: "
                             f"stateful_metrics={stateful_metrics!r}, "
                             f"stateless_metrics={stateless_metrics!r}")
        if target is not None and (isinstance(target, bool)
                                   or not isinstance(target, numbers.Integral) or target < 0):
            raise ValueError("target must be a number of steps (an int >= 0) or None. "
                             f"Received: target={target!r}")
        self.target = None if target is None else int(target)
        self.width = int(width)
        self.verbose = resolve_verbose(verbose)
        self.interval = float(interval)
        self.unit_name = unit_name
        self._averaged = ((lambda name: name not in set(stateful_metrics or ()))
                          if stateless_metrics is None
                          else (lambda name: name in set(stateless_metrics)))
        self.stream = stream or sys.stdout
        self.mode = display_mode(self.verbose, stream)
        self._sums: dict = {}          # name -> [sum of value x steps, steps]
        self._seen_so_far = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._notebook = None

    def update(self, current, values=None, finalize=None):
        """Step `current` is done; `values`: [(name, value of this step), ...]; `finalize`
        (default: `current >= target`) ends the bar."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        steps = max(current - self._seen_so_far, 1)
        for name, value in values or []:
            value = float(np.mean(value))
            if self._averaged(name) and not finalize:
                total, count = self._sums.get(name, (0.0, 0))
                self._sums[name] = [total + value * steps, count + steps]
            else:
                self._sums[name] = [value, 1]
        self._seen_so_far = current
        now = time.perf_counter()
        if self.mode == "off" or (not finalize and (self.mode == "lines"
                                                    or now - self._last_draw < self.interval)):
            return
        self._last_draw = now
        self._show(current, now - self._start, finalize)

    def add(self, n, values=None):
        """`update(steps so far + n, values)`."""
        self.update(self._seen_so_far + n, values)

    def averages(self) -> dict:
        """The values the bar shows now: {name: average (or value as given)}."""
        return {name: total / max(count, 1) for name, (total, count) in self._sums.items()}

    def _show(self, current, elapsed, finalize):
        widths = tuple(w for w in (self.width, self.width // 2) if w > 0)
        if finalize:
            per_step = elapsed / current if current else 0.0
            line = f"{current}/{self.target or '?'} - {elapsed:.0f}s {_per_unit(per_step)}/" \
                   f"{self.unit_name}"
            if self._sums:
                line += " - " + format_logs(self.averages())
        if self.mode == "terminal":
            if not finalize:
                line = fit_line("", current, self.target, elapsed, self.averages(),
                                terminal_width(self.stream), widths)
            self.stream.write("\r" + line + ("\x1b[K\n" if finalize else "\x1b[K"))
            self.stream.flush()
        elif self.mode == "notebook":
            self._notebook = self._notebook or _Notebook()
            if finalize:
                self._notebook.lines.append(line)
                self._notebook.show()
            else:
                fraction = current / self.target if self.target else None
                self._notebook.show(fit_line("", current, self.target, elapsed,
                                             self.averages(), 10_000, widths), fraction)
        else:
            emit(line, self.stream)


def _per_unit(seconds: float) -> str:
    """A duration per step as Keras writes it: 2s, 15ms, 40us."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"
