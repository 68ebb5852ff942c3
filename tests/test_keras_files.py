"""Keras 3 files both ways: a model built in Keras, saved and opened in kilnet predicts the same
(1e-5) and keeps training; a kilnet model saved as .keras opens in Keras (safe mode) and predicts
the same. One small model per layer type of the layer contract table (tests/_layer_specs.py),
plus multi-input/multi-output and nested models, weights files and compile configurations."""

import os
import warnings
import zipfile

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _layer_specs import SPECS  # noqa: E402

# Keras's twins here get kilnet's weights or only need random ones (conftest).
pytestmark = pytest.mark.usefixtures("keras_draws_on_host")


def _data(spec, rng):
    arrays = [rng.integers(0, 7, (4,) + s).astype("int32") if spec.dtype == "int32"
              else rng.normal(size=(4,) + s).astype("float32") for s in spec.shapes]
    return arrays[0] if len(arrays) == 1 else arrays


def _model(ns, spec, input_fn, model_cls):
    inputs = [input_fn(s, dtype=spec.dtype) for s in spec.shapes]
    layer = spec.make(ns)
    if spec.call == "one":
        outputs = layer(inputs[0])
    elif spec.call == "list":
        outputs = layer(inputs)
    else:
        outputs = layer(*inputs)
    return model_cls(inputs, outputs)


def _keras_out(model, x):
    return np.asarray(model(x, training=False))


def _kilnet_out(model, x):
    return np.asarray(model(x, training=False))


# Specs with keras=False (IntegerLookup, Hashing: Keras 3.15 runs them with TensorFlow;
# RandomCrop: Keras computes its inference crop otherwise; see tests/_layer_specs.py) have no
# Keras model to compare with.
KERAS_SPECS = [s for s in SPECS if s.keras]


@pytest.mark.parametrize("spec", KERAS_SPECS, ids=[s.name for s in KERAS_SPECS])
def test_keras_model_opens_in_kilnet_and_back(spec, tmp_path):
    rng = np.random.default_rng(0)
    x = _data(spec, rng)
    # Keras -> kilnet, with weights moved off their initial values
    km = _model(keras.layers, spec, keras.Input, keras.Model)
    km.set_weights([w + 0.1 * rng.normal(size=w.shape).astype(w.dtype)
                    for w in km.get_weights()])
    km.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = kilnet.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(_kilnet_out(mine, x), _keras_out(km, x), rtol=1e-5, atol=1e-5)
    assert [type(layer).__name__ for layer in mine.layers][-1] == spec.name
    # kilnet -> Keras (safe mode)
    model = _model(kilnet.layers, spec, kilnet.Input, kilnet.Model)
    model.build(seed=1)
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(_keras_out(theirs, x), _kilnet_out(model, x), rtol=1e-5,
                               atol=1e-5)
    assert len(theirs.get_weights()) == len(model.get_weights())


def _keras_two_heads():
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    shared = keras.layers.Dense(5, activation="relu", name="shared")
    h = keras.layers.Concatenate(name="cat")([shared(a), keras.layers.Dense(5)(b)])
    block = keras.Sequential([keras.Input((10,)), keras.layers.Dense(6, activation="tanh"),
                              keras.layers.BatchNormalization()], name="block")
    h = block(h)
    out1 = keras.layers.Dense(1, name="reg")(h)
    out2 = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    return keras.Model([a, b], [out1, out2])


