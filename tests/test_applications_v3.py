"""kilnet.applications' MobileNetV3, EfficientNet (B0..B7) and ResNet V2 families against
Keras 3.15's own builders, at small sizes: Keras's model with random weights (batch-norm
statistics and Normalization's too) written as Keras's weights file, served from 127.0.0.1
and loaded with weights="imagenet": the same layer names, weight shapes and predictions. Also
each module's preprocess_input, the per-channel Rescaling EfficientNet needs, and the
argument checks."""

import os

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference models are Keras's")
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

import kilnet  # noqa: E402
from kilnet import applications  # noqa: E402
from kilnet.applications import efficientnet, mobilenet_v3, resnet_v2  # noqa: E402
from tests._applications_reference import (KERAS_FOLDER, images, keras_model,  # noqa: E402
                                           serve_weights, set_hash)
from tests import _applications_reference  # noqa: E402

# The weight server's fixtures, shared with tests/test_applications.py.
www, served = _applications_reference.www, _applications_reference.served

SHAPE = (32, 32, 3)


def pixels(n=2):
    """Images in [0, 255]: the families with their scaling inside take raw pixels."""
    return (images(SHAPE, n) + 1.0) * 127.5


def assert_same_model(mine, theirs, x):
    """Keras's `model.layers` leaves out the ops recorded between layers (MobileNetV3's hard
    sigmoid is `ReLU(6)(x + 3) * (1 / 6)`); kilnet lists them as Operation nodes, so they are
    left out here too. Weights and predictions are compared whole."""
    names = [layer.name for layer in mine.layers
             if not isinstance(layer, kilnet.layers.Operation)]
    assert names == [layer.name for layer in theirs.layers]
    assert [tuple(w.shape) for w in mine.weights] == [tuple(w.shape) for w in theirs.weights]
    np.testing.assert_allclose(mine.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


# -- MobileNetV3 --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, model_name, index", [
    (dict(include_top=False, alpha=0.75, pooling="avg"), "small_224_0.75_float", 1),
    # the classifier with Keras's default 1000 classes (the weights load at any size)
    (dict(include_top=True, minimalistic=True), "small_minimalistic_224_1.0_float", 0),
])
def test_mobilenet_v3_small_imagenet_weights_load_and_predict_as_keras(kwargs, model_name,
                                                                       index, served,
                                                                       monkeypatch):
    theirs = keras_model(keras.applications.MobileNetV3Small, input_shape=SHAPE, **kwargs)
    suffix = "" if kwargs["include_top"] else "_no_top_v2"
    file_name = f"weights_mobilenet_v3_{model_name}{suffix}.h5"
    md5 = serve_weights(theirs, served, f"{KERAS_FOLDER}/mobilenet_v3/{file_name}")
    set_hash(monkeypatch, (mobilenet_v3, "WEIGHTS_HASHES", model_name, index), md5)
    with pytest.warns(UserWarning, match="224x224"):
        mine = applications.MobileNetV3Small(weights="imagenet", input_shape=SHAPE, **kwargs)
    assert mine.name == theirs.name == "MobileNetV3Small"
    assert_same_model(mine, theirs, pixels())


