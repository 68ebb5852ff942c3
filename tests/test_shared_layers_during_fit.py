"""A second model sharing the trained model's layers, run from a callback during fit (keras.io's
handwriting recognition and captcha OCR predict with `prediction_model = Model(image_input,
model.get_layer("dense2").output)` each epoch): it sees the weights fit has reached, and fit
goes on training them, as Keras's. kilnet's Trainer holds a model's weights while it trains;
the other model's run took them and fit's later updates reached nobody (the model ended at the
weights of the first callback's predict)."""

import keras
import numpy as np
import pytest

import kilnet

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 4)).astype(np.float32)
Y = RNG.normal(size=(16, 1)).astype(np.float32)


def _run(lib, hook, use, weights=None):
    """(history, what the callback's sub-model runs gave, evaluate after fit, final weights)."""
    inp = lib.Input((4,), name="image")
    out = lib.layers.Dense(1, name="dense2")(lib.layers.Dense(3, name="dense1")(inp))
    model = lib.Model(inp, out)
    model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
    if weights is not None:
        model.set_weights(weights)
    sub = lib.Model(model.get_layer("image").output, model.get_layer("dense1").output)
    sub.compile(loss="mse")
    seen = []

    def run_sub(*_args, **_kwargs):
        if use == "nothing":
            return
        if use == "predict":
            seen.append(float(sub.predict(X[:2], verbose=0)[0, 0]))
        else:
            seen.append(float(sub.evaluate(X, np.zeros((16, 3)), verbose=0)))

    callback = lib.callbacks.LambdaCallback(**{hook: run_sub})
    history = model.fit(X, Y, validation_data=(X, Y), epochs=3, batch_size=8, shuffle=False,
                        verbose=0, callbacks=[callback])
    return (history.history, seen, model.evaluate(X, Y, verbose=0), model.get_weights())


@pytest.mark.parametrize("hook, use", [("on_epoch_end", "predict"),
                                       ("on_train_batch_end", "predict"),
                                       ("on_epoch_begin", "evaluate"),
                                       ("on_test_begin", "predict")])
def test_a_sub_model_run_from_a_callback_sees_and_keeps_the_training(hook, use):
    keras.backend.clear_session()
    initial = _initial_weights()   # both start from the same weights
    # Keras 3.15 on JAX cannot predict from on_train_batch_end ("'NoneType' object is not
    # callable"): there, its run without the sub-model says what the training gives
    theirs = _run(keras, hook, "nothing" if hook == "on_train_batch_end" else use,
                  weights=initial)
    ours = _run(kilnet, hook, use, weights=initial)
    np.testing.assert_allclose(ours[0]["val_loss"], theirs[0]["val_loss"], rtol=1e-5)
    if theirs[1]:
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)
    # the runs saw the training go on: new weights every epoch (kilnet's chunked batch hooks
    # run on_train_batch_end for a chunk's batches after the chunk, on the same weights)
    assert len(set(ours[1])) >= 3
    assert ours[2] == pytest.approx(theirs[2], rel=1e-5)
    assert ours[2] == pytest.approx(ours[0]["val_loss"][-1], rel=1e-5)   # the trained weights
    for mine, keras_weight in zip(ours[3], theirs[3]):
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-5, atol=1e-6)


def _initial_weights():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    return model.get_weights()
