"""Adapted IntegerLookup / StringLookup layers in Keras's `.keras` files.

Keras saves an adapted lookup layer's vocabulary as an asset (`assets/<layer>/vocabulary.txt`,
special tokens first) with `vocabulary: null, vocabulary_size: N` in its config, and the idf
weights of output_mode="tf_idf" as the layer's variable `idf_weights`. Keras 3.15 runs these
layers only with TensorFlow, so the file here is written as Keras 3.15 with TensorFlow writes
it (the layout was read from such a file: the same config keys, member names and datasets),
and the expected outputs are computed with NumPy."""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

import kilnet
from kilnet.errors import ModelFileError

VOCABULARY = [-1, 9, 7, 5]   # the OOV token first, then by frequency, as adapt() orders them
IDF = np.array([0.75, 0.69, 1.39, 0.92], np.float32)
X = np.array([[5, 9, 4], [7, 7, 1]])


def _lookup_entry(name, output_mode):
    config = {"name": name, "trainable": True, "dtype": {
        "module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
        "registered_name": None}, "invert": False, "max_tokens": None, "num_oov_indices": 1,
        "oov_token": -1, "mask_token": None, "output_mode": output_mode, "sparse": False,
        "pad_to_max_tokens": False, "vocabulary_dtype": "int64", "idf_weights": None,
        "vocabulary": None, "vocabulary_size": len(VOCABULARY), "oov_method": "floormod",
        "salt": None}
    return {"module": "keras.layers", "class_name": "IntegerLookup", "config": config,
            "registered_name": None, "build_config": {}, "name": name, "inbound_nodes": [
                {"args": [{"class_name": "__keras_tensor__", "config": {
                    "shape": [None, 3], "dtype": "int64",
                    "keras_history": ["input_layer", 0, 0]}}], "kwargs": {}}]}


def _keras_file(path, assets=True):
    model = {"module": "keras.src.models.functional", "class_name": "Functional",
             "registered_name": "Functional", "build_config": {"input_shape": None},
             "compile_config": {}, "config": {
                 "name": "functional", "trainable": True,
                 "layers": [{"module": "keras.layers", "class_name": "InputLayer",
                             "registered_name": None, "name": "input_layer",
                             "inbound_nodes": [], "config": {
                                 "batch_shape": [None, 3], "dtype": "int64", "sparse": False,
                                 "ragged": False, "name": "input_layer", "optional": False}},
                            _lookup_entry("ids", "int"), _lookup_entry("tfidf", "tf_idf")],
                 "input_layers": ["input_layer", 0, 0],
                 "output_layers": [["ids", 0, 0], ["tfidf", 0, 0]]}}
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        f.create_group("layers/input_layer/vars")
        f.create_group("layers/integer_lookup/vars")
        f["layers/integer_lookup_1/vars/idf_weights"] = IDF
        f.create_group("vars")
    vocabulary = "\n".join(str(token) for token in VOCABULARY).encode()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(model))
        archive.writestr("model.weights.h5", weights.getvalue())
        if assets:
            archive.writestr("assets/layers/integer_lookup/vocabulary.txt", vocabulary)
            archive.writestr("assets/layers/integer_lookup_1/vocabulary.txt", vocabulary)
    return path


def _expected():
    index = {token: i for i, token in enumerate(VOCABULARY)}
    ids = np.vectorize(lambda t: index.get(t, 0))(X)
    counts = np.stack([np.bincount(row, minlength=len(VOCABULARY)) for row in ids])
    return ids, counts * IDF


def test_an_adapted_lookup_from_a_keras_file_gives_keras_outputs(tmp_path):
    model = kilnet.models.load_model(_keras_file(tmp_path / "lookup.keras"))
    ids, tf_idf = model.predict(X, verbose=0)
    expected_ids, expected_tf_idf = _expected()
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(tf_idf, expected_tf_idf, rtol=1e-6)
    assert model.get_layer("ids").get_vocabulary() == VOCABULARY


def test_kilnet_writes_it_back_in_keras_layout(tmp_path):
    """The vocabulary goes into the config as data (Keras reads it so), and the tf_idf
    layer's idf weights into its variables, where Keras's load_own_variables reads them."""
    model = kilnet.models.load_model(_keras_file(tmp_path / "lookup.keras"))
    model.save(tmp_path / "again.keras")
    with zipfile.ZipFile(tmp_path / "again.keras") as archive:
        config = json.loads(archive.read("config.json"))
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
            np.testing.assert_allclose(f["layers/integer_lookup_1/vars/idf_weights"][()], IDF)
    lookups = [entry["config"] for entry in config["config"]["layers"][1:]]
    assert [c["vocabulary"] for c in lookups] == [VOCABULARY, VOCABULARY]
    again = kilnet.models.load_model(tmp_path / "again.keras")
    for ours, theirs in zip(again.predict(X, verbose=0), _expected()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_a_file_without_the_vocabulary_asset_is_refused_when_used(tmp_path):
    model = kilnet.models.load_model(_keras_file(tmp_path / "lookup.keras", assets=False))
    # the model's two lookups run side by side, in Keras's order: whichever runs first is named
    with pytest.raises(ValueError, match=r"'(ids|tfidf)' has no vocabulary yet: its config "
                                         r"says 4 entries.*vocabulary\.txt"):
        model.predict(X, verbose=0)


def test_a_vocabulary_path_in_a_config_is_refused(tmp_path):
    """Keras's lookup layers read a vocabulary file named in the config (CVE-2025-12058);
    kilnet's take tokens only, so a file naming a path is refused and nothing is read."""
    path = _keras_file(tmp_path / "lookup.keras")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["config"].update(vocabulary="/etc/passwd",
                                                   vocabulary_size=None)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ModelFileError, match=r"not a file path"):
        kilnet.models.load_model(tmp_path / "bad.keras")
