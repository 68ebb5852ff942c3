"""kilnet.applications' EfficientNetV2, ConvNeXt and InceptionResNetV2 against Keras 3.15's own
builders, as tests/test_applications.py does for the older families: Keras's model with
random weights (batch-norm statistics too), written in the legacy layout of Keras's
application files and served from 127.0.0.1, loaded with weights="imagenet" (or from the
file's path): the same layer names, weight shapes and predictions. Also the layers Keras
defines inside these modules (LayerScale, StochasticDepth, CustomScaleLayer), a Keras `.keras`
file of a ConvNeXt both ways, preprocess_input, and the argument checks."""

import os
import re

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference models are Keras's")
from keras.src.applications import convnext as keras_convnext  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

import kilnet  # noqa: E402
from kilnet import applications  # noqa: E402
from kilnet.applications import (convnext, efficientnet_v2,  # noqa: E402
                                 inception_resnet_v2, nasnet)
from tests._applications_reference import (KERAS_FOLDER, images, keras_model,  # noqa: E402
                                           serve_weights, set_hash)
from tests._applications_reference import served, www  # noqa: E402,F401  (fixtures)

FIXTURES = (served, www)   # pytest finds them here by name

# A ConvNeXt small enough for every test (Keras's generic builder takes the same arguments).
SMALL_CONVNEXT = dict(depths=[1, 2, 1, 1], projection_dims=[8, 16, 24, 32])


def layer_names(model):
    """The names of a model's layers; kilnet lists the graph's op nodes (ConvNeXt's `+`)
    among its layers, Keras does not."""
    return [layer.name for layer in model.layers
            if not isinstance(layer, kilnet.layers.Operation)]


