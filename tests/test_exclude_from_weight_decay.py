"""Keras's `optimizer.exclude_from_weight_decay(var_list=None, var_names=None)`: weight decay
skips the variables listed and those whose name a regular expression finds, in every kilnet
optimizer with `weight_decay`; training against Keras's twin from the same weights (fit and
apply), a hand check with zero gradients, when the call is refused, and configs and .keras
files (which, as Keras's, do not keep the exclusions)."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import _optimizer_parity as parity  # noqa: E402
import kilnet  # noqa: E402
from kilnet import optimizers  # noqa: E402
from kilnet.variables import Variable  # noqa: E402

# Every optimizer taking weight_decay, with a rate and decay that move the weights visibly.
DECAYING = {
    "Adam": dict(learning_rate=0.05, weight_decay=0.2),
    "AdamW": dict(learning_rate=0.05, weight_decay=0.2),
    "SGD": dict(learning_rate=0.05, momentum=0.5, weight_decay=0.2),
    "RMSprop": dict(learning_rate=0.01, weight_decay=0.3),
    "Adagrad": dict(learning_rate=0.1, weight_decay=0.2),
    "Nadam": dict(learning_rate=0.05, weight_decay=0.2),
    "Adamax": dict(learning_rate=0.05, weight_decay=0.2),
    "Adadelta": dict(learning_rate=1.0, weight_decay=0.2),
    "Lion": dict(learning_rate=0.01, weight_decay=0.5),
    "Lamb": dict(learning_rate=0.02, weight_decay=0.2),
    "Adafactor": dict(learning_rate=0.05, weight_decay=0.2),
    "Ftrl": dict(learning_rate=0.05, weight_decay=0.2),
}
EXCLUSIONS = {"names": lambda model: dict(var_names=["bias"]),
              "list": lambda model: dict(var_list=[model.get_layer("hidden").kernel])}


def _model(ns):
    return ns.Sequential([ns.Input(shape=(5,)),
                          ns.layers.Dense(4, activation="tanh", name="hidden",
                                          kernel_initializer="ones", bias_initializer="ones"),
                          ns.layers.Dense(1, name="out", kernel_initializer="ones",
                                          bias_initializer="ones")])


def _fitted(ns, name, exclusion=None, exclude_after_compile=False):
    """(loss history, weights) of the model trained by `ns` (kilnet or keras) with optimizer
    `name`, `exclusion` (a key of EXCLUSIONS) applied before compile, or after it."""
    x, y = parity.data()
    model = _model(ns)
    optimizer = getattr(ns.optimizers, name)(**DECAYING[name])
    if exclusion is not None and not exclude_after_compile:
        optimizer.exclude_from_weight_decay(**EXCLUSIONS[exclusion](model))
    model.compile(optimizer=optimizer, loss="mse")
    if exclusion is not None and exclude_after_compile:
        model.optimizer.exclude_from_weight_decay(**EXCLUSIONS[exclusion](model))
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    return history.history["loss"], model.get_weights()


@pytest.mark.parametrize("exclusion", EXCLUSIONS)
@pytest.mark.parametrize("name", DECAYING)
def test_fit_with_exclusions_is_keras(name, exclusion):
    ours_loss, ours = _fitted(kilnet, name, exclusion)
    theirs_loss, theirs = _fitted(keras, name, exclusion)
    np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-5)
    parity.assert_same(ours, theirs)
    # the exclusion changed the result: every weight decayed ends elsewhere
    _, all_decayed = _fitted(kilnet, name)
    changed = 1 if exclusion == "names" else 0   # the hidden layer's bias, or its kernel
    assert not np.allclose(all_decayed[changed], ours[changed], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("base", [dict(gradient_accumulation_steps=2), dict(use_ema=True),
                                  dict(global_clipnorm=0.5)], ids=["accumulation", "ema", "clip"])
def test_exclusions_with_keras_base_arguments_train_as_keras(base):
    x, y = parity.data()
    weights = []
    for ns in (kilnet, keras):
        model = _model(ns)
        optimizer = ns.optimizers.AdamW(learning_rate=0.05, weight_decay=0.2, **base)
        optimizer.exclude_from_weight_decay(var_names=["bias"])
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    parity.assert_same(*weights)


def test_an_exclusion_made_after_compile_and_before_fit_applies_as_in_keras():
    """Keras builds its optimizer when fit starts; kilnet's compile() may already have made
    the training state (the model's input shape is known), not yet any step."""
    ours_loss, ours = _fitted(kilnet, "AdamW", "names", exclude_after_compile=True)
    theirs_loss, theirs = _fitted(keras, "AdamW", "names", exclude_after_compile=True)
    np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-5)
    parity.assert_same(ours, theirs)
    parity.assert_same(ours, _fitted(kilnet, "AdamW", "names")[1])


