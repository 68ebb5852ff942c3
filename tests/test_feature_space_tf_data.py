"""kilnet.utils.FeatureSpace called inside a tf.data pipeline's map, in a tf.function and on
eager TensorFlow tensors: keras.io's structured_data_classification_with_feature_space
(`feature_space.adapt(train_ds.map(lambda x, _: x))`, then
`train_ds.map(lambda x, y: (feature_space(x), y), num_parallel_calls=tf.data.AUTOTUNE)`).

Keras's FeatureSpace switches to TensorFlow ops there; kilnet's runs on the host through one
tf.numpy_function node. Outputs (values, static shapes, dtypes) are compared with Keras's
FeatureSpace adapted on the same dataset and mapped the same way (JAX backend).

TensorFlow is a test dependency (the `test` extras): these tests need it.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
import kilnet

N = 90   # batches of 16 with a short last one


def _table(n=N, seed=0):
    """keras.io's heart-disease columns (a few of them), with a label; one category is not
    ASCII, so that strings reach the space as UTF-8 bytes."""
    rng = np.random.default_rng(seed)
    features = {
        "age": rng.normal(55.0, 9.0, n).round().astype("float32"),
        "chol": rng.normal(240.0, 50.0, n).astype("float32"),
        "sex": rng.integers(0, 2, n),
        "ca": rng.integers(0, 4, n),
        "thal": rng.choice(["normal", "fixed", "réversible"], n, p=[0.5, 0.3, 0.2]),
    }
    labels = ((features["thal"] == "réversible") | (features["ca"] > 2)).astype("int64")
    return features, labels


def _space(lib, output_mode):
    """The same space from `lib` (keras or kilnet): each feature kind the tutorial uses."""
    space_class = lib.utils.FeatureSpace
    return space_class(
        features={"age": "float_discretized", "chol": "float_normalized",
                  "sex": "integer_categorical", "ca": "integer_categorical",
                  "thal": "string_categorical"},
        crosses=[space_class.cross(("sex", "age"), crossing_dim=16),
                 space_class.cross(("thal", "ca"), crossing_dim=8)],
        num_discretization_bins=6, output_mode=output_mode)


def _train_ds(batch_size=16):
    features, labels = _table()
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    return dataset.batch(batch_size) if batch_size else dataset


def _adapted_and_mapped(lib, output_mode, batch_size=16):
    """(space, the mapped dataset): keras.io's adapt and map, with `lib`'s FeatureSpace."""
    space = _space(lib, output_mode)
    train_ds = _train_ds(batch_size)
    space.adapt(train_ds.map(lambda x, _: x))
    mapped = train_ds.map(lambda x, y: (space(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return space, mapped


def _as_numpy(batch):
    return {key: value.numpy() for key, value in batch.items()} if isinstance(batch, dict) \
        else batch.numpy()


def _assert_same_batches(ours, theirs):
    our_batches = [_as_numpy(x) for x, _ in ours]
    their_batches = [_as_numpy(x) for x, _ in theirs]
    assert len(our_batches) == len(their_batches)
    for our_batch, their_batch in zip(our_batches, their_batches):
        if isinstance(their_batch, dict):
            assert list(our_batch) == list(their_batch)
            for key in their_batch:
                np.testing.assert_allclose(our_batch[key], their_batch[key], atol=1e-5,
                                           err_msg=key)
        else:
            np.testing.assert_allclose(our_batch, their_batch, atol=1e-5)


@pytest.mark.parametrize("output_mode", ["concat", "dict"])
def test_a_feature_space_in_a_tf_data_map_gives_keras_numbers_and_shapes(output_mode):
    _, ours = _adapted_and_mapped(kilnet, output_mode)
    _, theirs = _adapted_and_mapped(keras, output_mode)
    assert ours.element_spec == theirs.element_spec
    _assert_same_batches(ours, theirs)


@pytest.mark.parametrize("output_mode", ["concat", "dict"])
def test_a_feature_space_mapped_over_single_samples_gives_keras_shapes(output_mode):
    """Unbatched elements (a dict of scalars): the output has no batch axis, as Keras's."""
    _, ours = _adapted_and_mapped(kilnet, output_mode, batch_size=None)
    _, theirs = _adapted_and_mapped(keras, output_mode, batch_size=None)
    assert ours.element_spec == theirs.element_spec
    _assert_same_batches(ours.take(20), theirs.take(20))


def test_a_fixed_batch_size_is_kept_in_the_static_shape():
    space, _ = _adapted_and_mapped(kilnet, "concat")
    mapped = _train_ds().rebatch(15, drop_remainder=True).map(lambda x, y: space(x))
    assert mapped.element_spec.shape.as_list() == [15, space(_table()[0]).shape[1]]


def test_a_feature_space_in_a_tf_function_and_on_eager_tensors():
    space, _ = _adapted_and_mapped(kilnet, "dict")
    features, _ = _table(10, seed=1)
    expected = space(features)
    in_graph = tf.function(space)({key: tf.constant(v) for key, v in features.items()})
    eager = space({key: tf.constant(v) for key, v in features.items()})
    for key, value in expected.items():
        np.testing.assert_array_equal(in_graph[key].numpy(), value, err_msg=key)
        np.testing.assert_array_equal(eager[key], value, err_msg=key)


def test_ragged_columns_in_a_map_are_refused_naming_the_feature():
    space, _ = _adapted_and_mapped(kilnet, "concat")
    features, _ = _table(4)
    ragged = {**features, "thal": tf.RaggedTensor.from_row_lengths(features["thal"],
                                                                   [1, 1, 1, 1])}
    with pytest.raises(TypeError, match=r"RaggedTensor 'thal'.*to_tensor"):
        tf.function(space)(ragged)


def test_fit_on_a_dataset_mapped_through_the_feature_space():
    """keras.io's tutorial: train `Model(encoded_features, predictions)` on the mapped
    dataset, then predict on raw features with `Model(feature_space.get_inputs(), ...)`."""
    space, preprocessed_train_ds = _adapted_and_mapped(kilnet, "concat")
    preprocessed_train_ds = preprocessed_train_ds.prefetch(tf.data.AUTOTUNE)
    encoded_features = space.get_encoded_features()
    hidden = kilnet.layers.Dense(16, activation="relu")(encoded_features)
    hidden = kilnet.layers.Dropout(0.5)(hidden)
    predictions = kilnet.layers.Dense(1, activation="sigmoid")(hidden)
    training_model = kilnet.Model(encoded_features, predictions)
    training_model.compile(optimizer="adam", loss="binary_crossentropy",
                           metrics=["accuracy"])
    history = training_model.fit(preprocessed_train_ds, epochs=4,
                                 validation_data=preprocessed_train_ds, verbose=0)
    assert np.all(np.isfinite(history.history["val_loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    inference_model = kilnet.Model(space.get_inputs(), predictions)
    features, _ = _table()
    np.testing.assert_allclose(
        inference_model.predict(features, verbose=0),
        training_model.predict(preprocessed_train_ds, verbose=0), rtol=1e-5, atol=1e-6)
