"""Sample weights per output: for a model with several trained outputs, sample_weight may be a
list with one array per output (or a dict by output name); each output's loss and weighted
metrics are weighed by its own, as Keras does; compared with Keras 3 from the same weights."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.errors import InputError  # noqa: E402

N = 10


def two_headed(lib):
    inputs = lib.Input(shape=(3,), name="x")
    hidden = lib.layers.Dense(4, activation="tanh", name="hidden")(inputs)
    regression = lib.layers.Dense(1, name="reg")(hidden)
    classes = lib.layers.Dense(1, activation="sigmoid", name="cls")(hidden)
    model = lib.Model(inputs, [regression, classes])
    model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1),
                  loss=["mse", "binary_crossentropy"],
                  weighted_metrics=[["mae"], ["accuracy"]])
    return model


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 3)).astype(np.float32)
    y_reg = rng.normal(size=(N, 1)).astype(np.float32)
    y_cls = rng.integers(0, 2, (N, 1)).astype(np.float32)
    w_reg, w_cls = rng.uniform(0, 2, N).astype(np.float32), rng.uniform(0, 2, N).astype(
        np.float32)
    return x, [y_reg, y_cls], [w_reg, w_cls]


def pair(seed=0):
    ours, theirs = two_headed(kilnet), two_headed(keras)
    ours.build(seed=seed)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("batch_size", [N, 4])
def test_evaluate_weighs_each_output_by_its_own_weights_as_keras(batch_size):
    x, ys, ws = data()
    ours, theirs = pair()
    got = ours.evaluate(x, ys, sample_weight=ws, batch_size=batch_size, verbose=0,
                        return_dict=True)
    expected = theirs.evaluate(x, ys, sample_weight=ws, batch_size=batch_size, verbose=0,
                               return_dict=True)
    assert set(expected) <= set(got)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-5), name
    if batch_size == N:   # by hand: each output's sum(loss * its weights) / samples
        regression = ours.predict(x, verbose=0)[0]
        squared = ((regression - ys[0]) ** 2)[:, 0]
        assert got["reg_loss"] == pytest.approx((squared * ws[0]).sum() / N, rel=1e-5)
    # not the same as weighing both outputs with either array
    for one in ws:
        assert got["loss"] != pytest.approx(ours.evaluate(
            x, ys, sample_weight=one, batch_size=batch_size, verbose=0,
            return_dict=True)["loss"], rel=1e-4)


def test_fit_with_weights_per_output_matches_keras_step_by_step():
    x, ys, ws = data(seed=1)
    ours, theirs = pair(seed=2)
    h1 = ours.fit(x, ys, sample_weight=ws, batch_size=4, epochs=2, shuffle=False, verbose=0)
    h2 = theirs.fit(x, ys, sample_weight=ws, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)


def test_a_dict_by_output_name_and_streamed_batches_weigh_the_same():
    x, ys, ws = data(seed=3)
    ours, _ = pair(seed=4)
    as_list = ours.evaluate(x, ys, sample_weight=ws, batch_size=4, verbose=0,
                            return_dict=True)
    as_dict = ours.evaluate(x, ys, sample_weight={"cls": ws[1], "reg": ws[0]}, batch_size=4,
                            verbose=0, return_dict=True)
    assert as_dict == pytest.approx(as_list, rel=1e-6)

    def batches():
        for start in range(0, N, 4):
            part = slice(start, start + 4)
            yield x[part], [y[part] for y in ys], [w[part] for w in ws]

    streamed = ours.evaluate(batches(), verbose=0, return_dict=True)
    assert streamed == pytest.approx(as_list, rel=1e-5)


def test_a_custom_step_gets_the_weights_as_a_list_per_output_as_keras():
    x, ys, ws = data(seed=5)
    received = {}
    for lib in (kilnet, keras):
        class Recording(lib.Model):
            def test_step(self, state, data, lib=lib):
                _, _, sample_weight = data
                received[lib] = (type(sample_weight).__name__,
                                 [tuple(w.shape) for w in sample_weight])
                return {"n": 0.0}, state
        model = two_headed(lib)
        recording = Recording(model.inputs, model.outputs)
        recording.compile(loss=["mse", "binary_crossentropy"])
        recording.evaluate(x, ys, sample_weight=ws, batch_size=N, verbose=0)
    assert received[kilnet] == received[keras] == ("list", [(N,), (N,)])


def test_weights_per_output_that_do_not_match_the_outputs_are_refused():
    x, ys, ws = data()
    ours, _ = pair()
    with pytest.raises(InputError, match=r"one entry per trained output, by name: "
                                         r"\['reg', 'cls'\].*\['cls', 'other'\]"):
        ours.evaluate(x, ys, sample_weight={"cls": ws[1], "other": ws[0]}, verbose=0)
    with pytest.raises(InputError, match=r"one array per trained output \(2: .*Received: 3"):
        ours.evaluate(x, ys, sample_weight=ws + [ws[0]], verbose=0)
    with pytest.raises(InputError, match=r"sample_weight\['cls'\] must hold one weight per "
                                         r"sample, shape \(10,\)"):
        ours.evaluate(x, ys, sample_weight=[ws[0], ws[1][:7]], verbose=0)
