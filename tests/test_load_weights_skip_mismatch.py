"""load_weights(skip_mismatch=True), Keras's way to reuse a trained body under a new head:
the layers whose weights the file holds with the same shapes are set, the others keep theirs
and are named in a warning; checked against Keras 3 reading the same files."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402


def _model(lib, outputs, extra=False):
    inputs = lib.Input((8,))
    x = lib.layers.Dense(16, activation="relu", name="body")(inputs)
    x = lib.layers.BatchNormalization(name="norm")(x)
    if extra:
        x = lib.layers.Dense(16, name="added")(x)
    return lib.Model(inputs, lib.layers.Dense(outputs, name="predictions")(x))


def _randomized(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.1, 1.0, size=w.shape).astype("float32")
                       for w in model.get_weights()])   # variances stay positive
    return model


@pytest.mark.parametrize("writer", ["keras", "kilnet"])
def test_the_body_is_set_and_the_new_head_kept(tmp_path, writer):
    lib = keras if writer == "keras" else kilnet
    path = tmp_path / ("w.weights.h5" if writer == "keras" else "w.kilnet")
    source = _randomized(_model(lib, 10), 1)
    source.save_weights(path)
    mine = _model(kilnet, 5)
    mine.build()
    head = mine.get_layer("predictions").get_weights()
    with pytest.warns(UserWarning, match=r"keep their current weights: \['predictions'\]"):
        mine.load_weights(path, skip_mismatch=True)
    for name in ("body", "norm"):
        for a, b in zip(mine.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(mine.get_layer("predictions").get_weights(), head):
        np.testing.assert_array_equal(a, b)
    if writer == "keras":   # Keras does the same with its own file
        theirs = _model(keras, 5)
        theirs_head = theirs.get_layer("predictions").get_weights()
        theirs.load_weights(path, skip_mismatch=True)
        np.testing.assert_array_equal(theirs.get_layer("body").get_weights()[0],
                                      mine.get_layer("body").get_weights()[0])
        np.testing.assert_array_equal(theirs.get_layer("predictions").get_weights()[0],
                                      theirs_head[0])


def test_a_layer_the_file_lacks_keeps_its_weights_unbuilt_model_too(tmp_path):
    source = _randomized(_model(kilnet, 3), 2)
    source.build()
    source.save_weights(tmp_path / "w.kilnet")
    mine = _model(kilnet, 3, extra=True)    # unbuilt: built, then set
    with pytest.warns(UserWarning, match=r"\['added'\]"):
        mine.load_weights(tmp_path / "w.kilnet", skip_mismatch=True)
    np.testing.assert_array_equal(mine.get_layer("predictions").get_weights()[0],
                                  source.get_layer("predictions").get_weights()[0])
    with pytest.raises((ValueError, kilnet.ModelFileError)):
        _model(kilnet, 3, extra=True).load_weights(tmp_path / "w.kilnet")


def test_keras_files_match_layers_by_keras_s_group_names(tmp_path):
    """Keras names a weights file's groups by class and count (dense, dense_1, ...): with a
    layer added before the head, the head's group is another's, and both are skipped, in
    Keras as in kilnet."""
    source = _randomized(_model(keras, 3), 3)
    source.save_weights(tmp_path / "w.weights.h5")
    mine, theirs = _model(kilnet, 3, extra=True), _model(keras, 3, extra=True)
    mine.build()
    theirs.set_weights(mine.get_weights())
    with pytest.warns(UserWarning, match=r"\['added', 'predictions'\]"):
        mine.load_weights(tmp_path / "w.weights.h5", skip_mismatch=True)
    theirs.load_weights(tmp_path / "w.weights.h5", skip_mismatch=True)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises((ValueError, kilnet.ModelFileError)):
        _model(kilnet, 3, extra=True).load_weights(tmp_path / "w.weights.h5")
