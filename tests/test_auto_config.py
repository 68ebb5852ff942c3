"""Keras 3's automatic config: a layer or model class of the user's that takes constructor
arguments but defines no get_config() is configured by the arguments it was made with, so
get_config(), `.keras` and `.kilnet` files and ModelCheckpoint work; compared with Keras."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference configs and files are Keras's")

import kilnet  # noqa: E402

X = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")


def layer_classes(lib):
    """The same layer classes written for Keras or kilnet, none with a get_config."""

    class Scale(lib.layers.Layer):   # keras.io vocal_track_separation's form: **kwargs
        def __init__(self, factor, offset=0.0, **kwargs):
            super().__init__(**kwargs)
            self.factor, self.offset = factor, offset

        def build(self, input_shape):
            self.gain = self.add_weight(shape=(input_shape[-1],), initializer="random_normal",
                                        name="gain")

        def call(self, x):
            return x * self.gain * self.factor + self.offset

    class Spectrum(lib.layers.Layer):   # keras.io eeg_bci_ssvepformer's form: no **kwargs
        def __init__(self, nfft, window=(1, 2), options=None):
            super().__init__()
            self.nfft = nfft

        def call(self, x):
            return x

    class Named(lib.layers.Layer):   # takes its name back by name only
        def __init__(self, units, name=None):
            super().__init__(name=name)

        def call(self, x):
            return x

    class Holder(lib.layers.Layer):
        def __init__(self, value, **kwargs):
            super().__init__(**kwargs)

        def call(self, x):
            return x

    return Scale, Spectrum, Named, Holder


def _configs(lib):
    Scale, Spectrum, Named, _ = layer_classes(lib)
    made = [Scale(2.0, offset=1.0, name="scale", trainable=False),
            Scale(factor=[1, 2], dtype="mixed_float16", name="mixed"),
            Spectrum(4, options={"a": [1, (2, 3)], "b": None}),
            Named(3, name="named"),
            Named(5, name="other")]
    return [layer.get_config() for layer in made]


def _plain(value):
    """A config as its JSON holds it (tuples are lists there) and the dtype policy's name."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy":
            return value["config"]["name"]
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def test_get_config_has_keras_keys_values_and_order():
    for ours, theirs in zip(_configs(kilnet), _configs(keras)):
        assert list(ours) == list(theirs)
        assert _plain(ours) == _plain(theirs)


def test_the_config_rebuilds_an_equal_layer():
    Scale = layer_classes(kilnet)[0]
    layer = Scale(2.0, offset=1.0, name="scale")
    config = layer.get_config()
    assert {key: config[key] for key in ("name", "factor", "offset")} == {
        "name": "scale", "factor": 2.0, "offset": 1.0}
    assert Scale.from_config(config).get_config() == config


def _scale_model(lib):
    Scale = layer_classes(lib)[0]
    model = lib.Sequential([lib.Input((3,)), Scale(2.0, offset=1.0, name="scale"),
                            lib.layers.Dense(2, name="head")])
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_keras_files_load_both_ways_with_equal_predictions(tmp_path):
    ours = _scale_model(kilnet)
    ours.save(tmp_path / "ours.keras")
    in_keras = keras.models.load_model(tmp_path / "ours.keras",
                                       custom_objects={"Scale": layer_classes(keras)[0]})
    assert in_keras.get_layer("scale").factor == 2.0
    np.testing.assert_allclose(in_keras.predict(X, verbose=0), ours.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-6)
    in_keras.save(tmp_path / "theirs.keras")
    back = kilnet.models.load_model(tmp_path / "theirs.keras",
                                    custom_objects={"Scale": layer_classes(kilnet)[0]})
    assert back.get_layer("scale").offset == 1.0
    np.testing.assert_allclose(back.predict(X, verbose=0), in_keras.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-6)


