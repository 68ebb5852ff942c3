"""Sources of batches whose shapes change within an epoch: keras.io's ner_transformers pads
each batch to its own longest sentence (tf.data's padded_batch: (32, 29), (32, 28), ...).
Keras 3 on JAX fits, evaluates and validates them, tracing its step again for each shape;
kilnet ends a block where the shape changes and runs each shape with programs of its own.
Keras on JAX, from the same weights, is the reference: same batches, same order, same steps."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.errors import InputError  # noqa: E402

LENGTHS = [7, 5, 9, 5]   # each batch padded to its own length; 5 comes back
ROWS, VOCAB, TAGS = 4, 50, 3


def _batch(index, lengths=LENGTHS, per_token=True, rows=ROWS, seed=0):
    """Batch `index`: token ids padded with 0 after each sentence's own length, and a tag
    per token (per_token) or one class per sentence."""
    rng = np.random.default_rng(seed + index)
    length = lengths[index]
    x = rng.integers(1, VOCAB, (rows, length)).astype("int32")
    for row, used in enumerate(rng.integers(2, length + 1, rows)):
        x[row, used:] = 0
    y = rng.integers(0, TAGS, (rows, length) if per_token else (rows,)).astype("int32")
    return x, y


def _dataset(lib, lengths=LENGTHS, per_token=True, seed=0):
    class Padded(lib.utils.PyDataset):
        def __len__(self):
            return len(lengths)

        def __getitem__(self, index):
            return _batch(index, lengths, per_token, seed=seed)
    return Padded()


def _model(lib, per_token=True):
    """A tagger (ner's shape: masked tokens, a tag per token) or a sentence classifier."""
    inputs = lib.Input((None,), dtype="int32")
    x = lib.layers.Embedding(VOCAB, 8, mask_zero=per_token, name="embed")(inputs)
    if not per_token:
        x = lib.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = lib.layers.Dense(TAGS, activation="softmax", name="tag")(x)
    model = lib.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _twins(per_token=True):
    keras.utils.clear_session()
    reference, ours = _model(keras, per_token), _model(kilnet, per_token)
    ours.set_weights(reference.get_weights())
    return reference, ours


def _assert_same_history(got, expected, per_token=True):
    """Every number of the history; but for a masked output, training's accuracy: Keras's
    JAX train step counts the padding there (its step's outputs lose their mask), where
    evaluate and validation count real tokens only, as kilnet does everywhere."""
    assert got.keys() == expected.keys()
    for name in expected:
        if not (per_token and name == "accuracy"):
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, err_msg=name)


