"""Lamb, Adafactor and Ftrl against Keras 3's own optimizers (the same weights of rank 3, 2 and 1
and the same gradients through both, step by step), their signatures, configs, checks and
training through compile(); `optimizers.serialize` / `deserialize` against Keras's."""

from __future__ import annotations

import copy
import os
import warnings

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import _optimizer_parity as parity  # noqa: E402
from _optimizer_parity import unnumbered  # noqa: E402
import kilnet  # noqa: E402
from kilnet import optimizers  # noqa: E402

NEW = ["Lamb", "Adafactor", "Ftrl"]
ALL = ["Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Nadam", "Adamax", "Adadelta", "Lion",
       *NEW]
CASES = [
    ("Lamb", {}), ("Lamb", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.9, epsilon=1e-4)),
    ("Lamb", dict(learning_rate=0.02, weight_decay=0.1, clipnorm=0.5)),
    ("Adafactor", {}),
    # a rate above 1/sqrt(t) after step 4: the cap applies, relative_step or not
    ("Adafactor", dict(learning_rate=0.5, relative_step=False, clip_threshold=0.5)),
    ("Adafactor", dict(learning_rate=0.05, weight_decay=0.1, beta_2_decay=-0.5,
                       epsilon_2=1e-2, global_clipnorm=1.0)),
    ("Ftrl", {}),
    ("Ftrl", dict(learning_rate=0.1, l1_regularization_strength=0.05,
                  l2_regularization_strength=0.1, l2_shrinkage_regularization_strength=0.02,
                  beta=0.5)),
    ("Ftrl", dict(learning_rate=0.05, learning_rate_power=-0.3, initial_accumulator_value=0.5,
                  weight_decay=0.1)),
    ("Ftrl", dict(learning_rate=0.05, learning_rate_power=0.0, initial_accumulator_value=0.0)),
]
START = {"w": np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 4, 2),
         "k": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
         "b": np.array([0.5, -0.25], np.float32)}


def _gradients(steps=5, seed=0):
    rng = np.random.default_rng(seed)
    return [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in START.items()}
            for _ in range(steps)]


def _assert_same_steps(ours, theirs, name):
    variables = {k: keras.Variable(v, name=k) for k, v in START.items()}
    tx = ours.transformation()
    params = jax.tree.map(jnp.asarray, START)
    state = tx.init(params)

    @jax.jit   # one compiled step, as in training, rather than op-by-op dispatch
    def step_of(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), state

    for step, grads in enumerate(_gradients()):
        theirs.apply_gradients([(grads[k], variables[k]) for k in START])
        params, state = step_of(params, state, grads)
        for k in START:
            np.testing.assert_allclose(params[k], variables[k].numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} {k} after step {step + 1}")
    assert not np.allclose(params["w"], START["w"], atol=1e-4)   # the steps did move it


@pytest.mark.parametrize("name, kwargs", CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_updates_are_keras_step_by_step(name, kwargs):
    _assert_same_steps(getattr(optimizers, name)(**kwargs),
                       getattr(keras.optimizers, name)(**kwargs), name)


@pytest.mark.parametrize("name", NEW)
def test_a_schedule_drives_the_rate_as_in_keras(name):
    def schedule(ns):
        return ns.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)
    _assert_same_steps(getattr(optimizers, name)(schedule(kilnet)),
                       getattr(keras.optimizers, name)(schedule(keras)), name)


@pytest.mark.parametrize("name", NEW)
def test_signatures_configs_and_names_are_keras(name):
    parity.assert_signature_and_config_are_keras(name)


@pytest.mark.parametrize("argument", ["learning_rate_power", "initial_accumulator_value",
                                      "l1_regularization_strength",
                                      "l2_regularization_strength",
                                      "l2_shrinkage_regularization_strength"])
def test_ftrl_refuses_what_keras_refuses(argument):
    value = 0.5 if argument == "learning_rate_power" else -0.5
    with pytest.raises(ValueError):
        keras.optimizers.Ftrl(**{argument: value})
    with pytest.raises(ValueError, match=f"{argument}.*Received: {argument}={value}"):
        optimizers.Ftrl(**{argument: value})


@pytest.mark.parametrize("name", ["lamb", "adafactor", "ftrl"])
def test_a_model_compiled_by_name_trains_with_each(name):
    x, y = parity.data()
    model = kilnet.Sequential(parity.layers(kilnet))
    model.compile(optimizer=name, loss="mse")
    assert type(model.optimizer) is getattr(optimizers, name.capitalize())
    model.optimizer.learning_rate = 0.05   # Adafactor's default 0.001 is slow on a toy task
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=15, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.8 * before


