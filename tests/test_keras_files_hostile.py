"""Hostile Keras files, rebuilt from the CVE classes Keras's own loader had: each is refused
with a ModelFileError, quickly, and nothing in it runs (a marker file would be written)."""

import base64
import io
import json
import marshal
import os
import zipfile

import h5py
import numpy as np
import pytest

import kilnet
from kilnet.errors import ModelFileError


def _dense_entry(name="dense", **extra):
    config = {"name": name, "units": 2, "activation": "linear", **extra}
    return {"module": "keras.layers", "class_name": "Dense", "config": config,
            "registered_name": None}


def _sequential(*layers):
    inp = {"module": "keras.layers", "class_name": "InputLayer",
           "config": {"batch_shape": [None, 3], "dtype": "float32", "name": "in"},
           "registered_name": None}
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": "s", "trainable": True, "layers": [inp, *layers]},
            "registered_name": None}


def _h5(arrays):
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for name, value in arrays.items():
            if isinstance(value, tuple):   # a declared shape with no stored bytes
                f.create_dataset(name, shape=value, dtype="float32")
            else:
                f.create_dataset(name, data=value)
    return buffer.getvalue()


def _write(path, config, weights=None, extra=()):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", weights if weights is not None else _h5({}))
        for name, data in extra:
            archive.writestr(name, data)
    return path


def _marker_code(marker):
    code = compile(f"open({str(marker)!r}, 'w').write('ran')", "<evil>", "exec")
    return base64.b64encode(marshal.dumps(code)).decode()


def _cases(tmp_path, marker):
    call = {"module": "os", "class_name": "function", "config": "system",
            "registered_name": None}
    lam = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
           "config": {"name": "lam", "function": {"class_name": "__lambda__", "config": {
               "code": _marker_code(marker), "defaults": None, "closure": None}}}}
    unsafe = _dense_entry(activation={"module": "keras.config", "class_name": "function",
                                      "config": "enable_unsafe_deserialization",
                                      "registered_name": None})
    tfsm = {"module": "keras.layers", "class_name": "TFSMLayer", "registered_name": None,
            "config": {"name": "t", "filepath": "/tmp/elsewhere", "call_endpoint": "serve"}}
    lookup = {"module": "keras.layers", "class_name": "StringLookup", "registered_name": None,
              "config": {"name": "l", "vocabulary": "/etc/passwd"}}
    module_path = {"module": "subprocess", "class_name": "Popen", "registered_name": None,
                   "config": {"args": ["touch", str(marker)]}}
    huge = _h5({"layers/dense/vars/0": (2**20, 2**20), "layers/dense/vars/1": (2**20,)})
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps(_sequential(_dense_entry())))
        archive.writestr("model.weights.h5", b"\0" * (64 * 2**20))
    fifo = tmp_path / "fifo.keras"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.keras"
    folder.mkdir()
    return {
        "os.system activation": _write(tmp_path / "a.keras", _sequential(_dense_entry(
            activation=call))),
        "marshalled Lambda": _write(tmp_path / "b.keras", _sequential(lam)),
        "enable_unsafe_deserialization": _write(tmp_path / "c.keras", _sequential(unsafe)),
        "TFSMLayer": _write(tmp_path / "d.keras", _sequential(tfsm)),
        "vocabulary path": _write(tmp_path / "e.keras", _sequential(lookup)),
        "module path": _write(tmp_path / "f.keras", _sequential(module_path)),
        "terabyte shapes": _write(tmp_path / "g.keras", _sequential(_dense_entry(
            units=2**20)), huge),
        "path traversal": _write(tmp_path / "h.keras", _sequential(_dense_entry()),
                                 extra=[("../../evil.py", b"import os")]),
        "zip bomb": bomb,
        "fifo": fifo,
        "directory": folder,
    }


def test_hostile_files_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker"
    cases = _cases(tmp_path, marker)
    refused = []
    for name, path in cases.items():
        with pytest.raises(ModelFileError) as info:
            kilnet.models.load_model(path)
        refused.append(name)
        assert str(path) in str(info.value), name
    assert not marker.exists()
    assert len(refused) == 11


def test_messages_name_the_layer_and_why(tmp_path):
    cases = _cases(tmp_path, tmp_path / "marker")
    for name, pattern in [("marshalled Lambda", r"'lam'.*code"),
                          ("TFSMLayer", r"TFSMLayer.*external"),
                          ("vocabulary path", r"vocabulary"),
                          ("module path", r"module path 'subprocess'"),
                          ("enable_unsafe_deserialization", r"layer 'dense'.*function"),
                          ("terabyte shapes", r"more than the whole weights file"),
                          ("path traversal", r"'\.\./\.\./evil\.py'"),
                          ("zip bomb", r"zip bomb"),
                          ("fifo", r"not a regular file")]:
        with pytest.raises(ModelFileError, match=pattern):
            kilnet.models.load_model(cases[name])


def test_external_link_and_stray_arrays_are_refused(tmp_path):
    weights = np.ones((3, 2), "float32"), np.zeros(2, "float32")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f["layers/dense/vars/0"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
        f["layers/dense/vars/1"] = weights[1]
    path = _write(tmp_path / "link.keras", _sequential(_dense_entry()), buffer.getvalue())
    with pytest.raises(ModelFileError, match="ExternalLink"):
        kilnet.models.load_model(path)
    stray = _h5({"layers/dense/vars/0": weights[0], "layers/dense/vars/1": weights[1],
                 "layers/other/vars/0": weights[1]})
    path = _write(tmp_path / "stray.keras", _sequential(_dense_entry()), stray)
    with pytest.raises(ModelFileError, match="no layer of the model uses"):
        kilnet.models.load_model(path)
    good = _h5({"layers/dense/vars/0": weights[0], "layers/dense/vars/1": weights[1]})
    model = kilnet.models.load_model(_write(tmp_path / "ok.keras", _sequential(_dense_entry()),
                                            good))
    np.testing.assert_array_equal(model.get_weights()[0], weights[0])


def test_custom_objects_are_the_only_way_in(tmp_path):
    class Doubler(kilnet.layers.Layer):
        def call(self, x):
            return x * 2

    entry = {"module": "my_pkg.layers", "class_name": "Doubler", "registered_name": "Doubler",
             "config": {"name": "doubler", "trainable": True}}
    path = _write(tmp_path / "c.keras", _sequential(entry))
    with pytest.raises(ModelFileError, match="module path 'my_pkg.layers'"):
        kilnet.models.load_model(path)
    model = kilnet.models.load_model(path, custom_objects={"Doubler": Doubler})
    assert model.predict(np.ones((1, 3), "float32"), verbose=0).tolist() == [[2.0, 2.0, 2.0]]
