"""Model files: round trips (bitwise), atomic writes under write failures, and hostile files.

Hostile files must fail with kilnet.errors.ModelFileError naming the file, and never run
anything: the pickle and class-name payloads below would create a marker file if executed.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import kilnet
from kilnet import _safefile, layers
from kilnet.errors import ModelFileError, SaveError
from kilnet.models import load_model

rs = np.random.RandomState(0)
X = rs.randn(40, 5).astype(np.float32)
Y = rs.randint(0, 3, 40)


def _model(seed=0, compile=True):
    kilnet.utils.set_random_seed(seed)
    model = kilnet.Sequential([
        layers.Dense(8, activation="relu", input_shape=(5,)),
        layers.Dropout(0.2),
        layers.BatchNormalization(),
        layers.Dense(3, activation="softmax"),
    ])
    if compile:
        model.compile(optimizer=kilnet.optimizers.Adam(learning_rate=0.01),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _same(a_list, b_list):
    return len(a_list) == len(b_list) and all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(a_list, b_list))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = _model()
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0)
    path = str(tmp_path_factory.mktemp("model") / "model.kilnet")
    model.save(path)
    return model, path


# -- round trips ----------------------------------------------------------------------------------
def test_round_trip_predicts_bitwise_and_keeps_the_configuration(trained):
    model, path = trained
    loaded = load_model(path)
    assert loaded.get_config() == model.get_config()
    assert type(loaded.optimizer) is kilnet.optimizers.Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert _same(loaded.get_weights(), model.get_weights())
    assert loaded.predict(X, verbose=0).tobytes() == model.predict(X, verbose=0).tobytes()


def test_continued_training_after_load_is_bitwise_the_same(trained, tmp_path):
    model, path = trained
    loaded = load_model(path)
    original = _model()   # the same history as `model`, so `model` stays untouched
    original.fit(X, Y, batch_size=8, epochs=2, verbose=0)
    original.fit(X, Y, batch_size=8, epochs=2, verbose=0)
    loaded.fit(X, Y, batch_size=8, epochs=2, verbose=0)
    assert _same(loaded.get_weights(), original.get_weights())


def test_weights_file_round_trip_by_layer_order(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "w.kilnet"
    model.save_weights(path)
    kilnet.utils.set_random_seed(1)   # names may differ; types and shapes must match
    other = kilnet.Sequential([layers.Dense(8, activation="relu", input_shape=(5,), name="a"),
                               layers.Dropout(0.2, name="b"), layers.BatchNormalization(name="c"),
                               layers.Dense(3, activation="softmax", name="d")])
    other.load_weights(path)
    assert _same(other.get_weights(), model.get_weights())
    other.load_weights(trained[1])     # a model file works too
    with pytest.raises(ModelFileError, match="a kilnet 'weights' file, not a 'model' file"):
        load_model(path)
    small = kilnet.Sequential([layers.Dense(3, input_shape=(5,))])
    with pytest.raises(ValueError, match="holds weights for the layers"):
        small.load_weights(path)


def test_unbuilt_and_uncompiled_models_round_trip(tmp_path):
    model = kilnet.Sequential([layers.Dense(4), layers.Dense(2)])
    model.save(tmp_path / "unbuilt.kilnet")
    loaded = load_model(tmp_path / "unbuilt.kilnet")
    assert not loaded.built and loaded.get_config() == model.get_config()
    plain = _model(compile=False)
    plain.build()
    plain.save(tmp_path / "plain.kilnet")
    loaded = load_model(tmp_path / "plain.kilnet")
    assert loaded.compiled is None and _same(loaded.get_weights(), plain.get_weights())


def test_a_conv_model_round_trips(tmp_path):
    model = kilnet.Sequential([layers.Conv2D(2, 3, activation="relu", input_shape=(6, 6, 1)),
                               layers.MaxPooling2D(), layers.Flatten(), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "conv.kilnet")
    x = np.random.RandomState(1).rand(3, 6, 6, 1).astype(np.float32)
    loaded = load_model(tmp_path / "conv.kilnet")
    assert loaded.predict(x, verbose=0).tobytes() == model.predict(x, verbose=0).tobytes()


def test_non_finite_weights_are_not_saved(tmp_path):
    model = _model(compile=False)
    model.build()
    weights = [w.copy() for w in model.get_weights()]
    weights[1][0] = np.inf
    model.set_weights(weights)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.save(tmp_path / "bad.kilnet")
    assert not os.path.exists(tmp_path / "bad.kilnet")


# -- write failures -------------------------------------------------------------------------------
def _leftovers(folder):
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


@pytest.mark.parametrize("target, error", [
    ("fsync", errno.ENOSPC), ("write", errno.ENOSPC), ("replace", errno.EACCES),
    ("mkstemp", errno.EACCES),
])
def test_a_failed_save_leaves_the_previous_file_intact(trained, tmp_path, monkeypatch, target,
                                                       error):
    model, _ = trained
    path = tmp_path / "m.kilnet"
    model.save(path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    module = _safefile.tempfile if target == "mkstemp" else os
    monkeypatch.setattr(module, target, fail)
    other = _model(seed=3)
    with pytest.raises(SaveError, match=f"Could not write the model file {path}: "
                                        f"{os.strerror(error)}.*previous file is unchanged"):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    assert _same(load_model(path).get_weights(), model.get_weights())


def test_file_size_limit_in_a_subprocess(trained, tmp_path):
    """A real write failure: RLIMIT_FSIZE makes the kernel refuse to grow the file."""
    model, source = trained
    path = tmp_path / "m.kilnet"
    path.write_bytes(open(source, "rb").read())
    script = f"""
