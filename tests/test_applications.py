"""kilnet.applications against Keras 3.15's own builders: each family at a small size, Keras's
model (random weights, batch-norm statistics randomised so that their order matters) written
in the legacy weights layout Keras's application files have, served from a local HTTP server
that KILNET_APPLICATIONS_ORIGIN points kilnet at, loaded with weights="imagenet": the same
layer names, weight shapes and predictions. Also preprocess_input per mode,
decode_predictions, a transfer-learning fit, and the argument checks."""

import json
import os

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference models are Keras's")
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

import kilnet  # noqa: E402
from kilnet import applications  # noqa: E402
from kilnet.applications import imagenet_utils  # noqa: E402
from kilnet.errors import ModelFileError  # noqa: E402
from tests._applications_reference import (KERAS_FOLDER, assert_same_model,  # noqa: E402
                                           images, keras_model, md5, serve_weights, set_hash)
from tests._applications_reference import served, www  # noqa: E402,F401  (fixtures)

# (kilnet builder, Keras builder, arguments, weights file of the no-top model, hash constant)
NO_TOP_FAMILIES = {
    "MobileNetV2": (applications.MobileNetV2, "MobileNetV2",
                    dict(alpha=0.35, input_shape=(96, 96, 3), pooling="avg"),
                    "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top"
                    ".h5", None),
    "VGG16": (applications.VGG16, "VGG16", dict(input_shape=(32, 32, 3), pooling="max"),
              "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
              (applications.vgg16, "WEIGHTS_HASHES", 1)),
    "VGG19": (applications.VGG19, "VGG19", dict(input_shape=(32, 32, 3)),
              "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
              (applications.vgg19, "WEIGHTS_HASHES", 1)),
    "MobileNet": (applications.MobileNet, "MobileNet",
                  dict(alpha=0.25, input_shape=(128, 128, 3), pooling="max"),
                  "mobilenet/mobilenet_2_5_128_tf_no_top.h5", None),
    "InceptionV3": (applications.InceptionV3, "InceptionV3", dict(input_shape=(75, 75, 3)),
                    "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    (applications.inception_v3, "WEIGHTS_HASHES", 1)),
    "Xception": (applications.Xception, "Xception", dict(input_shape=(71, 71, 3),
                                                         pooling="avg"),
                 "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 (applications.xception, "WEIGHTS_HASHES", 1)),
}


@pytest.mark.parametrize("family", list(NO_TOP_FAMILIES))
def test_imagenet_weights_without_top_load_and_predict_as_keras(family, served, monkeypatch):
    build, keras_name, kwargs, relative, hash_at = NO_TOP_FAMILIES[family]
    theirs = keras_model(getattr(keras.applications, keras_name), include_top=False, **kwargs)
    md5 = serve_weights(theirs, served, f"{KERAS_FOLDER}/{relative}")
    set_hash(monkeypatch, hash_at, md5)
    mine = build(weights="imagenet", include_top=False, **kwargs)
    assert mine.name == theirs.name
    assert_same_model(mine, theirs, images(kwargs["input_shape"]))


def test_resnet50_with_classifier_from_a_keras_file_path(tmp_path):
    theirs = keras_model(keras.applications.ResNet50, include_top=True,
                          input_shape=(32, 32, 3), classes=7)
    with h5py.File(tmp_path / "resnet.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, theirs)
    mine = applications.ResNet50(weights=str(tmp_path / "resnet.h5"), input_shape=(32, 32, 3),
                                 classes=7)
    assert_same_model(mine, theirs, images((32, 32, 3)))
    # The file is Keras's own to read too: the same layout both ways.
    again = keras.applications.ResNet50(weights=str(tmp_path / "resnet.h5"),
                                        input_shape=(32, 32, 3), classes=7)
    np.testing.assert_array_equal(again.get_weights()[-1], mine.get_weights()[-1])


def test_a_small_densenet_from_a_keras_file_path(tmp_path):
    from keras.src.applications.densenet import DenseNet as KerasDenseNet

    def small(**kwargs):   # Keras's DenseNet(blocks, ...), shallow to stay fast
        return KerasDenseNet([1, 2, 1, 1], input_shape=(32, 32, 3), classes=4, **kwargs)

    theirs = keras_model(small)
    with h5py.File(tmp_path / "densenet.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, theirs)
    mine = applications.densenet.DenseNet([1, 2, 1, 1], input_shape=(32, 32, 3), classes=4,
                                          weights=str(tmp_path / "densenet.h5"))
    assert_same_model(mine, theirs, images((32, 32, 3)))


def test_densenet121_imagenet_weights_use_keras_file_name(served, monkeypatch):
    donor = applications.DenseNet121(weights=None, include_top=False, input_shape=(32, 32, 3))
    relative = (f"{KERAS_FOLDER}/densenet/"
                "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5")
    (served / relative).parent.mkdir(parents=True, exist_ok=True)
    _write_keras2_weights(donor, served / relative)
    set_hash(monkeypatch, (applications.densenet, "WEIGHTS_HASHES", "densenet121", 1),
              md5(served / relative))
    mine = applications.DenseNet121(weights="imagenet", include_top=False,
                                    input_shape=(32, 32, 3))
    for got, want in zip(mine.get_weights(), donor.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_mobilenet_with_classifier_from_a_keras_file_path(tmp_path):
    theirs = keras_model(keras.applications.MobileNet, alpha=0.25, input_shape=(32, 32, 3),
                          classes=5)
    with h5py.File(tmp_path / "mobilenet.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, theirs)
    mine = applications.MobileNet(alpha=0.25, input_shape=(32, 32, 3), classes=5,
                                  weights=str(tmp_path / "mobilenet.h5"))
    assert [layer.name for layer in mine.layers] == [layer.name for layer in theirs.layers]
    x = images((32, 32, 3))
    np.testing.assert_allclose(mine.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-6)


def _write_keras2_weights(model, path):
    """A Keras 2 `save_weights` file by hand: weight names "<layer>/<weight>:0"."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        f.attrs["keras_version"] = b"2.2.4"
        values = iter(model.get_weights())
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name.split('/')[-1]}:0".encode() for w in layer.weights]
            group.attrs["weight_names"] = names
            for name in names:
                group[name.decode()] = next(values)


def test_imagenet_classifier_weights_use_keras_file_name_at_224(served, monkeypatch):
    donor = applications.MobileNetV2(alpha=0.35, weights=None)   # (224, 224, 3), 1000 classes
    relative = (f"{KERAS_FOLDER}/mobilenet_v2/"
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224.h5")
    (served / relative).parent.mkdir(parents=True, exist_ok=True)
    _write_keras2_weights(donor, served / relative)
    mine = applications.MobileNetV2(alpha=0.35, weights="imagenet")
    for got, want in zip(mine.get_weights(), donor.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert mine.name == "mobilenetv2_0.35_224"


def test_a_file_that_fails_keras_hash_is_refused(served):
    relative = f"{KERAS_FOLDER}/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    (served / relative).parent.mkdir(parents=True, exist_ok=True)
    (served / relative).write_bytes(b"not the published file")
    with pytest.raises(ValueError, match="file_hash"):
        applications.VGG19(weights="imagenet", include_top=False, input_shape=(32, 32, 3))


def test_weights_of_another_architecture_are_refused_clearly(tmp_path):
    small = applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    _write_keras2_weights(small, tmp_path / "vgg16.h5")
    with pytest.raises(ModelFileError, match="13 layers.*16 layers with weights"):
        applications.VGG19(weights=str(tmp_path / "vgg16.h5"), include_top=False,
                           input_shape=(32, 32, 3))


# -- preprocessing and decoding ----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_preprocess_input_equals_keras(mode):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 4, 5, 3)).astype("float32")
    want = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode=mode)
    np.testing.assert_allclose(imagenet_utils.preprocess_input(images.copy(), mode=mode), want,
                               rtol=1e-6)
    # integers are converted; a single image (3-D) and channels-first arrays work too
    ints = images.astype("uint8")
    np.testing.assert_allclose(
        imagenet_utils.preprocess_input(ints, mode=mode),
        keras.applications.imagenet_utils.preprocess_input(ints, mode=mode), rtol=1e-6)
    first = np.moveaxis(images[0], -1, 0).copy()
    np.testing.assert_allclose(
        imagenet_utils.preprocess_input(first.copy(), "channels_first", mode),
        keras.applications.imagenet_utils.preprocess_input(first.copy(), "channels_first",
                                                           mode), rtol=1e-6)
    # tensors: eager (a JAX array) and symbolic (inside a functional model)
    import jax.numpy as jnp
    np.testing.assert_allclose(imagenet_utils.preprocess_input(jnp.asarray(images), mode=mode),
                               want, rtol=1e-5, atol=1e-5)
    inputs = kilnet.Input(shape=(4, 5, 3))
    model = kilnet.Model(inputs, imagenet_utils.preprocess_input(inputs, mode=mode))
    np.testing.assert_allclose(model.predict(images, verbose=0), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("module", ["mobilenet_v2", "resnet", "vgg16", "vgg19", "xception",
                                    "mobilenet", "densenet", "inception_v3"])
def test_family_preprocess_input_equals_keras(module):
    images = np.random.default_rng(1).uniform(0, 255, (1, 3, 3, 3)).astype("float32")
    mine = getattr(applications, module).preprocess_input(images.copy())
    theirs = getattr(keras.applications, module).preprocess_input(images.copy())
    np.testing.assert_allclose(mine, theirs, rtol=1e-6)


def test_decode_predictions_reads_the_served_class_index(served, monkeypatch):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    path = served / "download.tensorflow.org/data/imagenet_class_index.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(index))
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX_HASH", md5(path))
    monkeypatch.setattr(keras.src.applications.imagenet_utils, "CLASS_INDEX", index)
    preds = np.random.default_rng(0).random((3, 1000)).astype("float32")
    mine = applications.vgg16.decode_predictions(preds, top=4)
    theirs = keras.applications.vgg16.decode_predictions(preds, top=4)
    assert mine == theirs
    assert [entry[1] for entry in mine[0]] == [f"class_{i}" for i in
                                              np.argsort(preds[0])[::-1][:4]]


# -- transfer learning -------------------------------------------------------------------------
def test_transfer_learning_keeps_the_frozen_base(served):
    donor = applications.MobileNetV2(alpha=0.35, include_top=False, weights=None,
                                     input_shape=(96, 96, 3))
    relative = (f"{KERAS_FOLDER}/mobilenet_v2/"
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5")
    (served / relative).parent.mkdir(parents=True, exist_ok=True)
    _write_keras2_weights(donor, served / relative)
    base = applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False,
                                    weights="imagenet")
    base.trainable = False
    inputs = kilnet.Input(shape=(96, 96, 3))
    x = applications.mobilenet_v2.preprocess_input(inputs)
    x = base(x, training=False)
    x = kilnet.layers.GlobalAveragePooling2D()(x)
    outputs = kilnet.layers.Dense(2)(x)
    model = kilnet.Model(inputs, outputs)
    model.compile(optimizer="adam",
                  loss=kilnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in base.get_weights()]
    head = model.layers[-1].get_weights()[0].copy()
    images = np.random.default_rng(0).uniform(0, 255, (8, 96, 96, 3)).astype("float32")
    model.fit(images, np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)
    for got, want in zip(base.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(base.get_weights(), donor.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(model.layers[-1].get_weights()[0], head)


# -- argument checks ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(weights="imagenet", classes=10), r"classes must be 1000.*Received: classes=10"),
    (dict(weights=None, include_top=False, input_shape=(16, 16, 3)),
     r"at least 32x32.*Received: input_shape=\(16, 16, 3\)"),
    (dict(weights="imagenet", input_shape=(100, 100, 3)),   # 96 would be a published size
     r"input_shape must be \(224, 224, 3\).*Received: input_shape=\(100, 100, 3\)"),
    (dict(weights="imagenet", include_top=False, input_shape=(96, 96, 1)),
     r"3-channel.*Received: input_shape=\(96, 96, 1\)"),
    (dict(weights="no/such/file.h5"), r"Received: weights='no/such/file.h5'"),
    (dict(weights=None, include_top=False, pooling="sum"), r"Received: pooling='sum'"),
    (dict(weights="imagenet", alpha=0.2), r"alpha in .*Received: alpha=0.2"),
    (dict(weights="imagenet", classifier_activation="relu"),
     r"'softmax' or None.*Received: classifier_activation='relu'"),
    (dict(weights=None, input_tensor=np.zeros((1, 32, 32, 3))),
     r"symbolic tensor.*Received: input_tensor of type ndarray"),
])
def test_bad_arguments_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        applications.MobileNetV2(**kwargs)


def test_input_tensor_is_adopted():
    images = kilnet.Input(shape=(71, 71, 3))
    model = applications.Xception(input_tensor=images, weights=None, include_top=False)
    assert model.inputs[0] is images and model.output.shape == (None, 3, 3, 2048)


@pytest.mark.parametrize("family, kwargs", [
    ("MobileNetV2", dict(alpha=0.35)), ("MobileNetV3Small", dict(alpha=0.75))])
def test_images_of_any_size_without_the_classifier_as_keras(family, kwargs):
    """Keras's default without the classifier is input_shape=(None, None, 3): one model for
    every image size."""
    theirs = keras_model(getattr(keras.applications, family), include_top=False,
                         pooling="avg", **kwargs)
    mine = getattr(applications, family)(weights=None, include_top=False, pooling="avg",
                                         **kwargs)
    assert mine.input_shape == theirs.input_shape == (None, None, None, 3)
    mine.set_weights([w.numpy() for w in theirs.weights])
    for size in ((64, 96, 3), (72, 72, 3)):
        x = images(size)
        np.testing.assert_allclose(mine.predict(x, verbose=0), theirs.predict(x, verbose=0),
                                   rtol=1e-4, atol=1e-5)


def test_nasnet_needs_the_image_size():
    with pytest.raises(ValueError, match=r"NASNet needs the image size.*Received: input_shape"):
        applications.NASNetMobile(weights=None, include_top=False, input_shape=(None, None, 3))


def test_every_keras_application_module_imports_by_its_keras_name():
    """`from keras.applications.resnet50 import preprocess_input` with only the import
    changed: each module of keras.applications is a module of kilnet.applications."""
    import importlib
    import types

    keras_apps = pytest.importorskip("keras").applications
    names = [name for name in dir(keras_apps)
             if isinstance(getattr(keras_apps, name), types.ModuleType)]
    assert "resnet50" in names
    for name in names:
        module = importlib.import_module(f"kilnet.applications.{name}")
        if hasattr(getattr(keras_apps, name), "preprocess_input"):
            assert callable(module.preprocess_input), name