def test_kilnet_file_and_checkpoint_round_trip(tmp_path):
    Scale = layer_classes(kilnet)[0]
    model = _scale_model(kilnet)
    model.compile(optimizer="sgd", loss="mse")
    path = str(tmp_path / "best.kilnet")
    model.fit(X, np.ones((4, 2), "float32"), epochs=1, verbose=0,
              callbacks=[kilnet.callbacks.ModelCheckpoint(path)])
    for file in (path, tmp_path / "m.kilnet"):
        if file != path:
            model.save(file)
        loaded = kilnet.models.load_model(file, custom_objects={"Scale": Scale})
        np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("value", [np.ones(2), np.float32(2.0), "initializer"])
def test_arguments_that_are_not_plain_data_are_refused_as_keras_refuses_them(value):
    for lib in (kilnet, keras):
        if isinstance(value, str):
            value = lib.initializers.Ones()
        Holder = layer_classes(lib)[3]
        with pytest.raises(NotImplementedError) as refused:
            Holder(value).get_config()
        if lib is kilnet:
            assert "value=" in str(refused.value) and "get_config()" in str(refused.value)


def model_class(lib):
    class Head(lib.Model):
        def __init__(self, units=3, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.dense = lib.layers.Dense(units)

        def call(self, x):
            return self.dense(x)

    return Head


def test_subclassed_model_keras_file_loads_in_keras_with_its_arguments(tmp_path):
    model = model_class(kilnet)(units=4, name="head")
    model.predict(X, verbose=0)
    assert model.get_config()["units"] == 4
    theirs = model_class(keras)(name="head").get_config()   # Keras records only defaults
    assert list(model.get_config()) == list(theirs)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras",
                                     custom_objects={"Head": model_class(keras)})
    assert loaded.units == 4
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-6)


def test_functional_subclass_with_a_required_argument_saves_and_loads(tmp_path):
    class Block(kilnet.Model):
        def __init__(self, units, **kwargs):
            inputs = kilnet.Input((3,))
            super().__init__(inputs, kilnet.layers.Dense(units)(inputs), **kwargs)

    model = Block(5, name="block")
    assert model.get_config()["units"] == 5
    model.save(tmp_path / "b.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "b.kilnet", custom_objects={"Block": Block})
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6)


def passing_on_classes(lib, base):
    """A parent taking `units` (no get_config) and children passing their arguments on."""

    class Parent(base):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def call(self, x):
            return x

    class Child(Parent):   # its own __init__ names none of the arguments
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    class Spread(Parent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    return Child, Spread


@pytest.mark.parametrize("base", ["Layer", "Model"])
def test_arguments_passed_on_through_kwargs_are_configured_as_in_keras(base):
    # Keras's layer is the reference for both: Keras 3.15's Model records only its defaults
    # (the README's documented difference), kilnet's model the arguments as its layers do
    theirs = passing_on_classes(keras, keras.layers.Layer)[0](units=3, name="child").get_config()
    ours_base = kilnet.layers.Layer if base == "Layer" else kilnet.Model
    ours = passing_on_classes(kilnet, ours_base)[0](units=3, name="child").get_config()
    assert list(ours) == list(theirs) == ["name", "units", "trainable", "dtype"]
    assert _plain(ours) == _plain(theirs)


@pytest.mark.parametrize("base", ["Layer", "Model"])
def test_variadic_positional_values_are_refused_as_keras_refuses_them(base):
    Spread = passing_on_classes(keras, keras.layers.Layer)[1]
    with pytest.raises(NotImplementedError):
        Spread(3).get_config()
    Spread = passing_on_classes(kilnet, kilnet.layers.Layer if base == "Layer" else kilnet.Model)[1]
    with pytest.raises(NotImplementedError, match=r"\*args"):
        Spread(3).get_config()
    assert Spread(units=3).get_config()["units"] == 3


def test_layers_made_without_arguments_keep_the_base_config():
    class Plain(kilnet.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

        def call(self, x):
            return x

    class Fixed(kilnet.layers.Layer):
        def __init__(self):
            super().__init__(name="fixed")

        def call(self, x):
            return x

    assert list(Plain(name="p").get_config()) == ["name", "trainable", "dtype"]
    assert list(Fixed().get_config()) == ["name", "trainable", "dtype"]
    dense = kilnet.layers.Dense(2, name="d")
    assert dense.get_config() == keras.layers.Dense(2, name="d").get_config() | {
        "dtype": dense.get_config()["dtype"]}
