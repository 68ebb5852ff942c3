"""Shared by the kilnet.applications tests: Keras's application models with random weights
(batch-norm statistics and biases too, so their order matters), written in the legacy weights
layout Keras's ImageNet files have and served from 127.0.0.1 as Keras's storage host, and the
comparison of a kilnet model with Keras's."""

import hashlib
import http.server
import os
import threading

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference models are Keras's")
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

KERAS_FOLDER = "tensorflow/keras-applications"


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    """A folder served on 127.0.0.1 as Keras's storage host; yields (folder, base URL)."""
    folder = tmp_path_factory.mktemp("www")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def served(www, tmp_path, monkeypatch, keras_draws_on_host):
    """Downloads go to the local server, into a fresh cache; Keras's reference models start
    from NumPy draws (conftest.keras_draws_on_host)."""
    folder, url = www
    monkeypatch.setenv("KILNET_APPLICATIONS_ORIGIN", url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("KILNET_OFFLINE", raising=False)
    return folder


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def keras_model(builder, seed=0, **kwargs):
    """Keras's model with random weights, the batch-norm statistics and biases too."""
    keras.backend.clear_session()   # Keras's default layer names start again, as kilnet's
    keras.utils.set_random_seed(seed)
    model = builder(weights=None, **kwargs)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        leaf = variable.path.split("/")[-1]
        if leaf in ("gamma", "moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape))
        elif leaf in ("beta", "moving_mean", "bias"):
            variable.assign(rng.normal(0.0, 0.1, variable.shape))
    return model


def serve_weights(keras_model, folder, relative):
    """Keras's model's weights at folder/relative, in the legacy layout (root layer_names,
    one group per layer listing weight_names) that Keras's application files have."""
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, keras_model)
    return md5(path)


def images(shape, n=2, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n,) + shape).astype("float32")


def assert_same_model(mine, theirs, x):
    assert [layer.name for layer in mine.layers] == [layer.name for layer in theirs.layers]
    assert [tuple(w.shape) for w in mine.weights] == [tuple(w.shape) for w in theirs.weights]
    np.testing.assert_allclose(mine.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def set_hash(monkeypatch, where, md5):
    """Keras's hash constant replaced by the served file's (the real files are not here)."""
    if where is None:
        return
    module, attribute, *keys = where
    table = getattr(module, attribute)
    if len(keys) == 2:   # {depth: (with top, without)}
        depth, index = keys
        table = {**table, depth: tuple(md5 if i == index else h
                                       for i, h in enumerate(table[depth]))}
    else:
        table = tuple(md5 if i == keys[0] else h for i, h in enumerate(table))
    monkeypatch.setattr(module, attribute, table)