def test_their_state_round_trips_through_kilnet_files(tmp_path):
    x, y = parity.data()
    model = kilnet.Sequential(parity.layers(kilnet))
    model.build(seed=1)
    model.compile(optimizer=optimizers.Adafactor(0.05), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m.kilnet")
    again = kilnet.models.load_model(tmp_path / "m.kilnet")
    assert type(again.optimizer) is optimizers.Adafactor
    parity.assert_same(parity.one_more_step(again, x, y), parity.one_more_step(model, x, y))


# -- serialize / deserialize -------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_serialize_is_keras_serialize(name):
    ours = optimizers.serialize(getattr(optimizers, name)(learning_rate=0.5))
    theirs = keras.optimizers.serialize(getattr(keras.optimizers, name)(learning_rate=0.5))
    assert list(ours["config"]) == list(theirs["config"])   # Keras's key order too
    _assert_same_entry(ours, theirs)


def _assert_same_entry(ours, theirs):
    """Equal, but for the number each library gives its further default names in a process
    (lamb_5): the counts differ."""
    ours, theirs = dict(ours), dict(theirs)
    ours["config"], theirs["config"] = dict(ours["config"]), dict(theirs["config"])
    assert unnumbered(ours["config"].pop("name")) == unnumbered(theirs["config"].pop("name"))
    assert ours == theirs


def test_serialize_carries_a_schedule_and_the_settings_as_keras():
    def optimizer(ns):
        rate = ns.optimizers.schedules.CosineDecay(0.1, decay_steps=100, alpha=0.1)
        return ns.optimizers.Ftrl(rate, beta=0.3, clipnorm=2.0, weight_decay=0.01)
    ours, theirs = optimizers.serialize(optimizer(kilnet)), keras.optimizers.serialize(
        optimizer(keras))
    _assert_same_entry(ours, theirs)
    back = optimizers.deserialize(theirs)
    _assert_same_entry(optimizers.serialize(back), theirs)
    # Keras's deserialize changes the dict it is given: a copy
    _assert_same_entry(ours, keras.optimizers.serialize(keras.optimizers.deserialize(
        copy.deepcopy(ours))))


@pytest.mark.parametrize("name", ALL)
def test_deserialize_takes_keras_forms(name):
    theirs = keras.optimizers.serialize(getattr(keras.optimizers, name)(learning_rate=0.25))
    ours = optimizers.deserialize(theirs)
    assert type(ours) is getattr(optimizers, name)
    assert ours.learning_rate == pytest.approx(0.25)
    plain = optimizers.deserialize({"class_name": name.lower(), "config": {"learning_rate": 0.5}})
    assert type(plain) is type(ours) and plain.learning_rate == 0.5
    assert type(optimizers.get({"class_name": name, "config": {}})) is type(ours)


def test_deserialize_names_what_kilnet_cannot_honour():
    with pytest.raises(TypeError, match="unexpected arguments.*'amsgrad'"):
        optimizers.deserialize({"class_name": "Nadam", "config": {"amsgrad": True}})
    with pytest.raises(ValueError, match="Received: loss_scale_factor=2.0"):
        optimizers.deserialize({"class_name": "SGD", "config": {"loss_scale_factor": 2.0}})
    with pytest.raises(ValueError, match="Received: class_name='Adamm'"):
        optimizers.deserialize({"class_name": "Adamm", "config": {}})
    with pytest.raises(ValueError, match="Received: config="):
        optimizers.deserialize("adam")
    with pytest.raises(ValueError, match="Received: "):
        optimizers.serialize(__import__("optax").sgd(0.1))


# -- use_ema and SwapEMAWeights ----------------------------------------------------------------
EMA = {"plain": (dict(ema_momentum=0.9), None),
       "overwrite": (dict(ema_momentum=0.8, ema_overwrite_frequency=3), False),
       "swap_on_epoch": (dict(ema_momentum=0.9), True)}


@pytest.mark.parametrize("case", sorted(EMA))
def test_ema_training_validation_and_final_weights_are_keras(case):
    """Validation sees the averages where SwapEMAWeights swaps them in; fit ends with the
    averages in the model (Keras's finalize_variable_values); every third step overwrites the
    weights with the averages when asked."""
    kwargs, swap = EMA[case]
    x, y = parity.data(64)
    ours = kilnet.Sequential(parity.layers(kilnet))
    ours.build(seed=2)
    theirs = keras.Sequential(parity.layers(keras))
    theirs.set_weights(ours.get_weights())
    histories = []
    for ns, model in ((kilnet, ours), (keras, theirs)):
        model.compile(optimizer=ns.optimizers.Adam(0.05, use_ema=True, **kwargs), loss="mse")
        callbacks = [] if swap is None else [ns.callbacks.SwapEMAWeights(swap_on_epoch=swap)]
        histories.append(model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0,
                                   validation_data=(x[:16], y[:16]), callbacks=callbacks))
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(histories[0].history[key], histories[1].history[key],
                                   rtol=1e-5)
    parity.assert_same(ours.get_weights(), theirs.get_weights())


