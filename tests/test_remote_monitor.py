"""RemoteMonitor against Keras's: the requests a fit posts to a local server (bodies, content
types, headers), from kilnet and from Keras for the same fit from the same weights, and what
happens when the server is unreachable or answers with an error.

Keras's RemoteMonitor posts with `requests`; where that is not installed, the copy pip
vendors (the same library) stands in for it, so Keras's side still goes over the wire.
"""

import http.server
import json
import os
import socket
import threading
import urllib.parse
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.callbacks import RemoteMonitor  # noqa: E402

keras = pytest.importorskip("keras")


@pytest.fixture
def keras_requests(monkeypatch):
    """Keras's RemoteMonitor posts with requests, pip's vendored copy where it is missing."""
    from keras.src.callbacks import remote_monitor
    if remote_monitor.requests is None:
        try:
            from pip._vendor import requests
        except ImportError:
            pytest.skip("neither requests nor pip's vendored copy is installed")
        monkeypatch.setattr(remote_monitor, "requests", requests)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Requests to 127.0.0.1 go straight to the test's server, whatever the environment."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


class Server:
    """An HTTP server on 127.0.0.1 in a thread that records each POST's path, headers (lower
    case names) and body, and answers with `status`."""

    def __init__(self, status=200):
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.requests.append({
                    "path": self.path, "body": body,
                    "headers": {k.lower(): v for k, v in self.headers.items()}})
                self.send_response(server.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.status = status
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def sent(request):
    """The logs a request carries, parsed from the form field "data" or from JSON."""
    if request["headers"]["content-type"] == "application/json":
        return json.loads(request["body"])
    form = urllib.parse.parse_qs(request["body"].decode("ascii"), strict_parsing=True)
    assert list(form) == ["data"] and len(form["data"]) == 1
    return json.loads(form["data"][0])


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = (x @ rng.normal(size=(3, 1))).astype("float32")
    return x, y


def fit_both(monitor_args, epochs=2):
    """The same fit in Keras and kilnet, from Keras's initial weights, each with a
    RemoteMonitor(**monitor_args); returns the two histories."""
    x, y = data()
    keras_model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4, "tanh"),
                                    keras.layers.Dense(1)])
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(4, "tanh"),
                               kilnet.layers.Dense(1)])
    model.set_weights(keras_model.get_weights())
    histories = []
    for m, ns in ((keras_model, keras), (model, kilnet)):
        m.compile(optimizer=ns.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
        histories.append(m.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                               validation_data=(x[:8], y[:8]),
                               callbacks=[ns.callbacks.RemoteMonitor(**monitor_args)]))
    return histories


@pytest.mark.parametrize("send_as_json", [False, True])
def test_a_fit_posts_what_keras_posts(server, keras_requests, send_as_json):
    headers = {"X-Run": "seventeen"}
    keras_history, history = fit_both(dict(root=server.root, path="/epochs", headers=headers,
                                           send_as_json=send_as_json))
    assert len(server.requests) == 4
    keras_requests, requests = server.requests[:2], server.requests[2:]
    content_type = "application/json" if send_as_json else "application/x-www-form-urlencoded"
    for epoch, (want, got) in enumerate(zip(keras_requests, requests)):
        assert got["path"] == want["path"] == "/epochs"
        assert got["headers"]["content-type"] == want["headers"]["content-type"] == content_type
        assert got["headers"]["x-run"] == want["headers"]["x-run"] == "seventeen"
        assert int(got["headers"]["content-length"]) == len(got["body"])
        want_logs, got_logs = sent(want), sent(got)
        assert sorted(got_logs) == sorted(want_logs) == [
            "epoch", "loss", "mae", "val_loss", "val_mae"]
        assert got_logs["epoch"] == want_logs["epoch"] == epoch
        for key in ("loss", "mae", "val_loss", "val_mae"):
            assert isinstance(got_logs[key], float)
            np.testing.assert_allclose(got_logs[key], want_logs[key], rtol=1e-5, err_msg=key)
            np.testing.assert_allclose(got_logs[key], history.history[key][epoch], rtol=1e-6)


@pytest.mark.parametrize("send_as_json", [False, True])
def test_the_same_logs_make_the_same_body_as_keras(server, keras_requests, send_as_json):
    """NumPy values are unwrapped to Python numbers; same dict, same bytes."""
    logs = {"loss": np.float32(0.25), "accuracy": np.array(0.5, np.float32), "lr": 0.001,
            "steps": np.int64(7), "name": "run"}
    for ns in (keras, kilnet):
        ns.callbacks.RemoteMonitor(root=server.root, field="payload",
                                   send_as_json=send_as_json).on_epoch_end(3, dict(logs))
    want, got = server.requests
    assert got["path"] == want["path"] == "/publish/epoch/end/"
    assert got["body"] == want["body"]
    assert got["headers"]["content-type"] == want["headers"]["content-type"]
    payload = (json.loads(got["body"]) if send_as_json else
               json.loads(urllib.parse.parse_qs(got["body"].decode())["payload"][0]))
    assert payload == {"epoch": 3, "loss": 0.25, "accuracy": 0.5, "lr": 0.001, "steps": 7,
                       "name": "run"}


def test_a_content_type_in_headers_replaces_the_default(server):
    RemoteMonitor(root=server.root, headers={"content-type": "text/plain"}).on_epoch_end(0, {})
    assert server.requests[0]["headers"]["content-type"] == "text/plain"


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_warns_and_training_goes_on():
    root = f"http://127.0.0.1:{closed_port()}"
    x, y = data()
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.warns(UserWarning, match="Could not reach RemoteMonitor root server at "
                      + root.replace(".", r"\.")):
        history = model.fit(x, y, epochs=3, verbose=0, callbacks=[RemoteMonitor(root=root)])
    assert len(history.history["loss"]) == 3


def test_a_malformed_root_warns_as_keras():
    with pytest.warns(UserWarning, match="Could not reach RemoteMonitor root server at "
                      "localhost:9"):
        RemoteMonitor(root="localhost:9").on_epoch_end(0, {"loss": 1.0})


def test_an_error_status_is_not_a_warning():
    server = Server(status=500)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            RemoteMonitor(root=server.root).on_epoch_end(0, {"loss": 1.0})
    finally:
        server.close()
    assert len(server.requests) == 1


def test_nan_as_json_is_not_sent_as_keras(server, keras_requests):
    """requests refuses NaN in a JSON body, so Keras sends nothing and warns; the form
    carries it (as JSON's NaN)."""
    for ns in (keras, kilnet):
        with pytest.warns(UserWarning):
            ns.callbacks.RemoteMonitor(root=server.root, send_as_json=True).on_epoch_end(
                0, {"loss": np.float32("nan")})
    assert server.requests == []
    RemoteMonitor(root=server.root).on_epoch_end(0, {"loss": np.float32("nan")})
    assert server.requests[0]["body"] == b"data=%7B%22epoch%22%3A+0%2C+%22loss%22%3A+NaN%7D"
