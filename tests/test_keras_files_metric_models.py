"""A Metric kept as a model's attribute that holds a model (keras.io's ddim and gan_ada keep an
InceptionV3 encoder in their KID metric): Keras's save_weights walks the metric as it walks a
layer of yours, writes none of the metric's own variables, and writes the layers it holds
under their attributes' names (`kid/encoder/layers/functional/layers/...`). kilnet's
`.weights.h5` and `.keras` files hold the same datasets, and each side loads the other's file
with equal arrays; a metric holding no layers still writes nothing."""

from __future__ import annotations

import os
import zipfile

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402
from tests._metric_models import draw_weights, tracked_metric  # noqa: E402

SHAPE = (6, 6, 2)
X = np.random.default_rng(0).random((3,) + SHAPE).astype("float32")


def _classes(lib):
    """The same model for each library: a network, a KID-like metric whose encoder is a
    Sequential holding a functional backbone (convolution and batch normalization, as
    InceptionV3's blocks), and a plain tracker metric."""
    layers = lib.layers
    register = lib.saving.register_keras_serializable(package="kilnet_test_metric_models")

    class Kid(tracked_metric(lib)):
        def __init__(self, name="kid", **kwargs):
            super().__init__(name=name, **kwargs)
            inputs = lib.Input(SHAPE, name="backbone_in")
            x = layers.Conv2D(3, 3, name="conv")(inputs)
            x = layers.BatchNormalization(name="bn")(x)
            backbone = lib.Model(inputs, x, name="backbone")
            self.encoder = lib.Sequential([lib.Input(SHAPE), layers.Rescaling(2.0, name="scale"),
                                           backbone, layers.GlobalAveragePooling2D(name="pool")],
                                          name="encoder")

        def update_state(self, real, generated, sample_weight=None):
            gap = self.encoder(real, training=False) - self.encoder(generated, training=False)
            self.kid_tracker.update_state(lib.ops.mean(gap))

    class Diffusion(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.network = lib.Sequential([lib.Input(SHAPE),
                                           layers.Conv2D(2, 3, padding="same", name="net_conv")],
                                          name="network")
            self.kid = Kid()
            self.noise_loss_tracker = lib.metrics.Mean(name="n_loss")

        def call(self, x):
            return self.network(x)

    return register(Kid), register(Diffusion)


def _model(lib, seed):
    """A built model whose every weight (the encoder's batch-normalization statistics too) is
    drawn from `seed`, so that a load that skipped any array would show."""
    model = _classes(lib)[1]()
    model(X)
    draw_weights((model, model.kid.encoder), seed)
    return model


def _datasets(file):
    found = []
    file.visititems(lambda name, item: found.append((name, item.shape))
                    if isinstance(item, h5py.Dataset) else None)
    return sorted(found)


def _listing(path):
    if str(path).endswith(".keras"):
        with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as member:
            with h5py.File(member, "r") as file:
                return _datasets(file)
    with h5py.File(path, "r") as file:
        return _datasets(file)


def _assert_same_weights(ours, theirs):
    for part in ("model", "encoder"):
        got = (ours if part == "model" else ours.kid.encoder).get_weights()
        expected = (theirs if part == "model" else theirs.kid.encoder).get_weights()
        assert len(got) == len(expected) > 0, part
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_keras_weights_file_of_a_metric_holding_a_model_loads_in_kilnet(tmp_path):
    theirs = _model(keras, seed=1)
    theirs.save_weights(tmp_path / "k.weights.h5")
    listing = _listing(tmp_path / "k.weights.h5")
    assert ("kid/encoder/layers/functional/layers/conv2d/vars/0", (3, 3, 2, 3)) in listing
    ours = _classes(kilnet)[1]()
    ours(X)
    ours.load_weights(tmp_path / "k.weights.h5")
    _assert_same_weights(ours, theirs)
    np.testing.assert_allclose(ours.kid.encoder.predict(X, verbose=0),
                               theirs.kid.encoder.predict(X, verbose=0), rtol=1e-5, atol=1e-6)
    # the metric's own state is in no weights file, as in Keras
    assert [float(v) for v in ours.kid.variables] == [0.0, 0.0]


def test_kilnet_weights_file_of_a_metric_holding_a_model_loads_in_keras(tmp_path):
    ours = _model(kilnet, seed=2)
    ours.save_weights(tmp_path / "m.weights.h5")
    _model(keras, seed=3).save_weights(tmp_path / "k.weights.h5")
    assert _listing(tmp_path / "m.weights.h5") == _listing(tmp_path / "k.weights.h5")
    theirs = _classes(keras)[1]()
    theirs(X)
    theirs.load_weights(tmp_path / "m.weights.h5")   # Keras raises on any object left unloaded
    _assert_same_weights(ours, theirs)


def test_keras_files_of_a_metric_holding_a_model_open_both_ways(tmp_path):
    ours, theirs = _model(kilnet, seed=4), _model(keras, seed=5)
    ours.save(tmp_path / "m.keras")
    theirs.save(tmp_path / "k.keras")
    assert _listing(tmp_path / "m.keras") == _listing(tmp_path / "k.keras")
    _assert_same_weights(keras.models.load_model(tmp_path / "m.keras"), ours)
    _assert_same_weights(kilnet.models.load_model(tmp_path / "k.keras"), theirs)


def _listed_metrics(lib):
    """Metrics kept in a list: Keras numbers them by class (`trackers/kid_1`), as layers."""
    kid = _classes(lib)[0]

    class Listed(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(2, name="d")
            self.trackers = [lib.metrics.Mean(name="m"), kid(name="a"), kid(name="b")]

        def call(self, x):
            return self.dense(x)

    model = Listed()
    model(X)
    return model


def test_metrics_in_a_list_are_numbered_by_class_both_ways(tmp_path):
    ours, theirs = _listed_metrics(kilnet), _listed_metrics(keras)
    ours.save_weights(tmp_path / "m.weights.h5")
    theirs.save_weights(tmp_path / "k.weights.h5")
    listing = _listing(tmp_path / "k.weights.h5")
    assert ("trackers/kid_1/encoder/layers/functional/layers/batch_normalization/vars/3",
            (3,)) in listing
    assert _listing(tmp_path / "m.weights.h5") == listing
    ours.load_weights(tmp_path / "k.weights.h5")
    for mine, keras_metric in zip(ours.trackers[1:], theirs.trackers[1:]):
        for a, b in zip(mine.encoder.get_weights(), keras_metric.encoder.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_a_plain_metric_attribute_writes_nothing(tmp_path):
    """A metric holding no layers (a loss tracker) has no place in the file, as in Keras."""
    files = {}
    for lib in (kilnet, keras):
        class Tracked(lib.Model):
            def __init__(self):
                super().__init__()
                self.dense = lib.layers.Dense(2, name="d")
                self.loss_tracker = lib.metrics.Mean(name="loss")

            def call(self, x):
                return self.dense(x)

        model = Tracked()
        model(X)
        model.save_weights(tmp_path / f"{lib.__name__}.weights.h5")
        with h5py.File(tmp_path / f"{lib.__name__}.weights.h5", "r") as file:
            groups = []
            file.visit(groups.append)
        files[lib.__name__] = sorted(groups)
    assert files["kilnet"] == files["keras"]
    assert not any(name.startswith("loss_tracker") for name in files["kilnet"])


def test_a_metric_given_to_compile_writes_nothing(tmp_path):
    """Keras walks the metrics a model keeps as attributes, not those compile() is given."""
    files = {}
    for lib in (kilnet, keras):
        kid = _classes(lib)[0]

        class Plain(lib.Model):
            def __init__(self):
                super().__init__()
                self.conv = lib.layers.Conv2D(2, 3, padding="same", name="c")

            def call(self, x):
                return self.conv(x)

        model = Plain()
        model(X)
        model.compile(optimizer="adam", loss="mse", metrics=["mae", kid()])
        model.save_weights(tmp_path / f"{lib.__name__}.weights.h5")
        files[lib.__name__] = _listing(tmp_path / f"{lib.__name__}.weights.h5")
    assert files["kilnet"] == files["keras"]
    assert not any("encoder" in name for name, _ in files["kilnet"])
