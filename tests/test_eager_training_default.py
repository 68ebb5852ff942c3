"""A model called on arrays without `training` leaves each layer its own default, as Keras
resolves training=None: augmentation layers augment (keras.io's `data_augmentation(images)`
Sequential), Dropout and BatchNormalization infer; predict() and training=False turn the
augmentation off, training=True turns everything on."""

from __future__ import annotations

import numpy as np

import kilnet
from kilnet import layers

IMAGES = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype(np.float32)


def augment_then_regularize():
    inputs = kilnet.Input((16, 16, 3))
    x = layers.RandomFlip("horizontal")(inputs)
    x = layers.BatchNormalization()(x)
    return kilnet.Model(inputs, layers.Dropout(0.9)(x))


def test_an_eager_call_without_training_augments_and_infers():
    kilnet.utils.set_random_seed(0)
    model = augment_then_regularize()
    flipped = IMAGES[:, :, ::-1]
    out = np.asarray(model(IMAGES))
    batch_norm = model.layers[2]
    # inference BatchNorm with its starting statistics (mean 0, variance 1) and no dropout:
    # each image comes out as itself or its mirror image, scaled by 1/sqrt(1 + epsilon)
    scale = 1 / np.sqrt(1 + batch_norm.epsilon)
    same = [np.allclose(o, i * scale, rtol=1e-5) for o, i in zip(out, IMAGES)]
    mirrored = [np.allclose(o, f * scale, rtol=1e-5) for o, f in zip(out, flipped)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert any(mirrored) and any(same)   # some flipped (8 images, each with p = 1/2)
    np.testing.assert_array_equal(batch_norm.moving_mean.numpy(), 0.0)   # not updated


def test_training_false_and_predict_do_not_augment_and_training_true_does_everything():
    model = augment_then_regularize()
    scale = 1 / np.sqrt(1 + model.layers[2].epsilon)
    np.testing.assert_allclose(np.asarray(model(IMAGES, training=False)), IMAGES * scale,
                               rtol=1e-5)
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), IMAGES * scale, rtol=1e-5)
    trained = np.asarray(model(IMAGES, training=True))
    assert (trained == 0).mean() > 0.8   # Dropout(0.9) active


def test_a_sequential_of_augmentation_layers_augments_when_called():
    kilnet.utils.set_random_seed(1)
    augmentation = kilnet.Sequential([layers.RandomFlip("horizontal"),
                                      layers.RandomRotation(0.1)])
    assert not np.allclose(np.asarray(augmentation(IMAGES)), IMAGES)
    np.testing.assert_array_equal(np.asarray(augmentation(IMAGES, training=False)), IMAGES)
