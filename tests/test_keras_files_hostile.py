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
                          ("vocabulary path", r"StringLookup.*not a file path"),
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


# -- layers with sub-layers: declared sizes checked before anything is built ------------------
def _keras_file_with(tmp_path, make_layer, input_shape, name):
    """A real Keras file for one layer; returns its members (config as a dict)."""
    os.environ["KERAS_BACKEND"] = "jax"
    keras = pytest.importorskip("keras", reason="the composite cases start from Keras's files")
    inputs = keras.Input(input_shape)
    layer = make_layer(keras.layers)
    out = layer(inputs, inputs) if "MultiHead" in type(layer).__name__ else layer(inputs)
    keras.Model(inputs, out).save(tmp_path / f"{name}.keras")
    with zipfile.ZipFile(tmp_path / f"{name}.keras") as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def _with_config(tmp_path, members, name, edit):
    config = json.loads(members["config.json"])
    edit(config["config"]["layers"][1]["config"])
    path = tmp_path / f"hostile_{name}.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, json.dumps(config) if member == "config.json" else data)
    return path


COMPOSITES = {
    "attention_heads": (lambda ns: ns.MultiHeadAttention(num_heads=2, key_dim=4), (5, 8),
                        lambda c: c.update(num_heads=10**6), r"num_heads=1000000"),
    "attention_key_dim": (lambda ns: ns.MultiHeadAttention(num_heads=2, key_dim=4), (5, 8),
                          lambda c: c.update(key_dim=10**7), r"key_dim=10000000"),
    "bidirectional_units": (lambda ns: ns.Bidirectional(ns.LSTM(3)), (5, 4),
                            lambda c: [c[k]["config"].update(units=10**6)
                                       for k in ("layer", "backward_layer") if c.get(k)],
                            r"does not fit"),
    "time_distributed_units": (lambda ns: ns.TimeDistributed(ns.Dense(3)), (5, 4),
                               lambda c: c["layer"]["config"].update(units=10**7),
                               r"does not fit"),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_layers_with_sub_layers_are_checked_before_building(name, tmp_path):
    import time
    import tracemalloc
    make, shape, edit, message = COMPOSITES[name]
    members = _keras_file_with(tmp_path, make, shape, name)
    assert len(members["model.weights.h5"]) < 64 * 2**10
    good = tmp_path / f"{name}.keras"
    assert kilnet.models.load_model(good) is not None   # the untouched file loads
    path = _with_config(tmp_path, members, name, edit)
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(ModelFileError, match=message):
            kilnet.models.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak:,} bytes traced while refusing"
    assert time.perf_counter() - began < 10


def test_graphs_declaring_huge_activations_are_refused_before_running(tmp_path):
    """A file's op or layer settings can make one output huge (Tile, UpSampling2D): loading
    traces shapes abstractly, so the refusal comes before anything is allocated."""
    upsample = {"module": "keras.layers", "class_name": "UpSampling2D", "registered_name": None,
                "config": {"name": "up", "size": [2**15, 2**15]}}
    reshape = {"module": "keras.layers", "class_name": "Reshape", "registered_name": None,
               "config": {"name": "r", "target_shape": [3, 1, 1]}}
    path = _write(tmp_path / "up.keras", _sequential(reshape, upsample))
    with pytest.raises(ModelFileError, match=r"layer 'up' would make outputs of shape .* "
                                             r"values per sample\), more than"):
        kilnet.models.load_model(path)
    # the same through kilnet's own JSON: an op node tiling a tensor 10**9 times
    inputs = kilnet.Input(shape=(3,))
    model = kilnet.Model(inputs, kilnet.ops.tile(inputs, (1, 2)))
    spec = json.loads(model.to_json())
    op_layer = [entry for entry in spec["config"]["layers"]
                if entry["class_name"] == "Operation"][0]
    op_layer["config"]["arguments"]["repeats"] = [1, 10**9]
    with pytest.raises(ModelFileError, match="values per sample"):
        kilnet.models.model_from_json(json.dumps(spec))
    # a model of ordinary size still loads
    small = json.loads(model.to_json())
    assert kilnet.models.model_from_json(json.dumps(small)).output_shape == (None, 6)