def _assert_same_weights(reference, ours):
    for a, b in zip(reference.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("per_token", [True, False])
def test_fit_and_evaluate_on_batches_of_varying_length_as_keras(per_token):
    reference, ours = _twins(per_token)
    expected = reference.fit(_dataset(keras, per_token=per_token), epochs=2, shuffle=False,
                             verbose=0).history
    got = ours.fit(_dataset(kilnet, per_token=per_token), epochs=2, shuffle=False,
                   verbose=0).history
    _assert_same_history(got, expected, per_token)
    _assert_same_weights(reference, ours)
    assert reference.optimizer.iterations.numpy() == int(ours.optimizer.iterations) == 8
    np.testing.assert_allclose(
        ours.evaluate(_dataset(kilnet, per_token=per_token), verbose=0),
        reference.evaluate(_dataset(keras, per_token=per_token), verbose=0), rtol=1e-5)


def _subclassed_tagger(lib):
    """ner_transformers' shape: a Model subclass whose call adds a term per position
    (ops.arange over the batch's own length)."""
    class Tagger(lib.Model):
        def __init__(self):
            super().__init__()
            self.embed = lib.layers.Embedding(VOCAB, 8, name="embed")
            self.tag = lib.layers.Dense(TAGS, name="tag")

        def call(self, x, training=False):
            positions = lib.ops.cast(lib.ops.arange(lib.ops.shape(x)[-1]), "float32")
            return self.tag(self.embed(x) + positions[None, :, None] * 0.01)

    model = Tagger()
    model.compile("adam", lib.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model(np.ones((ROWS, LENGTHS[0]), "int32"))
    return model


def test_a_subclassed_model_takes_batches_of_other_lengths_than_its_first_as_keras():
    keras.utils.clear_session()
    reference, ours = _subclassed_tagger(keras), _subclassed_tagger(kilnet)
    ours.set_weights(reference.get_weights())
    expected = reference.fit(_dataset(keras), epochs=2, shuffle=False, verbose=0).history
    got = ours.fit(_dataset(kilnet), epochs=2, shuffle=False, verbose=0).history
    _assert_same_history(got, expected, per_token=False)   # no mask: every token counts
    _assert_same_weights(reference, ours)
    assert ours.output_shape == (None, None, TAGS)   # its length axis became of any length
    np.testing.assert_allclose(ours.evaluate(_dataset(kilnet), verbose=0),
                               reference.evaluate(_dataset(keras), verbose=0), rtol=1e-5)


def test_generator_and_validation_of_varying_length_as_keras():
    reference, ours = _twins()

    def endless(lib_batches):
        while True:
            yield from (lib_batches[i] for i in range(len(lib_batches)))

    histories = [model.fit(endless(_dataset(lib)), steps_per_epoch=len(LENGTHS), epochs=2,
                           validation_data=_dataset(lib, [6, 8, 3], seed=10),
                           verbose=0).history
                 for lib, model in ((keras, reference), (kilnet, ours))]
    _assert_same_history(histories[1], histories[0])
    assert "val_accuracy" in histories[0]
    _assert_same_weights(reference, ours)


def test_a_batch_larger_than_the_first_runs_at_its_own_size_as_keras():
    reference, ours = _twins(per_token=False)
    sizes = [2, 4, 3]

    def batches():
        for index, rows in enumerate(sizes):
            yield _batch(index, [6] * len(sizes), per_token=False, rows=rows)

    expected = reference.fit(batches(), epochs=1, verbose=0).history
    got = ours.fit(batches(), epochs=1, verbose=0).history
    _assert_same_history(got, expected, per_token=False)
    _assert_same_weights(reference, ours)
    np.testing.assert_allclose(ours.evaluate(batches(), verbose=0),
                               reference.evaluate(batches(), verbose=0), rtol=1e-5)


def _train_programs(model):
    return [p["name"] for p in model.compile_report.programs if p["name"].startswith("train")]


def test_one_program_per_shape_and_one_for_batches_of_one_shape():
    varying = _model(kilnet)
    varying.fit(_dataset(kilnet), epochs=2, shuffle=False, verbose=0)
    assert len(_train_programs(varying)) == len(set(LENGTHS))

    fixed = _model(kilnet)

    def one_length():
        for index in range(6):
            yield _batch(index, [7] * 6)

    fixed.fit(one_length(), epochs=1, verbose=0)
    assert len(_train_programs(fixed)) == 1


def test_predict_joins_outputs_of_one_shape_and_refuses_outputs_of_several():
    reference, ours = _twins(per_token=False)
    np.testing.assert_allclose(ours.predict(_dataset(kilnet, per_token=False), verbose=0),
                               reference.predict(_dataset(keras, per_token=False), verbose=0),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match=r"different shapes.*predict_on_batch.*\(7, 3\)"):
        _model(kilnet).predict(_dataset(kilnet), verbose=0)


def test_a_batch_of_another_shape_than_the_model_takes_is_refused():
    model = kilnet.Sequential([kilnet.Input((6,)), kilnet.layers.Dense(2)])
    model.compile(loss="mse")

    def batches():
        yield np.zeros((4, 6), "float32"), np.zeros((4, 2), "float32")
        yield np.zeros((4, 5), "float32"), np.zeros((4, 2), "float32")

    with pytest.raises(InputError, match=r"batch 1"):
        model.fit(batches(), epochs=1, verbose=0)
