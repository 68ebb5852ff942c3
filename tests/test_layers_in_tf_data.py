"""kilnet's layers called inside a tf.data pipeline's map (keras.io's
`ds.map(lambda x, y: (data_augmentation(x), y))` and
`raw_train_ds.map(vectorize_text)`), in a tf.function, and on eager TensorFlow tensors.

Keras's preprocessing layers switch to TensorFlow ops there; kilnet runs its own computation
on the host through tf.numpy_function. The numbers and static shapes are compared with
Keras's own layers in the same map (on the JAX backend). Integer ids are int32, kilnet's
dtype on every path (Keras's TensorFlow ops give int64 there).

TensorFlow is a test dependency (the `test` extras): these tests need it.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
import kilnet
from kilnet import layers

TEXTS = np.array(["the cat sat", "a dog ran far away", "the dog", "cat cat", "Far away!",
                  "unknown words"])
IMAGES = np.random.default_rng(0).integers(0, 256, (6, 16, 12, 3)).astype("float32")


def _mapped(layer, data, batch_size=2):
    """(element_spec, the batches as NumPy) of `data` batched and mapped through `layer`."""
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(batch_size).map(layer)
    return dataset.element_spec, [batch.numpy() for batch in dataset]


def _parity_cases(lib):
    """(name, layer, data) built the same way from `lib` (keras or kilnet)."""
    text_vectorization = lib.layers.TextVectorization(max_tokens=20, output_sequence_length=5)
    text_vectorization.adapt(TEXTS)
    ragged_length = lib.layers.TextVectorization(max_tokens=20)
    ragged_length.adapt(TEXTS)
    normalization = lib.layers.Normalization(mean=[10.0, 100.0, 200.0],
                                             variance=[4.0, 25.0, 100.0])
    normalization.build((None, 16, 12, 3))   # Keras's fails in a map before it is built
    return [
        ("rescaling", lib.layers.Rescaling(1 / 127.5, offset=-1.0), IMAGES),
        ("resizing", lib.layers.Resizing(8, 6), IMAGES),
        ("center_crop", lib.layers.CenterCrop(10, 8), IMAGES),
        ("normalization", normalization, IMAGES),
        ("category_encoding", lib.layers.CategoryEncoding(num_tokens=5, output_mode="multi_hot"),
         np.array([[0, 1], [4, 4], [1, 2], [3, 0]])),
        ("hashing", lib.layers.Hashing(num_bins=7), TEXTS.reshape(-1, 1)),
        ("string_lookup", lib.layers.StringLookup(vocabulary=["cat", "dog", "the"]),
         TEXTS.reshape(-1, 1)),
        ("text_vectorization", text_vectorization, TEXTS),
        ("text_vectorization_unpadded", ragged_length, TEXTS),
    ]


@pytest.mark.parametrize("index", range(9), ids=[name for name, _, _ in _parity_cases(keras)])
def test_a_layer_in_a_tf_data_map_gives_keras_numbers_and_shape(index):
    _, theirs, data = _parity_cases(keras)[index]
    _, ours, _ = _parity_cases(kilnet)[index]
    their_spec, their_batches = _mapped(theirs, data)
    our_spec, our_batches = _mapped(ours, data)
    assert our_spec.shape.as_list() == their_spec.shape.as_list()
    if their_spec.dtype.is_floating:
        assert our_spec.dtype == their_spec.dtype
    else:   # ids: kilnet's int32 where Keras's TensorFlow ops give int64
        assert (our_spec.dtype, their_spec.dtype) == (tf.int32, tf.int64)
    for our_batch, their_batch in zip(our_batches, their_batches, strict=True):
        np.testing.assert_allclose(our_batch, their_batch, rtol=1e-5, atol=1e-4)


def test_a_sequential_of_preprocessing_layers_in_a_map_gives_keras_numbers():
    """Keras's own Sequential fails in a map (its call reads the graph tensor with JAX):
    its layers are mapped one after the other instead."""
    ours = kilnet.Sequential([layers.Rescaling(1 / 255.0), layers.Resizing(8, 8)])
    theirs = tf.data.Dataset.from_tensor_slices(IMAGES).batch(4).map(
        keras.layers.Rescaling(1 / 255.0)).map(keras.layers.Resizing(8, 8))
    their_spec, their_batches = theirs.element_spec, [b.numpy() for b in theirs]
    our_spec, our_batches = _mapped(ours, IMAGES, batch_size=4)
    assert our_spec == their_spec
    for our_batch, their_batch in zip(our_batches, their_batches, strict=True):
        np.testing.assert_allclose(our_batch, their_batch, rtol=1e-5, atol=1e-5)


def test_a_functional_model_in_a_map_gives_its_output_shape_and_numbers():
    inputs = kilnet.Input((16, 12, 3))
    model = kilnet.Model(inputs, layers.Resizing(8, 6)(layers.Rescaling(0.5)(inputs)))
    spec, batches = _mapped(model, IMAGES, batch_size=3)
    assert spec.shape.as_list() == [None, 8, 6, 3] and spec.dtype == tf.float32
    np.testing.assert_allclose(np.concatenate(batches), model.predict(IMAGES, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_a_layer_mapped_over_single_images_gives_the_element_shape():
    """keras.io maps Resizing over the images before batching them."""
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES).map(layers.Resizing(8, 6))
    assert dataset.element_spec.shape.as_list() == [8, 6, 3]
    expected = layers.Resizing(8, 6)(IMAGES[:1])[0]
    np.testing.assert_allclose(next(iter(dataset)).numpy(), expected, rtol=1e-6)


def test_strings_reach_the_text_layers_as_bytes_and_give_the_ids_of_str():
    vectorize = layers.TextVectorization(max_tokens=20, output_sequence_length=5)
    vectorize.adapt(TEXTS)
    _, batches = _mapped(vectorize, TEXTS, batch_size=3)
    np.testing.assert_array_equal(np.concatenate(batches), vectorize(TEXTS))


def test_an_inverted_string_lookup_in_a_map_gives_strings():
    invert = layers.StringLookup(vocabulary=["cat", "dög"], invert=True)
    spec, batches = _mapped(invert, np.array([[1], [2], [0]]), batch_size=3)
    assert spec.dtype == tf.string
    assert batches[0].tolist() == [[b"cat"], ["dög".encode()], [b"[UNK]"]]


def test_a_random_layer_in_a_map_augments_as_keras_and_draws_anew_for_each_batch():
    """Keras's augmentation layers augment in a tf.data map (their call's training defaults
    to True); each batch gets its own draw, as from Keras's seed generator."""
    same_image = np.repeat(IMAGES[:1], 8, axis=0)
    for lib in (keras, kilnet):
        rotate = lib.layers.RandomRotation(0.2, seed=3)
        spec, batches = _mapped(rotate, same_image, batch_size=1)
        assert spec.shape.as_list() == [None, 16, 12, 3] and spec.dtype == tf.float32
        assert not any(np.allclose(b, same_image[:1]) for b in batches), lib.__name__
        distinct = {np.round(b, 3).tobytes() for b in batches}
        assert len(distinct) == len(batches), lib.__name__
        assert all(b.min() >= 0 and b.max() <= 255 for b in batches)


