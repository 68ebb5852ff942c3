"""kilnet.utils.FeatureSpace against Keras: every feature kind, crosses and both output modes on
a synthetic heart-disease-like table (the keras.io tutorial's columns).

Keras's FeatureSpace needs TensorFlow to adapt (tf.data), which is not installed, so each
encoded feature is compared with what Keras's own layers give on the same columns where they
run without TensorFlow (Normalization, Discretization fed 32-row batches as FeatureSpace does,
Rescaling, CategoryEncoding), and otherwise with an independent NumPy reference (lookup
vocabularies by frequency) or the kilnet layers tested against Keras elsewhere (Hashing's
fingerprints, HashedCrossing), in the concat order of Keras's `_merge_features`.
"""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.layers._fingerprints import fingerprint64  # noqa: E402
from kilnet.utils import FeatureSpace  # noqa: E402

N = 100  # four adapt batches of (up to) 32 rows, as Keras batches a dict


def heart_table(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "sex": rng.integers(0, 2, n),
        "cp": rng.integers(0, 4, n),
        "ca": rng.integers(0, 4, n),
        "thal": rng.choice(["normal", "fixed", "reversible"], n, p=[0.5, 0.3, 0.2]),
        "age": rng.normal(55.0, 9.0, n).round(),
        "chol": rng.normal(240.0, 50.0, n),
        "oldpeak": rng.exponential(1.0, n),
        "slope": rng.integers(0, 3, n).astype(float),
        "zip": rng.integers(10000, 99999, n),
        "city": rng.choice(["ams", "bxl", "cdg", "dub", "edi"], n),
    }


def tutorial_space(**kwargs):
    return FeatureSpace(
        features={
            "sex": "integer_categorical", "cp": "integer_categorical",
            "ca": "integer_categorical", "thal": "string_categorical",
            "age": "float_discretized", "chol": "float_normalized",
            "oldpeak": FeatureSpace.float_rescaled(scale=0.5, offset=1.0),
            "slope": "float",
            "zip": FeatureSpace.integer_hashed(num_bins=8),
            "city": "string_hashed",
        },
        crosses=[FeatureSpace.cross(feature_names=("sex", "age"), crossing_dim=64),
                 FeatureSpace.cross(feature_names=("thal", "ca"), crossing_dim=16)],
        hashing_dim=16, num_discretization_bins=8, **kwargs)


# -- references ------------------------------------------------------------------------------
def lookup_reference(train, values):
    """Keras's adapted lookup: tokens by decreasing count (ties: larger token first), index 0
    for out-of-vocabulary values; returns (indices, vocabulary size)."""
    tokens, counts = np.unique(np.asarray(train), return_counts=True)
    ranked = [t for _, t in sorted(zip(counts.tolist(), tokens.tolist()), reverse=True)]
    index = {t: i + 1 for i, t in enumerate(ranked)}
    return np.array([index.get(v, 0) for v in np.asarray(values).tolist()]), len(ranked) + 1


def multi_hot(ids, depth):
    return np.asarray(keras.layers.CategoryEncoding(depth, output_mode="multi_hot")(
        np.asarray(ids).reshape(-1, 1)))


def keras_discretized(train, values, bins):
    layer = keras.layers.Discretization(num_bins=bins)
    layer.reset_state()
    for start in range(0, len(train), 32):   # FeatureSpace.adapt's 32-row batches
        layer.update_state(np.asarray(train[start:start + 32], np.float32).reshape(-1, 1))
    layer.finalize_state()
    return np.asarray(layer(np.asarray(values, np.float32).reshape(-1, 1))).reshape(-1)


def hashed(values, bins):
    return np.array([fingerprint64(str(v).encode()) % bins for v in np.asarray(values).tolist()])


def reference(train, data):
    """{name: encoded (batch, width)} for tutorial_space, from Keras layers and NumPy."""
    ids, out = {}, {}
    for key in ("sex", "cp", "ca", "thal"):
        ids[key], depth = lookup_reference(train[key], data[key])
        out[key] = multi_hot(ids[key], depth)
    ids["age"] = keras_discretized(train["age"], data["age"], 8)
    out["age"] = multi_hot(ids["age"], 8)
    norm = keras.layers.Normalization()
    norm.adapt(np.asarray(train["chol"], np.float32).reshape(-1, 1))
    out["chol"] = np.asarray(norm(np.asarray(data["chol"], np.float32).reshape(-1, 1)))
    out["oldpeak"] = np.asarray(keras.layers.Rescaling(0.5, 1.0)(
        np.asarray(data["oldpeak"], np.float32).reshape(-1, 1)))
    out["slope"] = np.asarray(data["slope"], np.float32).reshape(-1, 1)
    out["zip"] = multi_hot(hashed(data["zip"], 8), 8)
    out["city"] = multi_hot(hashed(data["city"], 16), 16)
    for (a, b), dim in ((("sex", "age"), 64), (("thal", "ca"), 16)):
        bins = kilnet.layers.HashedCrossing(dim)([ids[a].reshape(-1, 1), ids[b].reshape(-1, 1)])
        out[f"{a}_X_{b}"] = multi_hot(bins, dim)
    return out