def test_functional_multi_input_output_with_nested_sequential(tmp_path):
    rng = np.random.default_rng(1)
    x = [rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")]
    km = _keras_two_heads()
    km.compile(optimizer=keras.optimizers.Adam(0.01), loss=["mse", "sparse_categorical_crossentropy"])
    km.fit(x, [rng.normal(size=(8, 1)), rng.integers(0, 3, 8)], epochs=1, verbose=0)
    km.save(tmp_path / "two.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = kilnet.models.load_model(tmp_path / "two.keras")
    for got, want in zip(mine.predict(x, verbose=0), km.predict(x, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert [type(layer).__name__ for layer in mine.get_layer("block").layers] == [
        "Dense", "BatchNormalization"]
    # and back to Keras
    mine.save(tmp_path / "back.keras")
    theirs = keras.models.load_model(tmp_path / "back.keras")
    for got, want in zip(theirs.predict(x, verbose=0), km.predict(x, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_shared_layer_is_shared_after_import(tmp_path):
    a = keras.Input((3,))
    b = keras.Input((3,))
    dense = keras.layers.Dense(2, name="twice")
    km = keras.Model([a, b], keras.layers.Add()([dense(a), dense(b)]))
    km.save(tmp_path / "s.keras")
    mine = kilnet.models.load_model(tmp_path / "s.keras")
    assert len(mine.get_weights()) == 2
    x = [np.ones((2, 3), "float32"), np.arange(6, dtype="float32").reshape(2, 3)]
    np.testing.assert_allclose(mine.predict(x, verbose=0), km.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)


def test_imported_model_keeps_training_with_its_compile_config(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x @ rng.normal(size=(5, 1))).astype("float32")
    km = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                           keras.layers.Dense(1)])
    km.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse",
               metrics=["mae"])
    km.fit(x, y, epochs=1, verbose=0)
    km.save(tmp_path / "t.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the optimizer state comes along, nothing left out
        mine = kilnet.models.load_model(tmp_path / "t.keras")
    assert mine.compiled is not None
    assert mine.optimizer.learning_rate == pytest.approx(0.01)
    history = mine.fit(x, y, epochs=3, batch_size=16, verbose=0).history
    losses = history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert "mae" in history


def test_uncompiled_sequential_roundtrip_and_frozen_flag(tmp_path):
    model = kilnet.Sequential([kilnet.Input(shape=(4,)), kilnet.layers.Dense(3),
                               kilnet.layers.Dropout(0.2), kilnet.layers.Dense(1)])
    model.build(seed=0)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json",
                                              "model.weights.h5"]
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert type(theirs).__name__ == "Sequential"
    back = kilnet.models.load_model(tmp_path / "m.keras")
    for a, b in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _two_dense(lib):
    return lib.Sequential([lib.Input(shape=(3,)), lib.layers.Dense(4), lib.layers.Dense(2)])


def _loaded_from_keras(tmp_path, name, save):
    """A Keras model written by `save(model, path)` to `name`, loaded by kilnet's
    load_weights: (Keras's model, kilnet's, the input), their predictions checked equal;
    kilnet's weights then doubled."""
    km = _two_dense(keras)
    save(km, tmp_path / name)
    mine = _two_dense(kilnet)
    mine.load_weights(tmp_path / name)
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(mine.predict(x, verbose=0), km.predict(x, verbose=0), rtol=1e-5)
    mine.set_weights([w * 2 for w in mine.get_weights()])
    return km, mine, x


def test_keras_weights_files_both_ways(tmp_path):
    km, mine, x = _loaded_from_keras(tmp_path, "k.weights.h5",
                                     lambda model, path: model.save_weights(path))
    mine.save_weights(tmp_path / "m.weights.h5")
    km.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(km.predict(x, verbose=0), mine.predict(x, verbose=0), rtol=1e-5)


def test_load_weights_takes_a_keras_model_file_as_keras_does(tmp_path):
    """keras.io's 3D image classification saves its best model with ModelCheckpoint(".keras")
    and then calls model.load_weights("....keras"): the weights of the archive, as Keras."""
    _, mine, _ = _loaded_from_keras(tmp_path, "best.keras", lambda model, path: model.save(path))
    mine.save(tmp_path / "mine.keras")
    again = _two_dense(kilnet)
    again.load_weights(tmp_path / "mine.keras")
    for a, b in zip(again.get_weights(), mine.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_refused_exports_name_kilnet(tmp_path):
    class Sub(kilnet.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.d = kilnet.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub.build((None, 3), seed=0)
    with pytest.raises(ValueError, match=r"legacy \.h5.*\.keras.*\.kilnet"):
        sub.save(tmp_path / "sub.h5")
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
    model.build(seed=0)
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        model.save_weights(tmp_path / "w.h5")
    assert not os.listdir(tmp_path)


def test_kilnet_file_under_keras_name_still_loads(tmp_path):
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
    model.build(seed=0)
    kilnet.saving.save_model(model, tmp_path / "m.kilnet")
    os.rename(tmp_path / "m.kilnet", tmp_path / "old.keras")
    loaded = kilnet.models.load_model(tmp_path / "old.keras")
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_a_bidirectional_rnn_over_masked_sequences_opens_in_kilnet(tmp_path):
    """Keras's Bidirectional writes zero_output_for_mask=True into its inner RNNs' configs
    when they return sequences; kilnet's RNNs take it, so the file opens and predicts as
    Keras does, masked steps included."""
    inputs = keras.Input(shape=(6,), dtype="int32")
    x = keras.layers.Embedding(20, 4, mask_zero=True)(inputs)
    x = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(2))(x)
    km = keras.Model(inputs, keras.layers.Dense(1)(x))
    km.save(tmp_path / "bidi.keras")
    tokens = np.random.default_rng(0).integers(1, 20, size=(5, 6)).astype("int32")
    tokens[:, 4:] = 0  # padding the mask hides
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mine = kilnet.models.load_model(tmp_path / "bidi.keras")
    np.testing.assert_allclose(_kilnet_out(mine, tokens), _keras_out(km, tokens),
                               rtol=1e-5, atol=1e-6)


def test_masking_nodes_travel_both_ways_and_through_kilnet_files(tmp_path):
    """Masking's mask is saved by Keras as two op nodes, NotEqual then Any(axis=-1), passed to
    the LSTM as mask=: kilnet maps them onto its Operation layer, predicts as Keras, keeps
    training, and writes them back in a .kilnet file and in a .keras file Keras opens."""
    inputs = keras.Input(shape=(5, 3))
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.LSTM(4)(x)
    km = keras.Model(inputs, keras.layers.Dense(1)(x))
    km.save(tmp_path / "masking.keras")
    x_data = np.random.default_rng(1).normal(size=(6, 5, 3)).astype("float32")
    x_data[:, 3:] = 0.0  # masked steps
    mine = kilnet.models.load_model(tmp_path / "masking.keras")
    assert [type(layer).__name__ for layer in mine.operations].count("Operation") == 2
    expected = _keras_out(km, x_data)
    np.testing.assert_allclose(_kilnet_out(mine, x_data), expected, rtol=1e-5, atol=1e-6)
    mine.save(tmp_path / "masking.kilnet")
    again = kilnet.models.load_model(tmp_path / "masking.kilnet")
    np.testing.assert_array_equal(_kilnet_out(again, x_data), _kilnet_out(mine, x_data))
    mine.save(tmp_path / "back.keras")
    theirs = keras.models.load_model(tmp_path / "back.keras", safe_mode=True)
    np.testing.assert_allclose(_keras_out(theirs, x_data), expected, rtol=1e-5, atol=1e-6)
    mine.compile(optimizer="sgd", loss="mse")
    before = mine.evaluate(x_data, np.ones((6, 1), "float32"), verbose=0)
    mine.fit(x_data, np.ones((6, 1), "float32"), epochs=3, verbose=0)
    assert mine.evaluate(x_data, np.ones((6, 1), "float32"), verbose=0) < before


def test_an_op_node_outside_the_closed_table_is_refused(tmp_path):
    inputs = keras.Input(shape=(3,))
    km = keras.Model(inputs, keras.layers.Dense(1)(keras.ops.logaddexp(inputs, inputs)))
    km.save(tmp_path / "logaddexp.keras")
    # the same file naming an op class kilnet's table does not hold
    with zipfile.ZipFile(tmp_path / "logaddexp.keras") as source, \
            zipfile.ZipFile(tmp_path / "unknown_op.keras", "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                data = data.replace(b'"Logaddexp"', b'"Frobnicate"')
            target.writestr(item, data)
    with pytest.raises(kilnet.errors.ModelFileError,
                       match="Frobnicate.*module path|no op 'Frobnicate'"):
        kilnet.models.load_model(tmp_path / "unknown_op.keras")


def test_keras_weights_of_an_adapted_normalization_load(tmp_path):
    """Keras keeps an adapted Normalization's count as an int32 scalar; kilnet reads it into
    its float32 count (the ViT tutorial's augmentation, saved by Keras)."""
    x = np.random.default_rng(0).normal(3.0, 2.0, (64, 4)).astype("float32")
    norm = keras.layers.Normalization()
    norm.adapt(x)
    theirs = keras.Sequential([keras.Input((4,)), norm, keras.layers.Dense(2)])
    theirs.save_weights(tmp_path / "w.weights.h5")
    ours = kilnet.Sequential([kilnet.Input((4,)), kilnet.layers.Normalization(),
                              kilnet.layers.Dense(2)])
    ours.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
