"""CSVLogger, TensorBoard and RemoteMonitor: per-epoch logs written to files, with Keras's
layout, or posted to a server.

TensorBoard's event files are written with the `tensorboard` package alone (its event-file
writer and protocol buffers; no TensorFlow): `pip install tensorboard`, then
`tensorboard --logdir logs`. RemoteMonitor posts with the standard library's urllib (Keras's
uses `requests`, which kilnet does not depend on), the same bodies and content types.
"""

from __future__ import annotations

import collections
import csv
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings

import numpy as np

from kilnet.callbacks._base import Callback


class CSVLogger(Callback):
    """Write one row per epoch to `filename`: the epoch (from 0), then the logs in sorted key
    order, after a header row, as Keras does. append=True continues an existing file."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self.writer = None
        self.csv_file = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, encoding="utf-8") as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file is not None:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="", encoding="utf-8")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.csv_file is None:  # used outside fit, or after on_train_end
            self.on_train_begin()
        if self.keys is None:
            self.keys = sorted(logs)
        if self.writer is None:
            class Dialect(csv.excel):
                delimiter = self.sep
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = collections.OrderedDict({"epoch": epoch})
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()  # a row survives an interrupted run

    def on_train_end(self, logs=None):
        if self.csv_file is not None:
            self.csv_file.close()
        self.csv_file = None
        self.writer = None


def _csv_value(value):
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return f"\"[{', '.join(map(str, value))}]\""
    return value


def _tensorboard_modules():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.histogram.summary_v2 import histogram_pb
        from tensorboard.plugins.text.summary_v2 import text_pb
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as error:
        raise ImportError(
            "kilnet.callbacks.TensorBoard writes event files with the `tensorboard` package, "
            "which is not installed. Install it with: pip install tensorboard") from error
    return event_pb2, summary_pb2, histogram_pb, text_pb, EventFileWriter


class TensorBoard(Callback):
    """Write TensorBoard event files: per-epoch scalars ("epoch_loss", "epoch_accuracy", ...)
    under `log_dir/train` and `log_dir/validation` (the "val_" prefix dropped), the model
    summary as text (write_graph=True), weight histograms every `histogram_freq` epochs, and
    with update_freq="batch" or N, "batch_*" scalars as training advances (kilnet's hooks run
    once per compiled chunk, so they are written at chunk ends every N batches or more).
    View them with `tensorboard --logdir logs`.
    """

    chunk_batch_hooks = True   # its batch hooks read the chunk's end (kilnet.callbacks)

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0,
                 embeddings_freq=0, embeddings_metadata=None):
        super().__init__()
        self._pb = _tensorboard_modules()
        for arg, value, default in (("write_images", write_images, False),
                                    ("profile_batch", profile_batch, 0),
                                    ("embeddings_freq", embeddings_freq, 0),
                                    ("embeddings_metadata", embeddings_metadata, None)):
            if value != default:
                raise ValueError(f"TensorBoard: {arg} is not supported by kilnet yet; leave it "
                                 f"at {default!r}. Received: {arg}={value!r}")
        if update_freq != "epoch" and update_freq != "batch" and not (
                isinstance(update_freq, int) and not isinstance(update_freq, bool)
                and update_freq > 0):
            raise ValueError("update_freq must be 'epoch', 'batch' or a positive integer. "
                             f"Received: update_freq={update_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.write_graph = bool(write_graph)
        self.write_steps_per_second = bool(write_steps_per_second)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self._writers = {}
        self._epoch = 0
        self._epoch_began = None
        self._last_batch_write = 0

    # -- writing ----------------------------------------------------------------------------
    def _writer(self, name):
        if name not in self._writers:
            event_file_writer = self._pb[4]
            path = os.path.join(self.log_dir, name)
            os.makedirs(path, exist_ok=True)
            self._writers[name] = event_file_writer(path)
        return self._writers[name]

    def _write(self, writer_name, summary, step):
        event_pb2 = self._pb[0]
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._writer(writer_name).add_event(event)

    def _scalars(self, writer_name, values: dict, step, prefix):
        summary_pb2 = self._pb[1]
        summary = summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag=prefix + name, simple_value=float(value))
            for name, value in values.items() if _is_number(value)])
        if summary.value:
            self._write(writer_name, summary, step)

    def _flush(self):
        for writer in self._writers.values():
            writer.flush()

    # -- hooks ------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._last_batch_write = 0
        if self.write_graph and self.model is not None:
            from kilnet.summary import model_summary
            text_pb = self._pb[3]
            text = model_summary(self.model)
            # Indented four spaces: TensorBoard's text plugin shows it as a code block.
            markdown = "\n".join("    " + line for line in text.splitlines())
            self._write("train", text_pb("model_summary", markdown), 0)
            config = json.dumps(self.model.architecture(), indent=2, default=str)
            self._write("train", text_pb("model_config",
                                         "\n".join("    " + line for line in
                                                   config.splitlines())), 0)
            self._flush()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch" or not logs:
            return
        steps = int(self.params.get("steps") or 0)
        step = self._epoch * steps + batch + 1
        if step // self.update_freq > self._last_batch_write // self.update_freq:
            self._scalars("train", logs, step, "batch_")
            self._last_batch_write = step

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        if self.write_steps_per_second and self._epoch_began is not None:
            seconds = time.perf_counter() - self._epoch_began
            if seconds > 0 and self.params.get("steps"):
                train["steps_per_second"] = self.params["steps"] / seconds
        self._scalars("train", train, epoch, "epoch_")
        if val:
            self._scalars("validation", val, epoch, "epoch_")
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._histograms(epoch)
        self._flush()

    def _histograms(self, epoch):
        histogram_pb = self._pb[2]
        for path, _, variable in self.model.variable_paths():
            values = np.asarray(variable.value, np.float64)  # host copy, once per epoch
            self._write("train", histogram_pb("/".join(path), values), epoch)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, np.ndarray):
        return value.ndim == 0
    return isinstance(value, (int, float, np.number))


class RemoteMonitor(Callback):
    """Keras's RemoteMonitor: at each epoch's end, POST the epoch's logs, with "epoch" (from
    0) first, to `root + path`. By default the body is a form, `field=<the logs as JSON>`
    (application/x-www-form-urlencoded); with `send_as_json=True` it is the JSON itself
    (application/json). `headers` (a dict) are added to the request; a Content-Type there
    replaces the default. NumPy values are sent as the Python numbers they hold. A server that
    cannot be reached gives a warning naming it, and training goes on; the server's answer,
    an error status included, is not read, as Keras's.

    Example:
        >>> import kilnet
        >>> monitor = kilnet.callbacks.RemoteMonitor(root="http://127.0.0.1:9000")
        >>> monitor.root + monitor.path, monitor.field, monitor.send_as_json
        ('http://127.0.0.1:9000/publish/epoch/end/', 'data', False)
    """

    def __init__(self, root="http://localhost:9000", path="/publish/epoch/end/", field="data",
                 headers=None, send_as_json=False):
        super().__init__()
        self.root = root
        self.path = path
        self.field = field
        self.headers = headers
        self.send_as_json = send_as_json

    def on_epoch_end(self, epoch, logs=None):
        send = {"epoch": epoch}
        for key, value in (logs or {}).items():
            send[key] = _json_number(value)
        url = self.root + self.path
        if self.send_as_json:
            # requests' json= refuses NaN and infinity (it sends nothing; Keras warns)
            try:
                body = json.dumps(send, allow_nan=False).encode("utf-8")
            except ValueError:
                warnings.warn(f"RemoteMonitor sent nothing to {url} for epoch {epoch}: its "
                              "logs hold NaN or infinity, which JSON cannot carry; "
                              f"send_as_json=False sends them. Logs: {send!r:.200}",
                              stacklevel=2)
                return
            content_type = "application/json"
        else:
            # the bytes requests makes of a dict of form fields
            body = urllib.parse.urlencode({self.field: json.dumps(send)}).encode("ascii")
            content_type = "application/x-www-form-urlencoded"
        headers = {str(k): str(v) for k, v in (self.headers or {}).items()}
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        try:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request):
                pass
        except urllib.error.HTTPError as error:
            error.close()   # the server answered: Keras does not look at the status either
        except (OSError, http.client.HTTPException, ValueError):
            # URLError (refused, unknown host) is an OSError; ValueError: a malformed URL
            warnings.warn(f"Could not reach RemoteMonitor root server at {self.root} "
                          f"(posting to {url})", stacklevel=2)


def _json_number(value):
    """A log value as JSON can hold it: NumPy's (and JAX's) arrays as Python numbers or
    lists, anything else as it is."""
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        return np.asarray(value).tolist()
    return value