def test_a_seeded_random_layer_in_a_map_draws_from_its_seed_generator():
    """As Keras's: two layers of the same seed draw alike in a map, whatever is drawn from
    kilnet's global seed in between, and the layer's SeedGenerator state advances."""
    runs = []
    for _ in range(2):
        rotate = layers.RandomRotation(0.2, seed=7)
        runs.append(_mapped(rotate, IMAGES, batch_size=2)[1])
        layers.GaussianNoise(1.0)(np.ones((2, 2), np.float32), training=True)
        assert rotate.generator.state.numpy().tolist() == [7, 3]   # three batches drawn
    for first, second in zip(*runs, strict=True):
        np.testing.assert_array_equal(first, second)


def test_a_random_layer_in_a_map_with_training_false_passes_images_through():
    flip = layers.RandomFlip("horizontal")
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES).batch(3).map(
        lambda x: flip(x, training=False))
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b in dataset]), IMAGES)


def test_random_crop_in_a_parallel_map_gives_its_window():
    crop = layers.RandomCrop(8, 8)
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES).batch(2).map(
        crop, num_parallel_calls=tf.data.AUTOTUNE)
    assert dataset.element_spec.shape.as_list() == [None, 8, 8, 3]
    assert [b.shape for b in dataset] == [(2, 8, 8, 3)] * 3


def test_a_layer_in_a_tf_function_runs_on_the_host():
    rescale = layers.Rescaling(0.5)
    doubled = tf.function(lambda x: rescale(x) * 2.0)(tf.constant(IMAGES))
    np.testing.assert_allclose(doubled.numpy(), IMAGES)


