"""A Sequential of image preprocessing layers called on one unbatched (height, width,
channels) image, as a tf.data map before `.batch` calls it (keras.io's
temporal_latent_bottleneck maps its augmentation Sequential over single images): the chain
takes it as Keras's image layers take one image and returns one image. Compared with Keras's
eager call on the same image."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import kilnet

IMAGE = np.random.default_rng(0).uniform(0, 255, (32, 24, 3)).astype("float32")
IMAGES = np.random.default_rng(1).uniform(0, 255, (5, 32, 24, 3)).astype("float32")


def _chains(lib):
    """(name, chain) built the same way from `lib` (keras or kilnet), no Input declared."""
    layers = lib.layers
    return [
        ("rescale_resize", lib.Sequential([layers.Rescaling(1 / 255.0),
                                           layers.Resizing(16, 16)])),
        ("center_crop", lib.Sequential([layers.CenterCrop(20, 12)])),
        ("resize_flip_inference", lib.Sequential([layers.Resizing(16, 8),
                                                  layers.RandomFlip("horizontal", seed=3)])),
        ("nested", lib.Sequential([lib.Sequential([layers.Rescaling(0.5)]),
                                   layers.Resizing(8, 8)])),
    ]


@pytest.mark.parametrize("index", range(4), ids=[name for name, _ in _chains(kilnet)])
def test_a_chain_of_image_layers_takes_one_image_as_keras(index):
    keras.backend.clear_session()
    _, theirs = _chains(keras)[index]
    _, ours = _chains(kilnet)[index]
    expected = np.asarray(theirs(IMAGE, training=False))
    got = np.asarray(ours(IMAGE, training=False))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_a_random_flip_chain_flips_one_image_as_a_whole():
    """A training-mode flip of one image: the draws are kilnet's own, so the image comes back
    either unchanged or mirrored, at Keras's shape."""
    chain = kilnet.Sequential([kilnet.layers.RandomFlip("horizontal", seed=5)])
    flipped = [np.asarray(chain(IMAGE, training=True)) for _ in range(6)]
    assert all(f.shape == IMAGE.shape for f in flipped)
    assert all(np.array_equal(f, IMAGE) or np.array_equal(f, IMAGE[:, ::-1]) for f in flipped)


def test_a_chain_first_called_on_one_image_then_takes_batches():
    chain = kilnet.Sequential([kilnet.layers.Rescaling(0.5), kilnet.layers.Resizing(16, 16)])
    one = np.asarray(chain(IMAGE))
    batch = np.asarray(chain(IMAGES))
    assert one.shape == (16, 16, 3) and batch.shape == (5, 16, 16, 3)
    np.testing.assert_allclose(one, np.asarray(chain(IMAGE[None]))[0], rtol=1e-6)


def test_the_output_shape_of_one_image_is_one_image():
    chain = kilnet.Sequential([kilnet.layers.Rescaling(0.5), kilnet.layers.CenterCrop(8, 4)])
    assert chain.compute_output_shape((32, 24, 3)) == (8, 4, 3)


def test_a_chain_starting_with_another_layer_keeps_axis_zero_as_the_batch():
    """Only a chain whose first shape-bound layer is an image layer takes one image: a Dense
    chain called on a rank-3 array keeps it as a batch of sequences."""
    chain = kilnet.Sequential([kilnet.layers.Dense(2)])
    assert chain(IMAGE).shape == (32, 24, 2)
    assert not chain.is_one_image(IMAGE)


def test_an_augmentation_chain_mapped_over_single_images_before_batch():
    """keras.io's `ds.map(train_map_fn).batch(...)` with the augmentation Sequential in the map."""
    layers = kilnet.layers
    augment = kilnet.Sequential([layers.Rescaling(1 / 255.0), layers.Resizing(16, 16),
                                 layers.RandomCrop(12, 12, seed=1),
                                 layers.RandomFlip("horizontal", seed=2)])
    dataset = (tf.data.Dataset.from_tensor_slices((IMAGES, np.arange(5)))
               .map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
               .batch(2))
    assert dataset.element_spec[0].shape.as_list() == [None, 12, 12, 3]
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert [x.shape for x, _ in batches] == [(2, 12, 12, 3), (2, 12, 12, 3), (1, 12, 12, 3)]
    assert all(0.0 <= x.min() and x.max() <= 1.0 for x, _ in batches)


def test_a_chain_in_a_map_before_batch_gives_its_eager_numbers():
    chain = kilnet.Sequential([kilnet.layers.Rescaling(1 / 255.0), kilnet.layers.Resizing(8, 6)])
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES).map(chain).batch(5)
    assert dataset.element_spec.shape.as_list() == [None, 8, 6, 3]
    np.testing.assert_allclose(next(iter(dataset)).numpy(), np.asarray(chain(IMAGES)),
                               rtol=1e-6, atol=1e-6)