def test_mobilenet_v3_large_without_preprocessing_from_a_keras_file(tmp_path):
    theirs = keras_model(keras.applications.MobileNetV3Large, input_shape=SHAPE,
                         include_top=False, include_preprocessing=False)
    with h5py.File(tmp_path / "large.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, theirs)
    mine = applications.MobileNetV3Large(weights=str(tmp_path / "large.h5"), input_shape=SHAPE,
                                         include_top=False, include_preprocessing=False)
    assert not any(isinstance(layer, kilnet.layers.Rescaling) for layer in mine.layers)
    assert_same_model(mine, theirs, images(SHAPE))


# -- EfficientNet -------------------------------------------------------------------------------
def test_efficientnet_b0_imagenet_weights_load_and_predict_as_keras(served, monkeypatch):
    # Keras's ImageNet model has one more layer (a Rescaling after the Normalization), so the
    # reference is Keras's weights="imagenet" model itself, its download and loading stubbed,
    # then given random weights.
    from keras.src.applications import efficientnet as keras_efficientnet
    asked = []

    def keras_imagenet_b0(weights, **kwargs):
        del weights
        return keras.applications.EfficientNetB0(weights="imagenet", **kwargs)

    with pytest.MonkeyPatch.context() as stub:
        stub.setattr(keras_efficientnet.file_utils, "get_file",
                     lambda name, url, **kwargs: asked.append((name, url)) or "unused.h5")
        stub.setattr(keras.Model, "load_weights", lambda self, path, **kwargs: None)
        theirs = keras_model(keras_imagenet_b0, include_top=False, input_shape=SHAPE,
                             pooling="max")
    normalization = theirs.get_layer("normalization")
    rng = np.random.default_rng(3)
    normalization.adapt_mean.assign(rng.normal(0.4, 0.1, 3))
    normalization.adapt_variance.assign(rng.uniform(0.04, 0.09, 3))
    normalization.finalize_state()   # Keras computes with copies made from the variables
    relative = "keras-applications/efficientnetb0_notop.h5"
    assert asked == [("efficientnetb0_notop.h5",
                      "https://storage.googleapis.com/" + relative)]
    md5 = serve_weights(theirs, served, relative)
    set_hash(monkeypatch, (efficientnet, "WEIGHTS_HASHES", "b0", 1), md5)
    mine = applications.EfficientNetB0(weights="imagenet", include_top=False,
                                       input_shape=SHAPE, pooling="max")
    assert mine.name == theirs.name == "efficientnetb0"
    np.testing.assert_allclose(mine.get_layer("normalization").get_weights()[1],
                               np.asarray(normalization.adapt_variance))
    assert_same_model(mine, theirs, pixels())


def test_efficientnet_drop_connect_drops_whole_samples_in_training():
    model = applications.EfficientNetB0(weights=None, include_top=False, input_shape=SHAPE)
    drop = model.get_layer("block2b_drop")
    assert list(drop.noise_shape) == [None, 1, 1, 1]
    assert drop.rate == pytest.approx(0.2 * 2 / 16)   # drop_connect_rate * block / blocks
    x = np.ones((64, 2, 2, 3), "float32")
    y = np.asarray(kilnet.layers.Dropout(0.5, noise_shape=(None, 1, 1, 1))(x, training=True))
    per_sample = y.reshape(64, -1)
    assert set(np.unique(per_sample)) == {0.0, 2.0}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))


# -- ResNet V2 ----------------------------------------------------------------------------------
def test_resnet50v2_imagenet_weights_load_and_predict_as_keras(served, monkeypatch):
    theirs = keras_model(keras.applications.ResNet50V2, include_top=False, input_shape=SHAPE,
                         pooling="avg")
    relative = f"{KERAS_FOLDER}/resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    md5 = serve_weights(theirs, served, relative)
    set_hash(monkeypatch, (resnet_v2, "WEIGHTS_HASHES", "resnet50v2", 1), md5)
    mine = applications.ResNet50V2(weights="imagenet", include_top=False, input_shape=SHAPE,
                                   pooling="avg")
    assert mine.name == theirs.name == "resnet50v2"
    assert_same_model(mine, theirs, images(SHAPE))


def test_deeper_resnet_v2_stacks_keras_block_layout():
    # Building Keras's 101/152-layer models takes a minute here: the stage that differs is
    # checked instead, against Keras's own stack function at a small width.
    from keras.src.applications import resnet as keras_resnet
    keras.backend.clear_session()
    keras_input = keras.Input(shape=(8, 8, 16))
    theirs = keras.Model(keras_input, keras_resnet.stack_residual_blocks_v2(
        keras_input, 4, 5, name="conv4"))
    kilnet_input = kilnet.Input(shape=(8, 8, 16))
    mine = kilnet.Model(kilnet_input, resnet_v2.stack_residual_blocks_v2(
        kilnet_input, 4, 5, name="conv4"))
    mine.set_weights([np.random.default_rng(i).uniform(0.5, 1.5, w.shape)
                      for i, w in enumerate(theirs.get_weights())])
    theirs.set_weights(mine.get_weights())
    assert_same_model(mine, theirs, np.random.default_rng(0).normal(size=(2, 8, 8, 16)))
    assert [len(resnet_v2.STAGES[f"resnet{d}v2"]) for d in (50, 101, 152)] == [4, 4, 4]
    model = applications.ResNet101V2(weights=None, include_top=False, input_shape=SHAPE)
    assert model.get_layer("conv4_block23_out") and model.name == "resnet101v2"


# -- preprocessing ------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["mobilenet_v3", "efficientnet", "resnet_v2"])
def test_family_preprocess_input_equals_keras(module):
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 3, 3)).astype("float32")
    mine = getattr(applications, module).preprocess_input(x.copy())
    theirs = getattr(keras.applications, module).preprocess_input(x.copy())
    np.testing.assert_allclose(mine, theirs, rtol=1e-6)