def keras_order(out):
    """Keras's _merge_features: features sorted by name, then crosses sorted by name."""
    features = sorted(k for k in out if "_X_" not in k)
    return features + sorted(k for k in out if "_X_" in k)


@pytest.fixture(scope="module")
def adapted():
    train = heart_table()
    space = tutorial_space()
    space.adapt(train)
    return space, train


# -- numbers ---------------------------------------------------------------------------------
def test_concat_equals_keras_layers_in_keras_order(adapted):
    space, train = adapted
    data = heart_table(20, seed=1)
    data["thal"][:3] = ["unseen", "normal", "other"]   # out-of-vocabulary categories
    data["cp"][0] = 9
    expected = reference(train, data)
    out = space(data)
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out, np.concatenate([expected[k] for k in keras_order(expected)], axis=1), atol=1e-5)
    # age 8, ca 5, chol 1, city 16, cp 5, oldpeak 1, sex 3, slope 1, thal 4, zip 8, crosses
    assert out.shape == (20, 8 + 5 + 1 + 16 + 5 + 1 + 3 + 1 + 4 + 8 + 64 + 16)
    thal = 8 + 5 + 1 + 16 + 5 + 1 + 3 + 1
    assert out[0, thal:thal + 4].tolist() == [1, 0, 0, 0]  # "unseen": the OOV index 0


def test_dict_mode_and_one_sample(adapted):
    space, train = adapted
    as_dict = FeatureSpace.from_config({**space.get_config(), "output_mode": "dict"})
    data = heart_table(5, seed=2)
    expected = reference(train, data)
    out = as_dict(data)
    assert list(out) == keras_order(expected)
    for key in out:
        np.testing.assert_allclose(out[key], expected[key], atol=1e-5, err_msg=key)
    sample = {key: value[0].item() for key, value in data.items()}
    np.testing.assert_allclose(space(sample), space(data)[0], atol=1e-6)
    single = as_dict(sample)
    assert single["chol"].shape == (1,) and single["sex_X_age"].shape == (64,)


def test_vocabularies_and_boundaries_are_kerass(adapted):
    space, train = adapted
    _, depth = lookup_reference(train["thal"], [])
    vocabulary = space.preprocessors["thal"].get_vocabulary()
    assert len(vocabulary) == depth and vocabulary[0] == "[UNK]"
    layer = keras.layers.Discretization(num_bins=8)
    layer.reset_state()
    for start in range(0, N, 32):
        layer.update_state(train["age"][start:start + 32].astype(np.float32).reshape(-1, 1))
    layer.finalize_state()
    np.testing.assert_allclose(space.preprocessors["age"].bin_boundaries, layer.bin_boundaries,
                               rtol=1e-6)
    assert space.crossers["sex_X_age"].num_bins == 64
    assert space.one_hot_encoders["thal"].num_tokens == depth


def test_discretized_quantiles_merge_32_row_batches_as_keras():
    # With 1000 rows the quantile summary of 32-row batches differs from one batch's.
    values = np.random.default_rng(6).normal(size=1000)
    space = FeatureSpace({"x": "float_discretized"}, num_discretization_bins=5)
    space.adapt({"x": values})
    probe = np.linspace(-3.0, 3.0, 301)
    np.testing.assert_array_equal(space({"x": probe}).argmax(axis=1),
                                  keras_discretized(values, probe, 5))


def test_int_outputs_in_dict_mode_and_refused_in_concat():
    data = {"color": ["r", "g", "r", "b"], "size": [1, 2, 2, 3]}
    features = {"color": FeatureSpace.string_categorical(output_mode="int"),
                "size": FeatureSpace.integer_categorical(output_mode="int")}
    crosses = [FeatureSpace.cross(("color", "size"), crossing_dim=8, output_mode="int")]
    space = FeatureSpace(features, crosses=crosses, output_mode="dict")
    space.adapt(data)
    out = space(data)
    np.testing.assert_array_equal(out["color"].ravel(), lookup_reference(data["color"],
                                                                         data["color"])[0])
    bins = kilnet.layers.HashedCrossing(8)([out["color"], out["size"]])
    np.testing.assert_array_equal(out["color_X_size"], bins)
    with pytest.raises(ValueError, match="Received: output_mode='concat'"):
        FeatureSpace(features, output_mode="concat").adapt(data)