def test_eager_tensorflow_tensors_are_read_as_numpy():
    np.testing.assert_allclose(layers.Rescaling(0.5)(tf.constant(IMAGES)), IMAGES / 2)
    lookup = layers.StringLookup(vocabulary=["cat", "dog"])
    np.testing.assert_array_equal(lookup(tf.constant([["dog"], ["cow"]])), [[2], [0]])


def test_several_tensorflow_inputs_are_refused_with_the_fix():
    pairs = tf.data.Dataset.from_tensor_slices((IMAGES, IMAGES)).batch(2)
    with pytest.raises(TypeError, match="single dense tf.Tensor.*Call the layer once per"):
        pairs.map(lambda a, b: layers.Add()([a, b]))
    with pytest.raises(TypeError, match="single dense tf.Tensor"):
        pairs.map(lambda a, b: layers.Rescaling(2.0)({"a": a}))


def test_fit_on_images_mapped_through_kilnet_augmentation():
    labels = (IMAGES.mean(axis=(1, 2, 3)) > 127.5).astype("float32")
    augment = kilnet.Sequential([layers.Rescaling(1 / 255.0), layers.RandomFlip("horizontal")])
    dataset = tf.data.Dataset.from_tensor_slices((IMAGES, labels)).batch(3).map(
        lambda x, y: (augment(x), y)).prefetch(2)
    model = kilnet.Sequential([kilnet.Input((16, 12, 3)), layers.Flatten(),
                               layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(dataset, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_fit_on_text_vectorized_in_the_map():
    """keras.io's text_classification_from_scratch: `raw_train_ds.map(vectorize_text)`."""
    vectorize = layers.TextVectorization(max_tokens=20, output_sequence_length=5)
    vectorize.adapt(TEXTS)
    labels = np.array([0, 1, 0, 1, 1, 0], "float32")
    dataset = tf.data.Dataset.from_tensor_slices((TEXTS, labels)).batch(2).map(
        lambda text, label: (vectorize(text), label))
    model = kilnet.Sequential([kilnet.Input((5,), dtype="int32"), layers.Embedding(20, 4),
                               layers.GlobalAveragePooling1D(),
                               layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    before = model.evaluate(dataset, verbose=0)
    model.fit(dataset, epochs=3, verbose=0)
    assert model.evaluate(dataset, verbose=0) < before


def test_a_model_builds_from_a_tensorflow_batch_as_keras():
    """keras.io's distributed-training guide: `one_batch, _ = next(iter(train_data));
    model.build(one_batch)` with a tf.data batch."""
    batch = tf.ones((4, 3))
    for lib in (keras, kilnet):
        inputs = lib.Input((3,))
        functional = lib.Model(inputs, lib.layers.Dense(2, name="dense")(inputs))
        functional.build(batch)
        sequential = lib.Sequential([lib.layers.Dense(2, name="dense")])
        sequential.build(batch.shape)
        assert [tuple(w.shape) for w in functional.weights] == [(3, 2), (2,)]
        assert [tuple(w.shape) for w in sequential.weights] == [(3, 2), (2,)]
    assert kilnet.backend.standardize_dtype(tf.float32) == \
        keras.backend.standardize_dtype(tf.float32) == "float32"
    assert kilnet.backend.standardize_dtype(tf.int64) == "int64"


def test_a_call_inside_a_gradient_tape_is_refused_with_the_jax_form():
    """keras.io's TensorFlow training-loop guide records kilnet's (JAX) computation on a
    tf.GradientTape, which cannot differentiate it: the call says so and shows the JAX step,
    eagerly and in a tf.function; outside a tape the same call runs."""
    model = kilnet.Sequential([kilnet.Input((3,)), layers.Dense(2)])
    batch = tf.constant(np.ones((4, 3), np.float32))
    assert model(batch).shape == (4, 2)
    with tf.GradientTape():
        with pytest.raises(kilnet.errors.InputTypeError,
                           match="(?s)GradientTape.*jax.value_and_grad.*stateless_apply"):
            model(batch, training=True)

    @tf.function
    def step(x):
        with tf.GradientTape():
            return model(x)

    # autograph re-raises a traced function's error as its own StagingError, message kept
    with pytest.raises(Exception, match="(?s)inside a tf.GradientTape.*jax.value_and_grad"):
        step(batch)