@pytest.mark.parametrize("name", ["AdamW", "SGD", "Lion", "Lamb", "Nadam", "Adadelta"])
def test_apply_with_exclusions_is_keras(name):
    """A loop of one's own (optimizer.apply): the built optimizer's variables decide."""
    rng = np.random.default_rng(1)
    start = [rng.normal(size=(3, 2)).astype("float32"), rng.normal(size=2).astype("float32"),
             rng.normal(size=2).astype("float32")]
    names = ["kernel", "bias", "gamma"]
    ours = [Variable(v, name=n) for v, n in zip(start, names)]
    theirs = [keras.Variable(v, name=n) for v, n in zip(start, names)]
    opt_ours = getattr(optimizers, name)(**DECAYING[name])
    opt_theirs = getattr(keras.optimizers, name)(**DECAYING[name])
    opt_ours.exclude_from_weight_decay(var_list=[ours[2]], var_names=["bi.s"])
    opt_theirs.exclude_from_weight_decay(var_list=[theirs[2]], var_names=["bi.s"])
    for _ in range(4):
        grads = [rng.normal(size=v.shape).astype("float32") for v in start]
        opt_ours.apply(grads, ours)
        opt_theirs.apply(grads, theirs)
    parity.assert_same([v.numpy() for v in ours], [v.numpy() for v in theirs])


@pytest.mark.parametrize("name", [n for n in DECAYING if n != "Ftrl"])
def test_excluded_weights_are_not_decayed(name):
    """With zero gradients these optimizers' steps are zero: a decayed weight shrinks by
    lr * wd, an excluded one stays as it is. (Ftrl's closed-form weights move without a
    gradient.)"""
    kwargs = DECAYING[name]
    kernel = Variable(np.full((2, 2), 2.0, np.float32), name="kernel")
    bias = Variable(np.full(2, 2.0, np.float32), name="bias")
    scale = Variable(np.full(2, 2.0, np.float32), name="scale")
    optimizer = getattr(optimizers, name)(**kwargs)
    optimizer.exclude_from_weight_decay(var_list=[scale], var_names=["bias"])
    zeros = [np.zeros((2, 2), np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32)]
    optimizer.apply(zeros, [kernel, bias, scale])
    shrunk = 2.0 * (1 - kwargs["learning_rate"] * kwargs["weight_decay"])
    np.testing.assert_allclose(kernel.numpy(), shrunk, rtol=1e-6)
    np.testing.assert_array_equal(bias.numpy(), 2.0)
    np.testing.assert_array_equal(scale.numpy(), 2.0)


def test_names_are_searched_in_the_variable_name_not_its_path():
    """As Keras's re.search on variable.name: "hidden" (a layer's name, in the path) excludes
    nothing; a regular expression matches anywhere in the name."""
    model = _model(kilnet)
    twin = _model(keras)
    optimizer = optimizers.AdamW()
    optimizer.exclude_from_weight_decay(var_names=["hidden", "^b"])
    keras_optimizer = keras.optimizers.AdamW()
    keras_optimizer.exclude_from_weight_decay(var_names=["hidden", "^b"])
    ours = [optimizer.uses_weight_decay(v) for v in model.trainable_variables]
    theirs = [keras_optimizer._use_weight_decay(v) for v in twin.trainable_variables]
    assert ours == theirs == [True, False, True, False]
    optimizer.exclude_from_weight_decay()   # neither: every weight decays again
    assert all(optimizer.uses_weight_decay(v) for v in model.trainable_variables)


def test_refused_once_the_optimizer_is_built():
    model = _model(kilnet)
    optimizer = optimizers.AdamW()
    optimizer.build(model.trainable_variables)
    with pytest.raises(ValueError, match=r"only be called before the optimizer is built: "
                                         r"optimizer.build"):
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    x, y = parity.data()
    model.compile(optimizer=optimizers.AdamW(), loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="compiled model has trained with it"):
        model.optimizer.exclude_from_weight_decay(var_names=["bias"])


def test_arguments_are_checked():
    optimizer = optimizers.AdamW()
    with pytest.raises(TypeError, match=r"var_names must be a list of strings.*'bias'"):
        optimizer.exclude_from_weight_decay(var_names="bias")
    with pytest.raises(TypeError, match=r"var_list must be a list of variables"):
        optimizer.exclude_from_weight_decay(var_list=Variable([1.0], name="w"))


def test_the_transformation_alone_cannot_tell_the_variables():
    optimizer = optimizers.AdamW()
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    tx = optimizer.transformation()
    params = {"bias": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match="cannot tell which variables"):
        tx.update(params, tx.init(params), params)


def test_configs_and_keras_files_leave_the_exclusions_out_as_keras(tmp_path):
    """Keras's get_config does not hold them: a loaded optimizer decays every weight, in both
    libraries, whichever wrote the file."""
    x, y = parity.data()
    model = _model(kilnet)
    optimizer = optimizers.AdamW(learning_rate=0.01)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    keras_optimizer = keras.optimizers.AdamW(learning_rate=0.01)
    keras_optimizer.exclude_from_weight_decay(var_names=["bias"])
    assert optimizer.get_config() == optimizers.AdamW(learning_rate=0.01,
                                                      name=optimizer.name).get_config()
    assert list(optimizers.serialize(optimizer)["config"]) == list(
        keras.optimizers.serialize(keras_optimizer)["config"])
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    ours = kilnet.models.load_model(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert all(ours.optimizer.uses_weight_decay(v) for v in ours.trainable_variables)
    assert all(theirs.optimizer._use_weight_decay(v) for v in theirs.trainable_variables)
    parity.assert_same(parity.one_more_step(ours, x, y), parity.one_more_step(theirs, x, y))