def test_adapt_from_batches_generator_and_dataframe_like(adapted):
    space, train = adapted
    data = heart_table(7, seed=3)
    expected = space(data)

    def rows():  # one sample at a time: grouped by 32 rows as Keras batches them
        for i in range(N):
            yield {key: value[i] for key, value in train.items()}, 0

    for source in (rows(), [{k: v[s:s + 32] for k, v in train.items()}
                            for s in range(0, N, 32)], _FakeFrame(train)):
        again = tutorial_space()
        again.adapt(source)
        np.testing.assert_allclose(again(data), expected, atol=1e-5)


class _FakeFrame:
    """A pandas-like table: `.columns` and `[column]` (pandas is never imported by kilnet)."""

    def __init__(self, columns):
        self._columns = columns
        self.columns = list(columns)

    def __getitem__(self, key):
        return self._columns[key]


# -- models ----------------------------------------------------------------------------------
def test_model_trains_on_encoded_features(adapted):
    space, train = adapted
    x = space(train)
    y = (train["thal"] == "reversible").astype(np.float32)
    encoded = space.get_encoded_features()
    assert encoded.shape == (None, x.shape[1])
    hidden = kilnet.layers.Dense(8, activation="relu")(encoded)
    predictions = kilnet.layers.Dense(1, activation="sigmoid")(hidden)
    model = kilnet.Model(encoded, predictions)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["accuracy"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    # keras.io's inference model: the same layers, on the raw features (strings included)
    inference = kilnet.Model(space.get_inputs(), predictions)
    np.testing.assert_allclose(inference.predict(train, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_get_inputs_of_numeric_features():
    space = FeatureSpace({"a": "float", "n": "integer_categorical"}, output_mode="dict")
    space.adapt({"a": [1.0, 2.0], "n": [3, 4]})
    inputs = space.get_inputs()
    assert inputs["a"].shape == (None, 1) and inputs["n"].dtype == "int32"
    assert {k: v.shape for k, v in space.get_encoded_features().items()} == {
        "a": (None, 1), "n": (None, 3)}


# -- configuration ---------------------------------------------------------------------------
def test_config_keys_and_entries_are_kerass():
    features = {"a": "float", "b": "float_normalized", "c": "float_rescaled",
                "d": FeatureSpace.float_discretized(4, name="d")}
    ours = FeatureSpace(features).get_config()
    theirs = keras.utils.FeatureSpace(
        {**features, "d": keras.utils.FeatureSpace.float_discretized(4, name="d")}).get_config()
    assert set(ours) == set(theirs)
    for key in features:
        entry, keras_entry = ours["features"][key], theirs["features"][key]
        assert {k: entry[k] for k in ("module", "class_name")} == \
            {k: keras_entry[k] for k in ("module", "class_name")}
        assert entry["config"]["preprocessor"]["class_name"] == \
            keras_entry["config"]["preprocessor"]["class_name"]
        assert entry["config"]["preprocessor"]["config"]["name"] == \
            keras_entry["config"]["preprocessor"]["config"]["name"]
    cross = keras.saving.serialize_keras_object(keras.utils.FeatureSpace.cross(("a", "b"), 8))
    assert FeatureSpace.cross(("a", "b"), 8).get_config() == cross["config"]
    # Keras's own config loads into kilnet
    loaded = FeatureSpace.from_config(keras.saving.serialize_keras_object(
        keras.utils.FeatureSpace(features={"a": "float", "b": "float_normalized"}))["config"])
    assert type(loaded.preprocessors["a"]).__name__ == "Identity"
    assert type(loaded.preprocessors["b"]).__name__ == "Normalization"


def test_adapted_config_round_trip_through_json(adapted):
    space, _ = adapted
    unadapted = FeatureSpace.from_config(json.loads(json.dumps(tutorial_space().get_config())))
    with pytest.raises(ValueError, match="adapt"):
        unadapted({"sex": 1})
    again = FeatureSpace.from_config(json.loads(json.dumps(space.get_config())))
    data = heart_table(9, seed=4)
    np.testing.assert_allclose(again(data), space(data), atol=1e-6)


# -- bad inputs ------------------------------------------------------------------------------
def test_bad_inputs_are_refused(adapted):
    space, _ = adapted
    data = heart_table(3, seed=5)
    missing = {k: v for k, v in data.items() if k != "thal"}
    with pytest.raises(ValueError, match=r"missing \['thal'\].*Received:"):
        space(missing)
    with pytest.raises(TypeError, match="string feature.*Received: values of dtype"):
        space({**data, "thal": np.array([1, 2, 3])})
    with pytest.raises(TypeError, match="'sex' is an integer.*Received:"):
        space({**data, "sex": np.array([0.5, 1.0, 0.0])})
    with pytest.raises(TypeError, match="Received: data of type list"):
        space([data])
    with pytest.raises(ValueError, match="Received: output_mode='stack'"):
        FeatureSpace({"a": "float"}, output_mode="stack")
    with pytest.raises(ValueError, match="unknown type.*Received: 'floaty'"):
        FeatureSpace({"a": "floaty"})
    with pytest.raises(ValueError, match="Received: cross"):
        FeatureSpace({"a": "integer_categorical"}, crosses=[("a", "b")])
    with pytest.raises(ValueError, match="lacks the features.*Received: keys"):
        tutorial_space().adapt({"sex": [1, 2]})
    with pytest.raises(TypeError, match="Received: int"):
        tutorial_space().adapt(3)


# -- .keras files ----------------------------------------------------------------------------
def _file_members(path):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _h5_datasets(data):
    import io

    import h5py

    found = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return found


@pytest.mark.parametrize("output_mode", ["concat", "dict"])
def test_a_saved_space_opens_again_encoding_as_before(tmp_path, output_mode):
    train, data = heart_table(), heart_table(9, seed=4)
    space = tutorial_space(output_mode=output_mode)
    space.adapt(train)
    space.save(tmp_path / "space.keras")
    again = kilnet.models.load_model(tmp_path / "space.keras")
    assert type(again) is FeatureSpace and again.output_mode == output_mode
    expected, got = space(data), again(data)
    if output_mode == "dict":
        assert list(got) == list(expected)
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], atol=1e-6)
    else:
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_file_is_laid_out_as_keras_writes_a_feature_space(tmp_path):
    """What Keras 3.15's FeatureSpace.save wrote for such a space (read with TensorFlow
    installed): the class at the top with each preprocessor's build config, a
    Normalization's mean, variance and count in the weights file, not in its config."""
    train = heart_table()
    space = tutorial_space()
    space.adapt(train)
    space.save(tmp_path / "space.keras")
    members = _file_members(tmp_path / "space.keras")
    assert sorted(members) == ["config.json", "metadata.json", "model.weights.h5"]
    config = json.loads(members["config.json"])
    assert (config["module"], config["class_name"], config["registered_name"]) == (
        "keras.utils", "FeatureSpace", None)
    assert config["build_config"]["chol"] == {"input_shape": [None, 1]}
    chol = config["config"]["features"]["chol"]["config"]["preprocessor"]["config"]
    assert chol["mean"] is None and chol["variance"] is None
    datasets = _h5_datasets(members["model.weights.h5"])
    assert sorted(datasets) == [f"preprocessors/normalization/vars/{i}" for i in range(3)]
    column = np.asarray(train["chol"], np.float64)
    np.testing.assert_allclose(datasets["preprocessors/normalization/vars/0"], [column.mean()],
                               rtol=1e-5)
    np.testing.assert_allclose(datasets["preprocessors/normalization/vars/1"], [column.var()],
                               rtol=1e-4)
    # Keras's adapted FeatureSpace writes a count of 0 too (its adapt sets mean and variance)
    assert int(datasets["preprocessors/normalization/vars/2"]) == 0


def test_a_space_written_the_keras_way_opens_with_its_vocabulary_from_the_assets(tmp_path):
    """Keras writes an adapted lookup with `vocabulary: null` and its tokens in
    `assets/preprocessors/<lookup>/vocabulary.txt`: the file is made here in that form."""
    import zipfile

    def table(n=N, seed=0):
        return {key: heart_table(n, seed)[key] for key in ("thal", "chol")}

    space = FeatureSpace({"thal": "string_categorical", "chol": "float_normalized"})
    space.adapt(table())
    space.save(tmp_path / "ours.keras")
    members = _file_members(tmp_path / "ours.keras")
    config = json.loads(members["config.json"])
    lookup = config["config"]["features"]["thal"]["config"]["preprocessor"]["config"]
    tokens = lookup["vocabulary"]
    lookup.update(vocabulary=None, vocabulary_size=len(tokens))
    members["config.json"] = json.dumps(config).encode()
    members["assets/preprocessors/string_lookup/vocabulary.txt"] = "\n".join(tokens).encode()
    with zipfile.ZipFile(tmp_path / "keras_form.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    again = kilnet.models.load_model(tmp_path / "keras_form.keras")
    data = table(9, seed=4)
    assert again.preprocessors["thal"].get_vocabulary() == tokens
    ids, depth = lookup_reference(table()["thal"], data["thal"])
    chol = np.asarray(table()["chol"], np.float64)
    reference = np.concatenate([((data["chol"] - chol.mean()) / chol.std())[:, None],
                                multi_hot(ids, depth)], axis=1)
    np.testing.assert_allclose(again(data), reference, atol=1e-5)


def test_a_space_file_holding_an_array_no_preprocessor_uses_is_refused(tmp_path):
    """As a model's file is: an array nothing reads means the file was written for another
    config, so it is refused, naming the array, rather than opened half-used."""
    import zipfile

    import h5py

    space = tutorial_space()
    space.adapt(heart_table())
    space.save(tmp_path / "space.keras")
    members = _file_members(tmp_path / "space.keras")
    weights_path = tmp_path / "model.weights.h5"
    weights_path.write_bytes(members["model.weights.h5"])
    with h5py.File(weights_path, "a") as f:
        f.create_dataset("preprocessors/normalization_9/vars/0", data=np.ones(3, "float32"))
    members["model.weights.h5"] = weights_path.read_bytes()
    with zipfile.ZipFile(tmp_path / "extra.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert sorted(_h5_datasets(members["model.weights.h5"]))[-1] == \
        "preprocessors/normalization_9/vars/0"
    with pytest.raises(kilnet.errors.ModelFileError,
                       match=r"no layer of the feature space uses: "
                             r"\['preprocessors/normalization_9/vars/0'\]"):
        kilnet.models.load_model(tmp_path / "extra.keras")


def test_an_unadapted_space_is_not_saved(tmp_path):
    with pytest.raises(ValueError) as raised:
        tutorial_space().save(tmp_path / "space.keras")
    assert str(raised.value) == (
        "FeatureSpace: call `.adapt(data)` before using the space; the features "
        "['sex', 'cp', 'ca', 'thal', 'age', 'chol'] learn from the data.")
    assert not (tmp_path / "space.keras").exists()


def test_saving_checks_adaptation_once(tmp_path, monkeypatch):
    checks = []
    space = tutorial_space()
    space.adapt(heart_table())
    check = FeatureSpace._check_adapted
    monkeypatch.setattr(FeatureSpace, "_check_adapted",
                        lambda self: checks.append(1) or check(self))
    space.save(tmp_path / "space.keras")
    assert len(checks) == 1
    assert kilnet.models.load_model(tmp_path / "space.keras").features.keys() == \
        space.features.keys()


def test_features_made_with_the_constructors_are_named_as_keras_numbers_them():
    """keras.io's feature_space_advanced makes nine features with
    FeatureSpace.string_categorical(): Keras numbers each default name per process, so the
    inference model on space.get_inputs() has distinct layers (kilnet named them all
    string_categorical_preprocessor and refused that model)."""
    def names(lib):
        lib.utils.clear_session()
        space = lib.utils.FeatureSpace({
            "a": lib.utils.FeatureSpace.float_normalized(),
            "b": lib.utils.FeatureSpace.float_normalized(),
            "c": lib.utils.FeatureSpace.float_rescaled(scale=2.0),
            "d": lib.utils.FeatureSpace.float_rescaled(scale=2.0)})
        return [space.preprocessors[key].name for key in "abcd"]

    assert names(kilnet) == names(keras) == [
        "float_normalized_preprocessor", "float_normalized_1_preprocessor",
        "float_rescaled_preprocessor", "float_rescaled_1_preprocessor"]
    space = FeatureSpace({"x": FeatureSpace.string_categorical(num_oov_indices=0),
                          "y": FeatureSpace.string_categorical(num_oov_indices=0)})
    space.adapt({"x": np.array(["p", "q", "p"]), "y": np.array(["u", "v", "v"])})
    model = kilnet.Model(space.get_inputs(),
                         kilnet.layers.Dense(1)(space.get_encoded_features()))
    assert len({layer.name for layer in model.layers}) == len(model.layers)
