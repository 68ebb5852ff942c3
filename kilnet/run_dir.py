"""The run folder `kilnet train` writes, and how its files are written.

A run folder holds what kilnet.report reads (its module docstring is the contract), plus the
model and a CSV copy of the history:

    config.json          the run's configuration: every option (with the seed actually used),
                         versions, devices, the dataset's name, source and sample counts, the
                         model's architecture (model.get_config()), and "status": running,
                         completed, stopped (a numeric fault), interrupted or failed
    history.json         Keras's `history.history`: {"loss": [...], "accuracy": [...], ...}
    history.csv          the same as a table, with Keras CSVLogger's 0-based epoch column
    compile_report.json  model.compile_report.as_dict(): the XLA programs, FLOPs, memory
    metrics.json         the test metrics, model.evaluate(..., return_dict=True)
    model_summary.txt    model.summary()
    predictions.npz      kilnet.report.save_predictions: test labels, probabilities and the
                         misclassified test images
    model.kilnet         the trained model, for kilnet.models.load_model / `kilnet predict`
    curves.png           kilnet.plot.plot_history
    report.html          kilnet.report.report_from_run_dir

Files are written whole to a temporary name and renamed, so an interrupted run never leaves a
half-written file; config.json and the history files are rewritten as the run progresses.
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
COMPILE_REPORT = "compile_report.json"
METRICS = "metrics.json"
SUMMARY = "model_summary.txt"
PREDICTIONS = "predictions.npz"
MODEL = "model.kilnet"
CURVES = "curves.png"
REPORT = "report.html"
BACKUP = "backup"    # BackupAndRestore's checkpoints while the run is unfinished
_UMASK = os.umask(0)
os.umask(_UMASK)


def default_path(dataset: str, model: str, root="runs", options: dict | None = None) -> Path:
    """The run folder a plain `kilnet train` uses: `runs/<dataset>-<model>`, the same on every
    rerun, so rerunning an interrupted command resumes it. A folder holding a finished run (or
    an unfinished one of other options) is kept: then `-2`, `-3`, ... is used.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> default_path("mnist", "mlp", root=root).name
    'mnist-mlp'
    """
    base = Path(root) / f"{_slug(dataset)}-{_slug(model)}"
    n = 1
    while True:
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        if not path.exists() or (resumable_seed(path) is not None
                                 and same_job(read_config(path) or {}, options or {})):
            return path
        n += 1


# Options that may change between an interrupted run and the command that resumes it.
_FREE_OPTIONS = ("epochs", "seed", "out", "overwrite", "debug", "coordinator", "num_processes",
                 "process_id")


def same_job(config: dict, options: dict) -> bool:
    """Whether the run recorded in `config` trains what `options` asks (all but the options
    that a resume may change: --epochs, --seed, --out).

    >>> same_job({"options": {"model": "mlp", "epochs": 5}}, {"model": "mlp", "epochs": 9})
    True
    """
    recorded = config.get("options") or {}
    return all(recorded.get(k) == v for k, v in options.items() if k not in _FREE_OPTIONS)


def read_config(folder) -> dict | None:
    """The run's config.json as a dict; None when the folder has none (or it is unreadable).

    >>> read_config("/nonexistent") is None
    True
    """
    try:
        config = json.loads((Path(folder) / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def is_finished(folder) -> bool:
    """True when `folder` holds a run that completed (its config.json says so).

    >>> is_finished("/nonexistent")
    False
    """
    return (read_config(folder) or {}).get("status") == "completed"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in str(text)) or "data"


# -- atomic files ----------------------------------------------------------------------------
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


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(_jsonable(obj), indent=2) + "\n")


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


# -- the history -----------------------------------------------------------------------------
def write_history(folder, epochs: list, logs: dict) -> None:
    """history.json ({name: [value per epoch]}) and history.csv (with a 0-based epoch column)."""
    folder = Path(folder)
    write_json(folder / HISTORY_JSON, logs)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    names = list(logs)
    writer.writerow(["epoch", *names])
    for i, epoch in enumerate(epochs):
        writer.writerow([epoch, *(repr(float(logs[name][i])) for name in names)])
    write_text(folder / HISTORY_CSV, table.getvalue())


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
            self.logs.setdefault(name, []).append(float(value))
        write_history(self.folder, self.epochs, self.logs)

    # BackupAndRestore keeps this state in its checkpoints, so a resumed run's history files
    # hold every epoch, not just those after the resume.
    def get_state(self) -> dict:
        # Pairs, not a dict: the checkpoint's JSON may sort keys, and the column order matters.
        return {"epochs": list(self.epochs), "logs": [[k, list(v)] for k, v in self.logs.items()]}

    def set_state(self, state: dict) -> None:
        self.epochs = [int(e) for e in state["epochs"]]
        self.logs = {str(k): [float(v) for v in values] for k, values in state["logs"]}

    @property
    def history(self) -> dict:
        return self.logs


class RunProgress(Callback):
    """The progress lines of `kilnet train`, numbered and with gains over the whole run: after
    a resume the gains start from the last epoch before the interruption, which `history`
    (the HistoryWriter, restored by BackupAndRestore) still holds.

    >>> RunProgress(HistoryWriter(".")).progress is None
    True
    """

    chunk_batch_hooks = True   # its batch hooks read the chunk's end (kilnet.callbacks)

    def __init__(self, history: HistoryWriter, verbose=1):
        super().__init__()
        self.history = history
        self.verbose = verbose
        self.progress = None
        self._previous = None

    def on_epoch_begin(self, epoch, logs=None):
        from kilnet.progress import EpochProgress

        if self.progress is None:
            self.progress = EpochProgress(self.verbose, self.params.get("epochs"),
                                          self.params.get("steps"))
            self._previous = {k: v[-1] for k, v in self.history.logs.items() if v} or None
        self.progress.steps = self.params.get("steps") or self.progress.steps
        self.progress.epoch_begin(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if self.progress is not None:
            self.progress.update(batch + 1, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        from kilnet.insight import gain_labels

        logs = dict(logs or {})
        self.progress.epoch_end(epoch, logs, gain_labels(self._previous, logs))
        self._previous = logs

    def on_train_end(self, logs=None):
        if self.progress is not None:
            self.progress.close()


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


def resumable_seed(folder):
    """The seed of an unfinished run in `folder` that left a checkpoint to resume, else None."""
    folder = Path(folder)
    backup = folder / BACKUP
    if not (backup.is_dir() and any(backup.iterdir())):
        return None
    config = read_config(folder) or {}
    if config.get("status") not in ("running", "interrupted"):
        return None  # completed, failed or stopped by a numeric fault: nothing to continue
    seed = (config.get("options") or {}).get("seed")
    return seed if isinstance(seed, int) and seed >= 0 else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Run:
    """The run folder of one `kilnet train`: config.json first (status "running"), the history
    during training (HistoryWriter), then the results, model, predictions, curves and report."""

    def __init__(self, folder, args, data, model, *, seed: int, samples: dict,
                 resume: str | None = None):
        import jax

        self.folder = Path(folder)
        self.model = model
        self.notes: list[str] = []   # lines for the command to print at the end
        self.resume = resume         # the command that resumes this run, kept if interrupted
        self._began = time.perf_counter()
        options = {k: v for k, v in vars(args).items() if k not in ("run", "debug", "command")}
        options["seed"], options["out"] = seed, str(self.folder)
        self.config = {
            "command": "kilnet train",
            "status": "running",
            "started": _now(),
            "options": options,
            "dataset": {"name": data.name, "spec": options.get("dataset"),
                        "source": data.source, "samples": samples,
                        "image_shape": list(data.train[0].shape[1:]),
                        "class_names": list(getattr(data, "class_names", None) or []),
                        "preprocessing": "x / 255 as float32"},
            "optimizer": {"name": "adam", "learning_rate": options.get("learning_rate")},
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
            "versions": versions(),
            "devices": [f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices()],
            "model": model.architecture(),
        }
        self._write_config()
        self._write_summary()

    def _write_summary(self):
        lines = []
        self.model.summary(print_fn=lines.append)
        write_text(self.folder / SUMMARY, "\n".join(lines) + "\n")

    def _write_config(self):
        write_json(self.folder / CONFIG, self.config)
        report = self.model.compile_report
        if report is not None and report.programs:
            write_json(self.folder / COMPILE_REPORT, report.as_dict())

    @contextmanager
    def recording(self):
        """Records in config.json how the run ended, whatever ends it; never swallows it."""
        from kilnet.errors import NonFiniteError

        try:
            yield self
        except BaseException as error:
            if isinstance(error, NonFiniteError):
                status = "stopped: non-finite loss or gradient"
            elif isinstance(error, (KeyboardInterrupt, SystemExit)):
                status = "interrupted"
            else:
                status = f"failed: {type(error).__name__}"
            extra = {"resume": self.resume} if status == "interrupted" and self.resume else {}
            self._end(status, error=" ".join(str(error).split()), **extra)
            raise

    def _end(self, status: str, **extra):
        self.config.update(status=status, finished=_now(),
                           seconds=round(time.perf_counter() - self._began, 3), **extra)
        self._write_config()

    def finish(self, history, test_logs: dict, *, x_test, y_test, probabilities):
        """After training and the test evaluation: every remaining file of the folder.
        `history`: the HistoryWriter (every epoch, also across a resume) or a History."""
        write_json(self.folder / METRICS, {k: float(v) for k, v in test_logs.items()})
        self._write_summary()  # again: its compile report now has the programs fit() built
        self._save_model()
        self._predictions(x_test, y_test, probabilities)
        self._curves(history)
        self._end("completed", epochs_run=len(getattr(history, "epochs", None)
                                              or getattr(history, "epoch", [])))
        self.notes.append(f"Report: {write_report(self.folder)}")

    def _save_model(self):
        self.model.save(self.folder / MODEL)  # atomic (kilnet.saving)
        self.notes.append(f"Model: {self.folder / MODEL}")

    def _predictions(self, x_test, y_test, probabilities):
        from kilnet import report

        report.save_predictions(self.folder / PREDICTIONS, y_true=y_test,
                                y_pred_probs=probabilities, x_test_images=x_test,
                                class_names=self.config["dataset"]["class_names"] or None)

    def _curves(self, history):
        from kilnet.plot import plot_history

        plot_history(history, self.folder / CURVES)
        self.notes.append(f"Curves: {self.folder / CURVES}")


def write_report(folder) -> Path:
    """Write folder/report.html (kilnet.report) from the files of the run folder."""
    from kilnet import report

    return report.report_from_run_dir(Path(folder))
