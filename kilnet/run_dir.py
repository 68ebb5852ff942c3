"""The run folder `kilnet train` writes, and how its files are written and read.

A run folder holds (see `kilnet train --help`):

    config.json     what was asked and where it ran: every option, versions, devices, the
                    dataset's source and sample counts, the model's architecture, the compile
                    report; "status" says whether the run is running, completed, stopped by a
                    numeric fault or interrupted, and "results" holds the test metrics
    history.json    per-epoch logs, Keras's `history.history` plus "epoch" (0-based, as in
                    Keras's `history.epoch` and CSVLogger): {"epoch": [0, 1], "loss": [..], ..}
    history.csv     the same as a table: epoch,loss,accuracy[,val_loss,val_accuracy]
    model.kilnet    the trained model (kilnet.models.load_model)
    predictions.npz the test set's labels and predicted probabilities, for the report
    curves.png      the learning curves; report.html: the HTML run report

Each file is written whole to a temporary name and renamed, so an interrupted run never
leaves a half-written file; history files are rewritten at every epoch end.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from kilnet.callbacks import Callback

CONFIG = "config.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
MODEL = "model.kilnet"
PREDICTIONS = "predictions.npz"
CURVES = "curves.png"
REPORT = "report.html"
_UMASK = os.umask(0)
os.umask(_UMASK)


def default_path(dataset: str, model: str, root="runs") -> Path:
    """`runs/<dataset>-<model>-<YYYYmmdd-HHMMSS>`, with a suffix if that folder exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{_slug(dataset)}-{_slug(model)}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in str(text)) or "data"


def write_bytes(path, data: bytes) -> None:
    """Atomically replace `path` with `data` (temporary file in the same folder, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj) -> None:
    write_bytes(path, (json.dumps(_jsonable(obj), indent=2) + "\n").encode())


def read_json(path):
    return json.loads(Path(path).read_text())


def _jsonable(value):
    """NumPy scalars to Python numbers; NaN/inf to None (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_history(folder, epochs: list, logs: dict) -> None:
    """history.json and history.csv from `epochs` (0-based) and {name: [value per epoch]}."""
    folder = Path(folder)
    write_json(folder / HISTORY_JSON, {"epoch": list(epochs), **logs})
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    names = list(logs)
    writer.writerow(["epoch", *names])
    for i, epoch in enumerate(epochs):
        writer.writerow([epoch, *(_csv_number(logs[name][i]) for name in names)])
    write_bytes(folder / HISTORY_CSV, table.getvalue().encode())


def _csv_number(value):
    return "" if value is None else repr(float(value))


def read_history(folder) -> dict:
    """The history.json of a run folder, as {"epoch": [...], "loss": [...], ...}."""
    return read_json(Path(folder) / HISTORY_JSON)


class HistoryWriter(Callback):
    """Rewrites history.json and history.csv at every epoch end, so an interrupted or failed
    run still leaves the epochs it finished."""

    def __init__(self, folder):
        super().__init__()
        self.folder = Path(folder)
        self.epochs: list[int] = []
        self.logs: dict[str, list] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(int(epoch))
        for name, value in (logs or {}).items():
            self.logs.setdefault(name, [None] * (len(self.epochs) - 1)).append(float(value))
        for values in self.logs.values():  # a metric missing this epoch
            values.extend([None] * (len(self.epochs) - len(values)))
        write_history(self.folder, self.epochs, self.logs)


# -- one training run ------------------------------------------------------------------------
def versions() -> dict:
    import platform
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in ("kilnet", "jax", "jaxlib", "optax", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Run:
    """The run folder of one `kilnet train`: config.json first (status "running"), the history
    during training (HistoryWriter), then the model, predictions, curves and report."""

    def __init__(self, folder, args, data, model, *, seed: int, samples: dict):
        import jax

        self.folder = Path(folder)
        self.model = model
        self.notes: list[str] = []   # lines for the command to print at the end
        self._began = time.perf_counter()
        options = {k: v for k, v in vars(args).items() if k not in ("run", "debug", "command")}
        options["seed"], options["out"] = seed, str(self.folder)
        self.config = {
            "command": "train",
            "options": options,
            "status": "running",
            "started": _now(),
            "versions": versions(),
            "devices": [f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices()],
            "dataset": {"name": data.name, "source": data.source, "samples": samples,
                        "image_shape": list(data.train[0].shape[1:])},
            "model": {"kind": options.get("model"), "params": model.count_params(),
                      "architecture": model.get_config()},
        }
        self._write_config()

    def _write_config(self):
        report = self.model.compile_report
        if report is not None:
            self.config["compile_report"] = report.as_dict()
        write_json(self.folder / CONFIG, self.config)

    @contextmanager
    def recording(self):
        """Records in config.json how the run ended, whatever ends it; never swallows it."""
        from kilnet.errors import NonFiniteError

        try:
            yield self
        except BaseException as error:
            if isinstance(error, NonFiniteError):
                status = "stopped: non-finite loss or gradient"
            elif isinstance(error, KeyboardInterrupt):
                status = "interrupted"
            else:
                status = f"failed: {type(error).__name__}"
            self.config.update(status=status, finished=_now(), error=" ".join(str(error).split()),
                               seconds=round(time.perf_counter() - self._began, 3))
            self._write_config()
            raise

    def finish(self, history, test_logs: dict, *, y_test, probabilities):
        import numpy as np

        self.config.update(status="completed", finished=_now(),
                           seconds=round(time.perf_counter() - self._began, 3),
                           results={f"test_{k}": float(v) for k, v in test_logs.items()},
                           epochs_run=len(history.epoch))
        self._write_config()
        probabilities = np.asarray(probabilities, np.float32)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, y_true=np.asarray(y_test), probabilities=probabilities,
                            y_pred=probabilities.argmax(axis=1).astype(np.uint8))
        write_bytes(self.folder / PREDICTIONS, buffer.getvalue())
        self._save_model()
        self._plateau(history)
        self._curves(history)
        report = write_report(self.folder)
        if report is not None:
            self.notes.append(f"Report: {report}")

    def _save_model(self):
        if not hasattr(self.model, "save"):
            _missing("model.save (kilnet.saving): model.kilnet was not written")
            return
        self.model.save(self.folder / MODEL)
        self.notes.append(f"Model: {self.folder / MODEL}")

    def _plateau(self, history):
        if _optional("kilnet.insight") is None:
            _missing("kilnet.insight: no plateau summary")
            return
        self.notes.insert(0, str(history.plateau()))

    def _curves(self, history):
        import kilnet

        if not hasattr(kilnet, "plot_history"):
            _missing("kilnet.plot_history: curves.png was not written")
            return
        kilnet.plot_history(history, self.folder / CURVES)
        self.notes.append(f"Curves: {self.folder / CURVES}")


def write_report(folder):
    """Write folder/report.html with kilnet.report; returns its path, or None without it."""
    report = _optional("kilnet.report")
    if report is None:
        _missing("kilnet.report: report.html was not written")
        return None
    return report.write_report(Path(folder))


def _optional(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name == module:
            return None
        raise


def _missing(what: str):
    import warnings

    warnings.warn(f"not available in this kilnet yet: {what}", stacklevel=3)