def test_per_channel_rescaling_equals_keras(tmp_path):
    x = np.random.default_rng(2).uniform(0, 255, (2, 3, 3, 3)).astype("float32")
    arguments = dict(scale=[0.5, 2.0, 1.0 / 3.0], offset=[0.0, -1.0, 0.25])
    mine = kilnet.layers.Rescaling(**arguments)
    theirs = keras.layers.Rescaling(**arguments)
    np.testing.assert_allclose(np.asarray(mine(x)), np.asarray(theirs(x)), rtol=1e-6)
    assert mine.get_config()["scale"] == theirs.get_config()["scale"]
    # in a .keras file, both ways
    inputs = kilnet.Input(shape=(3, 3, 3))
    model = kilnet.Model(inputs, kilnet.layers.Rescaling(**arguments)(inputs))
    model.save(tmp_path / "mine.keras")
    loaded = keras.saving.load_model(tmp_path / "mine.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    loaded.save(tmp_path / "theirs.keras")
    back = kilnet.saving.load_model(tmp_path / "theirs.keras")
    assert back.layers[1].scale == arguments["scale"]
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"scale must be a number.*Received: scale='big'"):
        kilnet.layers.Rescaling("big")


# -- argument checks ----------------------------------------------------------------------------
@pytest.mark.parametrize("build, kwargs, message", [
    (applications.MobileNetV3Small, dict(weights="imagenet", alpha=0.5),
     r"alpha in \(0.75, 1.0\).*Received: alpha=0.5"),
    (applications.MobileNetV3Large, dict(weights="imagenet", alpha=0.75, minimalistic=True),
     r"alpha in \(1.0,\).*Received: alpha=0.75"),
    (applications.MobileNetV3Small, dict(weights=None, input_shape=(16, 16, 3)),
     r"at least 32x32.*Received: input_shape=\(16, 16, 3\)"),
    (applications.MobileNetV3Small, dict(weights="imagenet", input_shape=(224, 224, 1)),
     r"3-channel.*Received: input_shape=\(224, 224, 1\)"),
    (applications.MobileNetV3Large, dict(weights=None, input_shape=(32, 32, 3),
                                         input_tensor=kilnet.Input(shape=(40, 40, 3))),
     r"input_shape must equal the shape of input_tensor.*Received: input_shape"),
    (applications.MobileNetV3Small, dict(weights="imagenet", classes=10),
     r"classes must be 1000.*Received: classes=10"),
    (applications.MobileNetV3Small, dict(weights=None, include_top=False,
                                         input_shape=SHAPE, pooling="sum"),
     r"Received: pooling='sum'"),
    (applications.EfficientNetB0, dict(weights="imagenet", input_shape=(64, 64, 3)),
     r"input_shape must be \(224, 224, 3\).*Received: input_shape=\(64, 64, 3\)"),
    (applications.EfficientNetB3, dict(weights="imagenet", input_shape=(64, 64, 3)),
     r"input_shape must be \(300, 300, 3\)"),
    (applications.EfficientNetB0, dict(weights="imagenet", classifier_activation="relu",
                                       input_shape=(224, 224, 3)),
     r"'softmax' or None.*Received: classifier_activation='relu'"),
    (lambda **kw: efficientnet.EfficientNet(1.0, 1.0, 224, **kw),
     dict(weights="imagenet", include_top=False, input_shape=SHAPE),
     r"weights_name in .*Received: weights_name=None"),
    (lambda **kw: efficientnet.EfficientNet(
        1.0, 1.0, 224, blocks_args=[{**efficientnet.DEFAULT_BLOCKS_ARGS[0], "repeats": 0}],
        **kw),
     dict(weights=None, include_top=False, input_shape=SHAPE), r"Received: repeats=0"),
    (applications.ResNet50V2, dict(weights="no/such/file.h5"),
     r"Received: weights='no/such/file.h5'"),
    (applications.ResNet152V2, dict(weights="imagenet", input_shape=(64, 64, 3)),
     r"input_shape must be \(224, 224, 3\).*Received: input_shape=\(64, 64, 3\)"),
])
def test_bad_arguments_are_refused_clearly(build, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_mobilenet_v3_default_shape_and_input_tensor():
    # Keras leaves the size open; kilnet builds the classifier model for 224x224 images.
    model = applications.MobileNetV3Small(weights=None, alpha=0.75, minimalistic=True)
    assert model.input_shape == (None, 224, 224, 3) and model.output.shape == (None, 1000)
    image = kilnet.Input(shape=(48, 48, 3))
    adopted = applications.MobileNetV3Small(weights=None, input_tensor=image,
                                            include_top=False, minimalistic=True)
    assert adopted.inputs[0] is image and adopted.output.shape == (None, 2, 2, 576)