def assert_same(mine, theirs, x):
    assert mine.name == theirs.name
    assert layer_names(mine) == layer_names(theirs)
    assert [tuple(w.shape) for w in mine.weights] == [tuple(w.shape) for w in theirs.weights]
    np.testing.assert_allclose(mine.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def pixels(shape, n=2, seed=1):
    """Images in [0, 255]: these models scale their inputs themselves."""
    return (images(shape, n, seed) + 1.0) * 127.5


@pytest.fixture
def small_convnext_tiny(monkeypatch):
    """ConvNeXtTiny shrunk to SMALL_CONVNEXT in both libraries, so that the whole ImageNet
    path (its name, file name and hash, its configuration check) runs at a small size."""
    for table in (convnext.MODEL_CONFIGS, keras_convnext.MODEL_CONFIGS):
        for key, value in SMALL_CONVNEXT.items():
            monkeypatch.setitem(table["tiny"], key, value)


# -- ImageNet weights as Keras publishes them ----------------------------------------------------
def test_efficientnet_v2_b0_imagenet_weights_load_and_predict_as_keras(served, monkeypatch):
    kwargs = dict(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    theirs = keras_model(keras.applications.EfficientNetV2B0, **kwargs)
    md5 = serve_weights(theirs, served,
                        f"{KERAS_FOLDER}/efficientnet_v2/efficientnetv2-b0_notop.h5")
    set_hash(monkeypatch, (efficientnet_v2, "WEIGHTS_HASHES", "b0", 1), md5)
    mine = applications.EfficientNetV2B0(weights="imagenet", **kwargs)
    assert_same(mine, theirs, pixels((32, 32, 3)))
    # Renamed, it is still B0 (Keras would look for the stages of "my_b0" and fail).
    renamed = applications.EfficientNetV2B0(weights="imagenet", name="my_b0", **kwargs)
    assert renamed.name == "my_b0" and type(renamed.layers[2]).__name__ == "Normalization"
    for got, want in zip(renamed.get_weights(), mine.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_efficientnet_v2_with_classifier_from_a_keras_file_path(tmp_path):
    kwargs = dict(input_shape=(32, 32, 3), classes=5, include_preprocessing=False)
    theirs = keras_model(keras.applications.EfficientNetV2B1, **kwargs)
    with h5py.File(tmp_path / "b1.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, theirs)
    mine = applications.EfficientNetV2B1(weights=str(tmp_path / "b1.h5"), **kwargs)
    assert_same(mine, theirs, images((32, 32, 3)))


def test_efficientnet_v2_s_has_keras_layers_and_weights():
    # Built, not run (40 blocks): names, weight shapes and the noise_shape of the drops.
    kwargs = dict(weights=None, include_top=False, input_shape=(32, 32, 3))
    mine = applications.EfficientNetV2S(**kwargs)
    keras.backend.clear_session()
    theirs = keras.applications.EfficientNetV2S(**kwargs)
    assert layer_names(mine) == layer_names(theirs)
    assert [tuple(w.shape) for w in mine.weights] == [tuple(w.shape) for w in theirs.weights]
    drops = [(layer.name, layer.rate, layer.noise_shape) for layer in mine.layers
             if isinstance(layer, kilnet.layers.Dropout)]
    assert drops == [(layer.name, layer.rate, layer.noise_shape) for layer in theirs.layers
                     if isinstance(layer, keras.layers.Dropout)]
    assert drops   # the residual blocks drop samples


def test_convnext_tiny_imagenet_weights_load_and_predict_as_keras(served, monkeypatch,
                                                                  small_convnext_tiny):
    kwargs = dict(include_top=False, input_shape=(32, 32, 3), pooling="max")
    theirs = keras_model(keras.applications.ConvNeXtTiny, **kwargs)
    sha256 = _sha256(served, f"{KERAS_FOLDER}/convnext/convnext_tiny_notop.h5", theirs)
    set_hash(monkeypatch, (convnext, "WEIGHTS_HASHES", "convnext_tiny", 1), sha256)
    mine = applications.ConvNeXtTiny(weights="imagenet", **kwargs)
    assert_same(mine, theirs, pixels((32, 32, 3)))
    # LayerScale's unnamed weight: "variable" (Keras numbers it per session: variable_1, ...)
    assert [w.name for w in mine.weights] == [re.sub(r"^variable_\d+$", "variable", w.name)
                                              for w in theirs.weights]


def _sha256(folder, relative, model):
    """Keras's ConvNeXt files are checked by sha256, not md5."""
    import hashlib
    serve_weights(model, folder, relative)
    return hashlib.sha256((folder / relative).read_bytes()).hexdigest()


@pytest.mark.parametrize("include_top, pooling", [(True, None), (False, None)])
def test_convnext_with_stochastic_depth_from_a_keras_file_path(tmp_path, include_top, pooling):
    kwargs = dict(SMALL_CONVNEXT, input_shape=(32, 32, 3), include_top=include_top,
                  pooling=pooling, classes=4, drop_path_rate=0.3, name="convnext_small")
    theirs = keras_model(keras_convnext.ConvNeXt, **kwargs)
    with h5py.File(tmp_path / "convnext.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, theirs)
    mine = convnext.ConvNeXt(weights=str(tmp_path / "convnext.h5"), **kwargs)
    assert_same(mine, theirs, pixels((32, 32, 3)))
    depth = [(layer.name, layer.get_config()["drop_path_rate"]) for layer in mine.layers
             if isinstance(layer, kilnet.layers.StochasticDepth)]
    assert depth == [(layer.name, layer.drop_path_rate) for layer in theirs.layers
                     if type(layer).__name__ == "StochasticDepth"]


def test_inception_resnet_v2_imagenet_weights_load_and_predict_as_keras(served, monkeypatch):
    kwargs = dict(include_top=False, input_shape=(75, 75, 3), pooling="avg")
    theirs = keras_model(keras.applications.InceptionResNetV2, **kwargs)
    md5 = serve_weights(theirs, served, f"{KERAS_FOLDER}/inception_resnet_v2/"
                        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5")
    set_hash(monkeypatch, (inception_resnet_v2, "WEIGHTS_HASHES", 1), md5)
    mine = applications.InceptionResNetV2(weights="imagenet", **kwargs)
    assert_same(mine, theirs, images((75, 75, 3), n=1))
    scales = [layer.get_config()["scale"] for layer in mine.layers
              if isinstance(layer, kilnet.layers.CustomScaleLayer)]
    assert scales == [0.17] * 10 + [0.1] * 20 + [0.2] * 9 + [1.0]


# NASNet-A at a small size: Keras's generic builder takes the same arguments.
SMALL_NASNET = dict(input_shape=(32, 32, 3), penultimate_filters=96, num_blocks=1,
                    stem_block_filters=8, skip_reduction=False)


def test_nasnet_mobile_imagenet_weights_load_and_predict_as_keras(served, monkeypatch):
    # Keras picks the file by default_size (224: NASNetMobile's), so a small NASNet-A with
    # that default_size loads "NASNet-mobile-no-top.h5" through the whole ImageNet path.
    from keras.src.applications.nasnet import NASNet as KerasNASNet
    kwargs = dict(SMALL_NASNET, include_top=False, pooling="max", default_size=224)
    theirs = keras_model(KerasNASNet, **kwargs)
    md5 = serve_weights(theirs, served, f"{KERAS_FOLDER}/nasnet/NASNet-mobile-no-top.h5")
    file_name, url, _ = nasnet.WEIGHTS_FILES[224][False]
    monkeypatch.setitem(nasnet.WEIGHTS_FILES, 224, {False: (file_name, url, md5)})
    mine = nasnet.NASNet(weights="imagenet", **kwargs)
    assert_same(mine, theirs, images((32, 32, 3)))


def test_nasnet_large_style_cells_have_keras_layers_and_weights():
    # NASNetLarge's wiring (skip_reduction=True, more cells), built, not run.
    from keras.src.applications.nasnet import NASNet as KerasNASNet
    kwargs = dict(SMALL_NASNET, num_blocks=2, skip_reduction=True, weights=None, classes=3)
    mine = nasnet.NASNet(**kwargs)
    keras.backend.clear_session()
    theirs = KerasNASNet(**kwargs)
    assert layer_names(mine) == layer_names(theirs)
    assert [tuple(w.shape) for w in mine.weights] == [tuple(w.shape) for w in theirs.weights]


# -- Keras's .keras files ------------------------------------------------------------------------
def test_a_keras_saved_convnext_opens_in_kilnet_and_back(tmp_path, small_convnext_tiny):
    theirs = keras_model(keras_convnext.ConvNeXt, **SMALL_CONVNEXT, input_shape=(32, 32, 3),
                         classes=3, drop_path_rate=0.2, name="convnext_tiny")
    theirs.save(tmp_path / "theirs.keras")
    mine = kilnet.saving.load_model(tmp_path / "theirs.keras")
    x = pixels((32, 32, 3))
    want = theirs.predict(x, verbose=0)
    np.testing.assert_allclose(mine.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)
    assert {type(layer).__name__ for layer in mine.layers} >= {"LayerScale",
                                                               "StochasticDepth"}
    # kilnet's own model, saved: Keras rebuilds its LayerScale and StochasticDepth.
    built = applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), include_top=False,
                                      pooling="avg")
    built.save(tmp_path / "mine.keras")
    again = keras.saving.load_model(tmp_path / "mine.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(x, verbose=0), built.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_custom_scale_layer_in_a_keras_file_both_ways(tmp_path):
    inputs = kilnet.Input(shape=(3,))
    mine = kilnet.Model(inputs, kilnet.layers.CustomScaleLayer(0.17)(
        [inputs, kilnet.layers.Dense(3)(inputs)]))
    x = images((3,))
    mine.save(tmp_path / "mine.keras")
    theirs = keras.saving.load_model(tmp_path / "mine.keras", safe_mode=True)
    assert type(theirs.layers[-1]).__module__ == "keras.src.applications.inception_resnet_v2"
    np.testing.assert_allclose(theirs.predict(x, verbose=0), mine.predict(x, verbose=0),
                               rtol=1e-5)
    theirs.save(tmp_path / "theirs.keras")
    again = kilnet.saving.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), mine.predict(x, verbose=0),
                               rtol=1e-5)


# -- the layers of Keras's application modules ---------------------------------------------------
def test_application_layers_have_keras_configs():
    for lib in (kilnet, keras):   # both name a layer made on its own per process: afresh
        lib.utils.clear_session()
    pairs = [(kilnet.layers.LayerScale(1e-6, 4), keras_convnext.LayerScale(1e-6, 4)),
             (kilnet.layers.StochasticDepth(0.1), keras_convnext.StochasticDepth(0.1))]
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    pairs.append((kilnet.layers.CustomScaleLayer(0.2), CustomScaleLayer(0.2)))
    for mine, theirs in pairs:
        ours, want = mine.get_config(), theirs.get_config()
        assert {k: ours[k] for k in want if k != "dtype"} == \
            {k: v for k, v in want.items() if k != "dtype"}


def test_stochastic_depth_and_dropout_noise_shape_drop_whole_samples():
    x = np.ones((400, 3, 2), np.float32)
    depth = np.asarray(kilnet.layers.StochasticDepth(0.5)(x, training=True))
    dropout = np.asarray(kilnet.layers.Dropout(0.5, noise_shape=(None, 1, 1))(x, training=True))
    for y in (depth, dropout):
        assert set(np.unique(y).tolist()) == {0.0, 2.0}
        assert (y == y[:, :1, :1]).all()             # one decision per sample
        assert 0.4 < (y[:, 0, 0] == 0).mean() < 0.6
    np.testing.assert_array_equal(kilnet.layers.StochasticDepth(0.5)(x), x)   # inference
    assert kilnet.layers.Dropout(0.5, noise_shape=(None, 1, 1)).get_config()["noise_shape"] \
        == keras.layers.Dropout(0.5, noise_shape=(None, 1, 1)).get_config()["noise_shape"]


# -- preprocessing -------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["efficientnet_v2", "convnext", "inception_resnet_v2",
                                    "nasnet"])
def test_family_preprocess_input_equals_keras(module):
    pictures = np.random.default_rng(1).uniform(0, 255, (1, 3, 3, 3)).astype("float32")
    mine = getattr(applications, module).preprocess_input(pictures.copy())
    theirs = getattr(keras.applications, module).preprocess_input(pictures.copy())
    np.testing.assert_allclose(mine, theirs, rtol=1e-6)


# -- argument checks -----------------------------------------------------------------------------
@pytest.mark.parametrize("build, kwargs, message", [
    (applications.EfficientNetV2B0, dict(weights="imagenet", classes=10),
     r"classes must be 1000.*Received: classes=10"),
    (applications.EfficientNetV2S, dict(weights=None, include_top=False,
                                        input_shape=(16, 16, 3)),
     r"at least 32x32.*Received: input_shape=\(16, 16, 3\)"),
    (applications.EfficientNetV2M, dict(weights="imagenet", input_shape=(224, 224, 3)),
     r"input_shape must be \(480, 480, 3\).*Received: input_shape=\(224, 224, 3\)"),
    (applications.ConvNeXtBase, dict(weights=None, include_top=False, pooling="sum"),
     r"Received: pooling='sum'"),
    (applications.ConvNeXtSmall, dict(weights="imagenet", name="my_model"),
     r"must contain 'convnext_small'.*Received: name='my_model'"),
    (applications.InceptionResNetV2, dict(weights=None, include_top=False,
                                          input_shape=(64, 64, 3)),
     r"at least 75x75.*Received: input_shape=\(64, 64, 3\)"),
    (applications.InceptionResNetV2, dict(weights="imagenet", classifier_activation="relu"),
     r"'softmax' or None.*Received: classifier_activation='relu'"),
    (applications.ConvNeXtLarge, dict(weights="no/such/file.h5"),
     r"Received: weights='no/such/file.h5'"),
])
def test_bad_arguments_are_refused_clearly(build, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_generic_builders_refuse_what_keras_refuses():
    with pytest.raises(ValueError, match=r"depths=\[3, 3, 9, 3\].*Received: depths=\[1, 1"):
        convnext.ConvNeXt([1, 1, 1, 1], [8, 8, 8, 8], weights="imagenet",
                          name="convnext_tiny", weights_name="convnext_tiny")
    with pytest.raises(ValueError, match=r"variant's name.*Received: name='mine'"):
        efficientnet_v2.EfficientNetV2(1.0, 1.0, 224, name="mine", weights=None)
    stages = [dict(efficientnet_v2.DEFAULT_BLOCKS_ARGS["efficientnetv2-b0"][0], num_repeat=0)]
    with pytest.raises(ValueError, match=r"num_repeat > 0.*Received: num_repeat=0"):
        efficientnet_v2.EfficientNetV2(1.0, 1.0, 224, blocks_args=stages, weights=None,
                                       input_shape=(32, 32, 3), include_top=False)
    with pytest.raises(ValueError, match=r"block35.*Received: block_type='block9'"):
        inception_resnet_v2.inception_resnet_block(kilnet.Input(shape=(8, 8, 4)), 0.1,
                                                   "block9", 1)
    with pytest.raises(ValueError, match=r"drop_path_rate.*Received: drop_path_rate=1.5"):
        kilnet.layers.StochasticDepth(1.5)
    with pytest.raises(ValueError, match=r"list of two tensors.*Received"):
        kilnet.layers.CustomScaleLayer(0.1)(kilnet.Input(shape=(3,)))
    with pytest.raises(ValueError, match=r"projection_dim=.*Received: an input of shape"):
        kilnet.layers.LayerScale(1e-6, 4)(kilnet.Input(shape=(3,)))