import resource, signal, sys
import kilnet
from kilnet.models import load_model
model = load_model({str(path)!r})
model.layers[0].name = "a_longer_name_so_the_new_file_is_bigger"
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
model.save({str(path)!r})
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "SaveError: Could not write the model file" in result.stderr
    assert "File too large" in result.stderr
    assert _leftovers(tmp_path) == []
    assert _same(load_model(path).get_weights(), model.get_weights())


def test_overwrite_false(trained, tmp_path):
    model, path = trained
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)


# -- hostile files --------------------------------------------------------------------------------
def _rejected(kind, path, match=None, loader=load_model):
    """Loading `path`, a hostile file of the named kind, fails with an error that names it."""
    with pytest.raises(ModelFileError, match=match) as info:
        loader(path)
    assert str(path) in str(info.value), f"the {kind} file's error does not name it"
    return info.value


def _craft(path, info, tensors, kind="model"):
    """A file with a valid checksum: only the allowlists and checks stand in the way."""
    path.write_bytes(_safefile.encode(kind, info, tensors))
    return path


@pytest.fixture()
def parts(trained):
    model, path = trained
    info, tensors = _safefile.read(path, "model")
    return info, dict(tensors)


def test_truncated_files_are_rejected(trained, tmp_path):
    data = open(trained[1], "rb").read()
    target = tmp_path / "t.kilnet"
    for size in sorted({0, 3, 7, 8, 9, 60, len(data) // 2, len(data) - 1}
                       | set(range(0, len(data), 97))):
        target.write_bytes(data[:size])
        _rejected("truncated", target)


def test_every_byte_with_a_flipped_bit_is_rejected(trained, tmp_path):
    """All bytes are checked in memory (the same decode load_model runs first); every 29th
    also through a file and load_model itself."""
    data = open(trained[1], "rb").read()
    target = tmp_path / "f.kilnet"
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        try:
            if i % 29:
                _safefile.decode(bytes(flipped), target, "model")
            else:
                target.write_bytes(bytes(flipped))
                load_model(target)
        except ModelFileError:
            continue
        pytest.fail(f"a flipped bit at byte {i} of {len(data)} was not detected")


def test_oversized_headers_are_rejected(tmp_path, monkeypatch):
    claims = tmp_path / "claims.kilnet"
    claims.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    _rejected("oversized header", claims, "more than the")
    short = tmp_path / "short.kilnet"
    short.write_bytes((5000).to_bytes(8, "little") + b"{" + b" " * 100)
    _rejected("oversized header", short, "truncated")
    big = tmp_path / "big.kilnet"
    header = json.dumps({"__metadata__": {"pad": "x" * 4000}}).encode()
    big.write_bytes(len(header).to_bytes(8, "little") + header)
    monkeypatch.setattr(_safefile, "MAX_HEADER_BYTES", 1000)
    _rejected("oversized header", big, "more than the")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_bearing_files_are_rejected_without_running_them(parts, tmp_path):
    marker = tmp_path / "PWNED"
    blob = pickle.dumps(_Payload(str(marker)))
    raw = tmp_path / "model.pkl"
    raw.write_bytes(blob)
    _rejected("pickle", raw)
    zipped = tmp_path / "model.pt"
    with zipfile.ZipFile(zipped, "w") as z:   # PyTorch's format: a zip holding data.pkl
        z.writestr("archive/data.pkl", blob)
    _rejected("pickle", zipped)
    info, tensors = parts
    in_tensor = dict(tensors, **{"params/dense/pickle": np.frombuffer(blob, np.uint8)})
    _rejected("pickle", _craft(tmp_path / "a.kilnet", info, in_tensor), "no layer uses")
    in_info = dict(info, payload=blob.hex())
    _rejected("pickle", _craft(tmp_path / "b.kilnet", in_info, tensors), "keys")
    in_opt = json.loads(json.dumps(info))
    in_opt["compile"]["optimizer"]["config"]["state"] = blob.hex()
    _rejected("pickle", _craft(tmp_path / "c.kilnet", in_opt, tensors), "invalid configuration")
    assert not marker.exists()


@pytest.mark.parametrize("where, name", [
    ("layer", "os.system"), ("layer", "builtins.eval"),
    ("layer", "Layer"), ("layer", "__import__"), ("optimizer", "os.system"),
    ("optimizer", "Optimizer"), ("loss", "eval"), ("loss", "Loss"), ("metric", "subprocess.call"),
])
def test_classes_outside_the_allowlists_are_rejected(parts, tmp_path, where, name):
    marker = tmp_path / "PWNED"
    info = json.loads(json.dumps(parts[0]))
    payload = {"function": f"open({str(marker)!r}, 'w')", "command": f"touch {marker}"}
    if where == "layer":
        info["model"]["config"]["layers"][1] = {"class_name": name, "config": payload}
    elif where == "metric":
        info["compile"]["metrics"] = [{"class_name": name, "config": payload}]
    else:
        info["compile"][where] = {"class_name": name, "config": payload}
    error = _rejected("class name", _craft(tmp_path / "x.kilnet", info, parts[1]),
                      f"names the {where} type")
    assert "Allowed:" in str(error) and not marker.exists()


def test_a_lambda_naming_anything_but_a_registered_function_is_rejected(parts, tmp_path):
    """Lambda is allowlisted, but its function is only ever looked up by registered name."""
    marker = tmp_path / "PWNED"
    for function in ("os.system", "builtins>eval", f"open({str(marker)!r}, 'w')",
                     {"class_name": "__lambda__", "config": {"code": "..."}}):
        info = json.loads(json.dumps(parts[0]))
        info["model"]["config"]["layers"][1] = {"class_name": "Lambda",
                                                "config": {"function": function}}
        _rejected("lambda", _craft(tmp_path / "l.kilnet", info, parts[1]),
                  "names no function registered|must be a function|holds")
    assert not marker.exists()


@pytest.mark.parametrize("edit, match", [
    (lambda i, t: i["model"]["config"]["layers"][0]["config"].update(activation="os.system"),
     "Unknown activation"),
    (lambda i, t: i["model"]["config"]["layers"][0]["config"].update(
        kernel_initializer="__import__"), "Unknown initializer"),
    (lambda i, t: i["model"]["config"]["layers"][0]["config"].update(__class__="x"),
     "invalid configuration"),
    (lambda i, t: i["model"]["config"]["layers"][0]["config"].update(units=10**9),
     "does not fit its arrays"),
    (lambda i, t: i["model"]["config"].update(input_shape=[5, 1]), "input shape"),
    (lambda i, t: i["model"].update(class_name="Functional"), "Functional configuration"),
    (lambda i, t: i["compile"].update(metrics="accuracy"), "not a list"),
    (lambda i, t: i["compile"].update(on_nonfinite="explode"), "on_nonfinite"),
    (lambda i, t: i["training"].update(seed=-1), "training record"),
    (lambda i, t: t.update({"params/dense/bias": np.zeros(7, np.float32)}),
     "needs|does not fit"),
    (lambda i, t: t.pop("params/dense/kernel"), "missing"),
    (lambda i, t: t.update({"params/dense/kernel": t["params/dense/kernel"].astype(np.float64)}),
     "dtype|does not fit"),
    (lambda i, t: t.update({"opt/0/count": np.zeros(3, np.int32)}), "optimizer state"),
    (lambda i, t: t.update({"train/evil": np.zeros(1, np.uint8)}), "not part of the format"),
])
def test_malformed_contents_are_rejected(parts, tmp_path, edit, match):
    info, tensors = json.loads(json.dumps(parts[0])), dict(parts[1])
    edit(info, tensors)
    _rejected("malformed", _craft(tmp_path / "m.kilnet", info, tensors), match)


def test_malformed_containers_are_rejected(parts, tmp_path):
    import safetensors.numpy

    path = tmp_path / "c.kilnet"
    cases = [
        (safetensors.numpy.save({"x": np.zeros(2, np.float32)}), "without kilnet's metadata"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"[1, 2, 3]       ", "not a JSON object"),
        (b"\x08\x00\x00\x00\x00\x00\x00\x00" + b"\xff\xfe\x00\x01\x02\x03\x04\x05",
         "not UTF-8"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a":1,"a":2}   ', "duplicate key"),
        (b"\x00\x10\x00\x00\x00\x00\x00\x00" + b"[" * 4096, "nested too deeply|not valid JSON"),
    ]
    for data, match in cases:
        path.write_bytes(data)
        _rejected("malformed", path, match)
    info, tensors = parts
    good = _safefile.encode("model", info, tensors)
    n = int.from_bytes(good[:8], "little")
    header = json.loads(good[8:8 + n])
    for change, match in [({"format_version": "2"}, "format version"),
                          ({"kind": "checkpoint"}, "not a 'model' file"),
                          ({"extra": "1"}, "metadata has the keys")]:
        edited = dict(header, __metadata__=dict(header["__metadata__"], **change))
        text = json.dumps(edited).encode()
        path.write_bytes(len(text).to_bytes(8, "little") + text + good[8 + n:])
        _rejected("malformed", path, match)
    weird = dict(header)
    name = next(k for k in header if k != "__metadata__")
    weird[name] = dict(header[name], dtype="O")
    text = json.dumps(weird).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + good[8 + n:])
    _rejected("malformed", path, "dtype")
    path.write_bytes(good[:8 + n] + good[8 + n:] + b"\0\0\0\0")
    _rejected("malformed", path)
    os.makedirs(tmp_path / "dir.kilnet")
    _rejected("malformed", tmp_path / "dir.kilnet", "directory")



def test_a_loaded_kilnet_file_has_its_loss(tmp_path):
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
    model.compile(optimizer="sgd", loss=kilnet.losses.Huber(delta=2.0))
    model.save(tmp_path / "m.kilnet")
    loss = load_model(tmp_path / "m.kilnet").loss   # the Loss object the file keeps
    assert type(loss).__name__ == "Huber" and loss.get_config()["delta"] == 2.0
