"""An Embedding looks up ids computed from a shape while a layer is built (keras.io's
PositionalEmbedding: `Embedding(sequence_length)(ops.arange(ops.shape(x)[-1]))` on an input
of unknown length): kilnet traces that length at trial sizes, so its eager id check must
not read those ids, as Keras checks none at build. Ids you pass eagerly are still checked."""

import numpy as np
import pytest

import kilnet

keras = pytest.importorskip("keras")

VOCABULARY, WIDTH = 50, 4


def positional_embedding_class(lib):
    class PositionalEmbedding(lib.layers.Layer):
        def __init__(self, sequence_length, **kwargs):
            super().__init__(**kwargs)
            self.token_embeddings = lib.layers.Embedding(VOCABULARY, WIDTH, name="tokens")
            self.position_embeddings = lib.layers.Embedding(sequence_length, WIDTH,
                                                            name="positions")

        def call(self, inputs):
            positions = lib.ops.arange(0, lib.ops.shape(inputs)[-1], 1)
            return self.token_embeddings(inputs) + self.position_embeddings(positions)

    return PositionalEmbedding


def unknown_length_model(lib, sequence_length):
    inputs = lib.Input(shape=(None,), dtype="int64", name="ids")
    layer = positional_embedding_class(lib)(sequence_length, name="positional_embedding")
    return lib.Model(inputs, layer(inputs), name="model")


@pytest.mark.parametrize("sequence_length", [4, 8, 11, 20])
def test_positional_embedding_on_unknown_length_builds_and_predicts_as_keras(sequence_length):
    keras.backend.clear_session()
    reference = unknown_length_model(keras, sequence_length)
    model = unknown_length_model(kilnet, sequence_length)
    assert model.output_shape == reference.output_shape == (None, None, WIDTH)
    model.set_weights(reference.get_weights())
    for length in sorted({3, sequence_length}):   # shorter than the table, and as long
        ids = np.random.default_rng(length).integers(1, VOCABULARY, (2, length))
        np.testing.assert_allclose(model.predict(ids, verbose=0),
                                   reference.predict(ids, verbose=0), rtol=1e-6, atol=1e-6)


def test_eager_ids_out_of_range_are_still_refused():
    with pytest.raises(ValueError, match=r"ids must be in \[0, input_dim\) = \[0, 10\).*e.g. 12"):
        kilnet.layers.Embedding(10, 4)(np.array([[12]]))


def test_eager_positions_past_the_table_are_still_refused():
    """Called eagerly on your data, the positions are real: a sequence longer than the table
    is reported."""
    layer = positional_embedding_class(kilnet)(4)
    layer(np.array([[1, 2, 3, 4]]))
    with pytest.raises(ValueError, match=r"ids must be in \[0, input_dim\) = \[0, 4\).*e.g. 4"):
        layer(np.array([[1, 2, 3, 4, 5, 6]]))
