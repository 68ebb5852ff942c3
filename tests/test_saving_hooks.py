"""Keras's saving hooks, as keras.io's "Customizing Saving and Serialization" guide uses them:
save_own_variables / load_own_variables, save_assets / load_assets, get_build_config /
build_from_config, get_compile_config / compile_from_config. Every file format kilnet writes
calls them (.keras, .weights.h5, .kilnet); a `.keras` file Keras writes opens in kilnet and
the other way round, with the same entries in the same places."""

import os
import zipfile

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402
from kilnet.errors import ModelFileError  # noqa: E402

X = np.random.default_rng(0).random((4, 10)).astype("float32")
Y = np.random.default_rng(1).random((4, 3)).astype("float32")
CALLS = []   # (library, hook) as the hooks run
SEEN_FOLDERS = []   # the folders load_assets was given


def _classes(lib):
    """The guide's classes, written once for each library, registered under one name."""
    register = lib.saving.register_keras_serializable(package="kilnet_test_hooks")
    name = lib.__name__

    @register
    class Tagged(lib.layers.Dense):
        """A Variable made in __init__, kept by the hooks under its own key."""
        def __init__(self, units, **kwargs):
            super().__init__(units, **kwargs)
            self.my_variable = lib.Variable(np.arange(units, dtype="float32") + 0.5,
                                            name="my_variable", dtype="float32")

        def save_own_variables(self, store):
            CALLS.append((name, "save"))
            super().save_own_variables(store)
            store["variables"] = self.my_variable.numpy()

        def load_own_variables(self, store):
            CALLS.append((name, "load"))
            super().load_own_variables(store)
            self.my_variable.assign(store["variables"])

        def call(self, x):
            return super().call(x) + self.my_variable

    @register
    class WithVocabulary(lib.layers.Dense):
        def __init__(self, vocab=None, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.vocab = vocab

        def save_assets(self, inner_path):
            with open(os.path.join(inner_path, "vocabulary.txt"), "w") as f:
                f.write(self.vocab)

        def load_assets(self, inner_path):
            SEEN_FOLDERS.append(inner_path)
            with open(os.path.join(inner_path, "vocabulary.txt")) as f:
                self.vocab = f.read().replace("<unk>", "little")

    @register
    class InitFromBuild(lib.layers.Layer):
        """A build() taking more than the shape, rebuilt through build_from_config."""
        def build(self, input_shape, layer_init):
            super().build(input_shape)
            self._shape = input_shape
            self.layer_init = layer_init
            self.w = self.add_weight(shape=(input_shape[-1], 2), initializer=layer_init)

        def call(self, x):
            return lib.ops.matmul(x, self.w)

        def get_build_config(self):
            return {"layer_init": self.layer_init, "input_shape": self._shape}

        def build_from_config(self, config):
            self.build(config["input_shape"], config["layer_init"])

    @register
    def scaled_square(y_true, y_pred):
        return lib.ops.sum(lib.ops.square(y_pred - y_true) / 10.0, axis=1)

    @register
    class OwnCompile(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.dense(x)

        def compile(self, optimizer, loss_fn, metrics):
            super().compile(optimizer=optimizer, loss=loss_fn, metrics=metrics)
            self.model_optimizer = optimizer

        def get_compile_config(self):
            return {"model_optimizer": self.model_optimizer, "loss_fn": scaled_square,
                    "metric": ["accuracy"]}

        def compile_from_config(self, config):
            deserialize = lib.utils.deserialize_keras_object
            self.compile(optimizer=deserialize(config["model_optimizer"]),
                         loss_fn=deserialize(config["loss_fn"]),
                         metrics=deserialize(config["metric"]))

    return Tagged, WithVocabulary, InitFromBuild, OwnCompile


def _hooked_model(lib):
    Tagged, WithVocabulary, _, _ = _classes(lib)
    model = lib.Sequential([lib.Input((10,)), Tagged(3, name="tagged"),
                            WithVocabulary(vocab="Mary had a <unk> lamb.", units=2,
                                           name="vocab")])
    model.layers[0].my_variable.assign(np.array([7.0, 8.0, 9.0], "float32"))
    return model


def _datasets(data) -> dict:
    import io
    with h5py.File(io.BytesIO(data), "r") as f:
        found = {}
        f.visititems(lambda name, item: found.__setitem__(name, item.shape)
                     if isinstance(item, h5py.Dataset) else None)
        return found


def _weights_member(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return _datasets(archive.read("model.weights.h5"))


@pytest.mark.parametrize("suffix", [".keras", ".kilnet"])
def test_own_variables_and_assets_come_back(tmp_path, suffix):
    """kilnet's own round trip, in both model formats: the hooks' Variable and vocabulary
    come back, the predictions are the same, and each hook ran once each way."""
    model = _hooked_model(kilnet)
    CALLS.clear()
    SEEN_FOLDERS.clear()
    model.save(tmp_path / f"m{suffix}")
    loaded = kilnet.models.load_model(tmp_path / f"m{suffix}")
    assert CALLS == [("kilnet", "save"), ("kilnet", "load")]
    np.testing.assert_array_equal(loaded.layers[0].my_variable.numpy(), [7.0, 8.0, 9.0])
    assert loaded.layers[1].vocab == "Mary had a little lamb."
    np.testing.assert_allclose(np.asarray(loaded(X)), np.asarray(model(X)), atol=0)
    # load_assets was given a temporary folder, removed once loading finished
    assert len(SEEN_FOLDERS) == 1 and not os.path.exists(SEEN_FOLDERS[0])


@pytest.mark.parametrize("source,target", [(keras, kilnet), (kilnet, keras)])
def test_keras_files_with_hooks_open_both_ways(tmp_path, source, target):
    """A `.keras` file of the guide's layers written by either library opens in the other:
    the same archive members and weight datasets, the same values, the same predictions."""
    model = _hooked_model(source)
    path = tmp_path / f"from_{source.__name__}.keras"
    model.save(path)
    twin = _hooked_model(keras if source is kilnet else kilnet)
    twin_path = tmp_path / "twin.keras"
    twin.save(twin_path)
    with zipfile.ZipFile(path) as a, zipfile.ZipFile(twin_path) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        assert "assets/layers/with_vocabulary/vocabulary.txt" in a.namelist()
    assert _weights_member(path) == _weights_member(twin_path)
    assert _weights_member(path)["layers/tagged/vars/variables"] == (3,)
    _classes(target)
    loaded = target.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded.layers[0].my_variable.numpy()),
                                  [7.0, 8.0, 9.0])
    assert loaded.layers[1].vocab == "Mary had a little lamb."
    np.testing.assert_allclose(np.asarray(loaded(X)), np.asarray(model(X)), atol=1e-6)


@pytest.mark.parametrize("source,target,suffix", [
    (keras, kilnet, ".weights.h5"), (kilnet, keras, ".weights.h5"),
    (kilnet, kilnet, ".weights.h5"), (kilnet, kilnet, ".weights.kilnet")])
def test_weights_files_call_the_variable_hooks(tmp_path, source, target, suffix):
    model = _hooked_model(source)
    path = tmp_path / f"m{suffix}"
    model.save_weights(path)
    twin = _hooked_model(target)
    twin.layers[0].my_variable.assign(np.zeros(3, "float32"))
    CALLS.clear()
    twin.load_weights(path)
    assert CALLS == [(target.__name__, "load")]
    np.testing.assert_array_equal(np.asarray(twin.layers[0].my_variable.numpy()),
                                  [7.0, 8.0, 9.0])
    np.testing.assert_allclose(np.asarray(twin(X)), np.asarray(model(X)), atol=1e-6)


@pytest.mark.parametrize("source,target,suffix", [
    (keras, kilnet, ".keras"), (kilnet, keras, ".keras"), (kilnet, kilnet, ".kilnet")])
def test_build_from_config_rebuilds_a_build_with_more_arguments(tmp_path, source, target,
                                                                suffix):
    """The guide's layer whose build() takes an initializer besides the shape, given to
    build(input_shape=(8,)) without the batch axis, followed by another layer."""
    _, _, InitFromBuild, _ = _classes(source)
    layer = InitFromBuild()
    layer.build(input_shape=(8,), layer_init="ones")
    model = source.Sequential([layer, source.layers.Dense(1, activation="sigmoid")])
    model(np.ones((16, 8), "float32"))
    model.save(tmp_path / f"m{suffix}")
    _classes(target)
    loaded = target.models.load_model(tmp_path / f"m{suffix}")
    assert loaded.layers[0].layer_init == "ones"
    np.testing.assert_array_equal(np.asarray(loaded.layers[0].w.numpy()), np.ones((8, 2)))
    x = np.random.default_rng(2).random((5, 8)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_a_new_seed_redraws_through_build_from_config():
    """model.build(seed=...) draws every weight again: a layer whose build takes more than
    the shape is made again through its own build_from_config, not build(shape)."""
    _, _, InitFromBuild, _ = _classes(kilnet)
    layer = InitFromBuild()
    layer.build(input_shape=(8,), layer_init="zeros")
    model = kilnet.Sequential([kilnet.Input((8,)), layer, kilnet.layers.Dense(1)])
    model.build(seed=3)
    np.testing.assert_array_equal(layer.w.numpy(), np.zeros((8, 2)))
    assert layer.layer_init == "zeros"


@pytest.mark.parametrize("source,target,suffix", [
    (keras, kilnet, ".keras"), (kilnet, keras, ".keras"), (kilnet, kilnet, ".kilnet")])
def test_a_model_compiles_itself_from_its_own_compile_config(tmp_path, source, target,
                                                             suffix):
    """get_compile_config / compile_from_config of a model with its own compile(): the
    loaded model is compiled by its own method, with the optimizer and its trained state."""
    _, _, _, OwnCompile = _classes(source)
    model = OwnCompile()
    model.compile(optimizer="SGD", loss_fn=source.utils.get_registered_object(
        "kilnet_test_hooks>scaled_square"), metrics=["accuracy"])
    model.fit(X, Y, batch_size=4, epochs=2, verbose=0)
    model.save(tmp_path / f"m{suffix}")
    _classes(target)
    loaded = target.models.load_model(tmp_path / f"m{suffix}")
    assert loaded.model_optimizer == "SGD"
    assert type(loaded.optimizer).__name__ == "SGD"
    assert int(np.asarray(loaded.optimizer.iterations)) == 2
    before = model.evaluate(X, Y, verbose=0, return_dict=True)
    after = loaded.evaluate(X, Y, verbose=0, return_dict=True)
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-5)


def test_a_hook_that_fails_is_named_with_its_layer(tmp_path):
    @kilnet.saving.register_keras_serializable(package="kilnet_test_hooks_fail")
    class Broken(kilnet.layers.Dense):
        def load_own_variables(self, store):
            raise KeyError("no such entry")

    model = kilnet.Sequential([kilnet.Input((4,)), Broken(2, name="broken")])
    model.save(tmp_path / "m.keras")
    with pytest.raises(ModelFileError, match=r"Broken.load_own_variables of layer 'broken' "
                                              r"failed: KeyError"):
        kilnet.models.load_model(tmp_path / "m.keras")


def test_a_store_takes_named_numbers_only(tmp_path):
    @kilnet.saving.register_keras_serializable(package="kilnet_test_hooks_text")
    class Texty(kilnet.layers.Dense):
        def save_own_variables(self, store):
            store["words"] = np.array(["a", "b"])

    model = kilnet.Sequential([kilnet.Input((4,)), Texty(2)])
    for suffix in (".keras", ".kilnet"):
        with pytest.raises(ValueError, match=r"Texty.save_own_variables .* numeric arrays; "
                                              r"the value for 'words' has dtype <U1"):
            model.save(tmp_path / f"m{suffix}")
        assert not (tmp_path / f"m{suffix}").exists()


def test_default_load_own_variables_checks_count_and_shape():
    dense = kilnet.layers.Dense(2, name="d")
    dense.build((None, 3))
    with pytest.raises(ValueError, match=r"Layer 'd' \(Dense\) has 2 weights of its own "
                                         r"\['kernel', 'bias'\]; the store holds the numbered "
                                         r"entries \['0'\]"):
        dense.load_own_variables({"0": np.ones((3, 2))})
    with pytest.raises(ValueError, match=r"the entry '1' has shape \(3,\); its weight 'bias' "
                                         r"has shape \(2,\)"):
        dense.load_own_variables({"0": np.ones((3, 2)), "1": np.ones(3)})


def test_asset_names_that_leave_their_folder_are_refused(tmp_path):
    model = _hooked_model(kilnet)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as source:
        members = {name: source.read(name) for name in source.namelist()}
    for bad in ("assets/../escape.txt", "assets/layers/with_vocabulary/../../../x",
                "assets//abs", "assets/a\\..\\b"):
        path = tmp_path / "bad.keras"
        with zipfile.ZipFile(path, "w") as target:
            for name, data in members.items():
                target.writestr(name, data)
            target.writestr(bad, b"x")
        with pytest.raises(ModelFileError, match="plain relative names"):
            kilnet.models.load_model(path)
    assert not (tmp_path / "escape.txt").exists()


def test_kilnet_file_entries_no_layer_reads_are_refused(tmp_path):
    """A .kilnet file whose hook entries belong to a layer that no longer reads them (the
    class changed) is refused rather than loaded without them."""
    model = _hooked_model(kilnet)
    model.save(tmp_path / "m.kilnet")

    class Plain(kilnet.layers.Dense):
        def __init__(self, units, **kwargs):
            super().__init__(units, **kwargs)
            self.my_variable = kilnet.Variable(np.zeros(units, "float32"), name="my_variable")

        def call(self, x):
            return super().call(x) + self.my_variable

    with pytest.raises(ModelFileError, match="entries no layer's load_own_variables reads"):
        kilnet.models.load_model(tmp_path / "m.kilnet",
                                 custom_objects={"kilnet_test_hooks>Tagged": Plain})


def test_a_weights_file_matched_by_order_gives_each_layer_its_entries(tmp_path):
    """load_weights of a kilnet weights file whose layer names differ (matched by Keras's
    weight order): the hook entries follow their layer too."""
    Tagged, _, _, _ = _classes(kilnet)
    model = kilnet.Sequential([kilnet.Input((10,)), Tagged(3, name="first")])
    model.layers[0].my_variable.assign(np.array([4.0, 5.0, 6.0], "float32"))
    model.save_weights(tmp_path / "m.weights.kilnet")
    other = kilnet.Sequential([kilnet.Input((10,)), Tagged(3, name="renamed")])
    other.load_weights(tmp_path / "m.weights.kilnet")
    np.testing.assert_array_equal(other.layers[0].my_variable.numpy(), [4.0, 5.0, 6.0])
    np.testing.assert_allclose(np.asarray(other(X)), np.asarray(model(X)), atol=0)