def test_swap_puts_the_averages_in_for_evaluate_and_predict_only():
    x, y = parity.data()
    model = kilnet.Sequential(parity.layers(kilnet))
    model.compile(optimizer=optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)   # ends with the averages in the model
    trained = model.get_weights()
    state = model.compiled.state   # averages of our own, half the weights, to tell them apart
    halves = jax.tree.map(lambda w: w / 2, state.params)
    _, opt_state = optimizers.swap_moving_average(halves, state.opt_state)
    model.compiled.state = state._replace(opt_state=opt_state)
    averages = [w / 2 for w in trained]
    swap, seen = kilnet.callbacks.SwapEMAWeights(), []
    model.predict(x, verbose=0, callbacks=[swap, kilnet.callbacks.LambdaCallback(
        on_predict_begin=lambda logs: seen.append(model.get_weights()))])
    parity.assert_same(seen[0], averages)
    parity.assert_same(model.get_weights(), trained)   # restored after
    with_averages = model.evaluate(x, y, verbose=0, callbacks=[swap])
    parity.assert_same(model.get_weights(), trained)
    assert with_averages != pytest.approx(model.evaluate(x, y, verbose=0))


def test_ema_settings_are_checked_configured_and_serialized_as_keras():
    with pytest.raises(ValueError, match="Received: ema_momentum=1.5"):
        optimizers.Adam(use_ema=True, ema_momentum=1.5)
    with pytest.raises(ValueError, match="Received: ema_overwrite_frequency=0"):
        optimizers.Lamb(use_ema=True, ema_overwrite_frequency=0)
    for ns in (keras, kilnet):   # as Keras: not checked without use_ema
        ns.optimizers.Adam(ema_momentum=1.5)
    opt = optimizers.Ftrl(0.1, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=5)
    assert optimizers.Ftrl.from_config(opt.get_config()).get_config() == opt.get_config()
    _assert_same_entry(optimizers.serialize(opt), keras.optimizers.serialize(
        keras.optimizers.Ftrl(0.1, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=5)))
    model = kilnet.Sequential(parity.layers(kilnet))
    model.compile(optimizer="adam", loss="mse")
    model.build(seed=0)
    with pytest.raises(ValueError, match="use_ema=True.*Received:"):
        model.evaluate(*parity.data(), verbose=0, callbacks=[kilnet.callbacks.SwapEMAWeights()])


@pytest.mark.parametrize("name", ["Adam", "RMSprop"])
def test_ema_state_crosses_keras_files_both_ways(name, tmp_path):
    """Keras lists the averages first (after the step count and the rate), one per weight; a
    further epoch in the other library ends with the same averages in the model."""
    x, y = parity.data()
    kwargs = dict(learning_rate=0.01, use_ema=True, ema_momentum=0.9,
                  **({"momentum": 0.5} if name == "RMSprop" else {}))
    theirs = keras.Sequential(parity.layers(keras))
    theirs.compile(optimizer=getattr(keras.optimizers, name)(**kwargs), loss="mse")
    theirs.fit(x, y, batch_size=16, epochs=1, verbose=0)
    theirs.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        ours = kilnet.models.load_model(tmp_path / "k.keras")
    assert ours.optimizer.use_ema and ours.optimizer.ema_momentum == 0.9
    # Keras 3.15 cannot fit a JAX model with use_ema twice (its fit ends with each weight and
    # its average on one buffer, which the next step donates twice): a fresh copy continues.
    again = keras.models.load_model(tmp_path / "k.keras")
    parity.assert_same(parity.one_more_step(ours, x, y), parity.one_more_step(again, x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the averages are written
        ours.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    assert back.optimizer.ema_momentum == 0.9
    parity.assert_same(parity.one_more_step(back, x, y), parity.one_more_step(ours, x, y))


def test_names_are_keras_s():
    """`name=` names an optimizer (Keras's argument, in its config and files); the default is
    the class's name in snake case, numbered from the second instance of a process on, as
    Keras's (both libraries' numbering starts again at clear_session)."""
    for ns in (kilnet, keras):
        ns.backend.clear_session()
    for name in ALL + ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Nadam"]:
        ours, theirs = getattr(optimizers, name), getattr(keras.optimizers, name)
        assert ours().name == theirs().name   # "adam_w", "rm_sprop"
        assert ours().name == theirs().name   # numbered: "adam_w_1"
        named = ours(learning_rate=0.5, name="mine")
        assert named.name == named.get_config()["name"] == "mine"
        assert optimizers.serialize(named)["config"]["name"] == "mine"
        assert optimizers.deserialize(keras.optimizers.serialize(theirs(name="theirs"))).name \
            == "theirs"
        assert type(named).from_config(named.get_config()).name == "mine"
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        optimizers.Adam(name="a/b")
