"""Audio: initializers.STFT, STFTSpectrogram and MelSpectrogram against Keras 3 on random
signals (values, weights, configs, shapes, .keras files both ways), and
utils.audio_dataset_from_directory on WAV files written here, against Keras's own file
listing and split and against the decoding rules of Keras's source (its WAV path needs
TensorFlow, which is not installed: 16-bit PCM / 32768, float32 as stored, Fourier
resampling as scipy.signal.resample, then cut or zero-padded)."""

from __future__ import annotations

import itertools
import os
import wave

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.src.utils import dataset_utils  # noqa: E402

import kilnet  # noqa: E402
from kilnet import initializers, layers, utils  # noqa: E402

SIGNALS = np.random.default_rng(0).uniform(-1, 1, (3, 120, 2)).astype(np.float32)


def twin_outputs(kwargs, x, keras_class, kilnet_class):
    """Outputs of the kilnet layer and of Keras's, given the kilnet layer's weights."""
    ours, theirs = kilnet_class(**kwargs), keras_class(**kwargs)
    out = np.asarray(ours(x))
    theirs(x)
    theirs.set_weights(ours.get_weights())
    return out, np.asarray(theirs(x))


def without_name_and_dtype(config):
    return {k: v for k, v in config.items() if k not in ("name", "dtype")}


# -- initializers.STFT ----------------------------------------------------------------------------
@pytest.mark.parametrize("side", ["real", "imag"])
@pytest.mark.parametrize("window", ["hann", "hamming", None, [0.2, 0.9, 1.0, 0.7, 0.1, 0.3]])
def test_stft_initializer_values_and_config_match_keras(side, window):
    for scaling, periodic in itertools.product(["density", "spectrum", None], [False, True]):
        ours = initializers.STFT(side, window, scaling, periodic)
        theirs = keras.initializers.STFT(side, window, scaling, periodic)
        values = np.asarray(ours((6, 1, 9)))
        # Keras computes the angles in float32: equal to its rounding
        np.testing.assert_allclose(values, np.asarray(theirs((6, 1, 9))), atol=2e-6)
        assert values.dtype == np.float32
        assert ours.get_config() == theirs.get_config()
        assert initializers.deserialize(initializers.serialize(ours)) == ours


def test_stft_initializer_is_the_dft_of_a_windowed_frame():
    """A frame times the real and imaginary kernels is NumPy's rfft of the windowed frame."""
    frame = np.random.default_rng(1).normal(size=16)
    real = initializers.STFT("real", "hann", None).kernel((16, 1, 9))[:, 0, :]
    imag = initializers.STFT("imag", "hann", None).kernel((16, 1, 9))[:, 0, :]
    want = np.fft.rfft(frame * np.hanning(16))
    np.testing.assert_allclose(frame @ real + 1j * (frame @ imag), want, atol=1e-12)


def test_stft_initializer_names_and_refusals():
    assert initializers.stft is initializers.STFTInitializer is initializers.STFT
    for name in ("stft", "STFT", "STFTInitializer"):
        assert isinstance(initializers.get(name), initializers.STFT)
        assert isinstance(keras.initializers.get(name), keras.initializers.STFT)
    for kwargs, argument in ((dict(side="both"), "side"), (dict(window="kaiser"), "window"),
                             (dict(scaling="l2"), "scaling")):
        with pytest.raises(ValueError, match=f"Received: {argument}="):
            initializers.STFT(**kwargs)
    with pytest.raises(ValueError, match="frame_length=4 values"):
        initializers.STFT(window=[1.0, 0.5])((4, 1, 3))


# -- STFTSpectrogram ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["log", "magnitude", "psd", "real", "imag", "angle", "stft"])
def test_stft_spectrogram_matches_keras(mode):
    for padding, expand_dims, data_format in itertools.product(
            ["valid", "same"], [False, True], ["channels_last", "channels_first"]):
        kwargs = dict(mode=mode, frame_length=10, frame_step=4, fft_length=16, padding=padding,
                      expand_dims=expand_dims, data_format=data_format, window="hamming",
                      periodic=True)
        x = SIGNALS if data_format == "channels_last" else SIGNALS.transpose(0, 2, 1)
        ours, theirs = twin_outputs(kwargs, x, keras.layers.STFTSpectrogram,
                                    layers.STFTSpectrogram)
        assert ours.shape == theirs.shape, kwargs
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=str(kwargs))


@pytest.mark.parametrize("kwargs", [
    dict(),                                             # Keras's defaults
    dict(frame_length=30, window=None, scaling=None),   # fft_length 32, step 15
    dict(frame_length=6, frame_step=6, fft_length=8, window=[0.1, 0.4, 1.0, 1.0, 0.4, 0.1],
         scaling="spectrum", mode="magnitude"),
])
def test_stft_spectrogram_defaults_and_windows_match_keras(kwargs):
    x = np.random.default_rng(2).normal(size=(2, 300, 1)).astype(np.float32)
    ours, theirs = twin_outputs(kwargs, x, keras.layers.STFTSpectrogram,
                                layers.STFTSpectrogram)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    # the kernels themselves are the initializer's (Keras's up to its float32 angles)
    ours_layer, theirs_layer = layers.STFTSpectrogram(**kwargs), keras.layers.STFTSpectrogram(
        **kwargs)
    ours_layer(x), theirs_layer(x)
    for mine, keras_weight in zip(ours_layer.get_weights(), theirs_layer.get_weights()):
        np.testing.assert_allclose(mine, keras_weight, atol=1e-5)


def test_stft_spectrogram_weights_config_and_shapes_as_keras():
    for mode, names in (("log", ["real_kernel", "imag_kernel"]), ("real", ["real_kernel"]),
                        ("imag", ["imag_kernel"])):
        ours = layers.STFTSpectrogram(mode=mode, frame_length=16)
        theirs = keras.layers.STFTSpectrogram(mode=mode, frame_length=16)
        ours(SIGNALS), theirs(SIGNALS)
        assert [w.name for w in ours.weights] == names
        assert [w.path.split("/")[-1] for w in theirs.weights] == names
    frozen = layers.STFTSpectrogram(frame_length=8, trainable=False)
    frozen(SIGNALS)
    assert frozen.trainable_weights == [] and len(frozen.weights) == 2
    kwargs = dict(mode="psd", frame_length=12, frame_step=5, fft_length=32, window=None,
                  periodic=True, scaling="spectrum", padding="same", expand_dims=True)
    ours, theirs = layers.STFTSpectrogram(**kwargs), keras.layers.STFTSpectrogram(**kwargs)
    config = ours.get_config()
    assert without_name_and_dtype(config) == without_name_and_dtype(theirs.get_config())
    assert layers.STFTSpectrogram.from_config(config).get_config() == config
    for shape in ((None, 120, 2), (None, None, 3)):
        symbolic = ours(kilnet.Input(shape=shape[1:]))
        assert symbolic.shape == theirs.compute_output_shape(shape)


def test_stft_spectrogram_refusals():
    for kwargs, argument in ((dict(mode="power"), "mode"), (dict(padding="causal"), "padding"),
                             (dict(window="blackman"), "window"),
                             (dict(frame_length=8, frame_step=9), "frame_step"),
                             (dict(frame_length=8, fft_length=4), "fft_length"),
                             (dict(data_format="channels_middle"), "data_format")):
        with pytest.raises(ValueError, match=f"Received: {argument}="):
            layers.STFTSpectrogram(**kwargs)
    with pytest.warns(UserWarning, match="power of two"):
        layers.STFTSpectrogram(frame_length=8, fft_length=12)
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        layers.STFTSpectrogram(frame_length=8)(np.ones((1, 16, 1), np.int32))
    with pytest.raises(ValueError, match="add a channel axis"):
        layers.STFTSpectrogram(frame_length=8)(kilnet.Input(shape=(16,)))


# -- MelSpectrogram -------------------------------------------------------------------------------
MEL_SETTINGS = [
    dict(fft_length=64, sequence_stride=16, num_mel_bins=10, sampling_rate=8000),
    dict(fft_length=64, sequence_stride=20, sequence_length=40, window="hamming",
         num_mel_bins=6, sampling_rate=4000, min_freq=100.0, max_freq=1500.0, mag_exp=1.0,
         top_db=20.0, ref_power=2.0, min_power=1e-6),
    dict(fft_length=32, sequence_stride=8, window=None, num_mel_bins=5, sampling_rate=1000,
         power_to_db=False),
]


@pytest.mark.parametrize("kwargs", MEL_SETTINGS)
def test_mel_spectrogram_matches_keras_batched_and_unbatched(kwargs):
    signals = SIGNALS[:, :, 0].repeat(4, axis=1)   # (3, 480)
    ours, theirs = layers.MelSpectrogram(**kwargs), keras.layers.MelSpectrogram(**kwargs)
    unbatched = kwargs is MEL_SETTINGS[0]   # one signal (samples,): checked once
    for x in (signals, signals[1]) if unbatched else (signals,):
        want = np.asarray(theirs(x))
        got = np.asarray(ours(x))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert without_name_and_dtype(ours.get_config()) == without_name_and_dtype(
        theirs.get_config())
    assert layers.MelSpectrogram.from_config(ours.get_config()).get_config() == \
        ours.get_config()


def test_mel_spectrogram_floor_spans_the_batch_as_keras():
    """top_db floors every signal at the loudest value of the whole batch, as Keras's."""
    loud, quiet = SIGNALS[0, :, 0].repeat(4), 1e-4 * SIGNALS[1, :, 0].repeat(4)
    kwargs = dict(fft_length=32, sequence_stride=16, num_mel_bins=4, sampling_rate=1000,
                  top_db=30.0)
    together = np.asarray(layers.MelSpectrogram(**kwargs)(np.stack([loud, quiet])))
    alone = np.asarray(layers.MelSpectrogram(**kwargs)(quiet))
    want = np.asarray(keras.layers.MelSpectrogram(**kwargs)(np.stack([loud, quiet])))
    np.testing.assert_allclose(together, want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(together[1], alone)


def test_mel_spectrogram_symbolic_shape_is_the_computed_one():
    """Keras's compute_output_shape says (n + stride + 1) // stride frames, one too many
    when n + 1 is a multiple of the stride; kilnet declares what the layer computes."""
    kwargs = dict(fft_length=32, sequence_stride=8, num_mel_bins=4, sampling_rate=1000)
    for samples in (63, 64):
        computed = np.asarray(keras.layers.MelSpectrogram(**kwargs)(
            np.zeros((1, samples), np.float32))).shape
        symbolic = layers.MelSpectrogram(**kwargs)(kilnet.Input(shape=(samples,)))
        assert symbolic.shape == (None,) + computed[1:]


def test_mel_spectrogram_refusals():
    for kwargs, argument in ((dict(fft_length=64, sequence_length=128), "fft_length"),
                             (dict(num_mel_bins=0), "num_mel_bins"),
                             (dict(window="kaiser"), "window"),
                             (dict(min_freq=9000.0), "min_freq")):
        with pytest.raises(ValueError, match=f"Received: {argument}="):
            layers.MelSpectrogram(**kwargs)
    with pytest.raises(ValueError, match="ops.squeeze"):
        layers.MelSpectrogram()(kilnet.Input(shape=(16000, 1)))


# -- models and files -----------------------------------------------------------------------------
def audio_model():
    signal = kilnet.Input(shape=(200,))
    mel = layers.MelSpectrogram(fft_length=32, sequence_stride=16, num_mel_bins=6,
                                sampling_rate=1000)(signal)
    frames = layers.STFTSpectrogram(mode="log", frame_length=16, frame_step=8,
                                    padding="same")(layers.Reshape((200, 1))(signal))
    joined = layers.Concatenate()([layers.Flatten()(mel), layers.Flatten()(frames)])
    return kilnet.Model(signal, layers.Dense(2)(joined))


def test_model_saves_and_loads_as_kilnet_and_keras_files(tmp_path):
    model = audio_model()
    x = np.random.default_rng(3).uniform(-1, 1, (4, 200)).astype(np.float32)
    before = np.asarray(model.predict(x, verbose=0))
    model.save(tmp_path / "m.kilnet")
    again = kilnet.models.load_model(tmp_path / "m.kilnet")
    np.testing.assert_array_equal(np.asarray(again.predict(x, verbose=0)), before)
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), before, rtol=1e-4, atol=1e-4)
    # and back: a file Keras wrote, with its STFT kernels
    theirs.save(tmp_path / "k.keras")
    back = kilnet.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(np.asarray(back.predict(x, verbose=0)),
                               theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_spectrogram_model_trains():
    signal = kilnet.Input(shape=(64, 1))
    frames = layers.STFTSpectrogram(mode="magnitude", frame_length=8, frame_step=4)(signal)
    model = kilnet.Model(signal, layers.Dense(1)(layers.Flatten()(frames)))
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(4).normal(size=(16, 64, 1)).astype(np.float32)
    kernel = model.layers[1].get_weights()[0]
    model.fit(x, np.ones((16, 1), np.float32), epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(model.layers[1].get_weights()[0], kernel)   # trainable kernels


# -- audio_dataset_from_directory -----------------------------------------------------------------
def write_pcm16(path, samples, rate=16000):
    """A 16-bit PCM WAV of int16 `samples` (frames, channels), with the standard library."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(samples.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.astype("<i2").tobytes())


def audio_folder(root, per_class=(4, 3, 3)):
    rng = np.random.default_rng(5)
    for index, count in enumerate(per_class):
        folder = root / f"class_{'abc'[index]}"
        os.makedirs(folder / "deeper")
        for i in range(count):
            samples = rng.integers(-32768, 32768, (30 + 7 * i + index, 1))
            write_pcm16(folder / ("deeper" if i == 1 else "") / f"clip{i}.wav", samples)
        (folder / "notes.txt").write_text("not audio")   # skipped, as in Keras
    return root


def keras_decoding(path, sampling_rate=None, output_sequence_length=None):
    """The samples Keras's source decodes from `path` (its SciPy reading path)."""
    from scipy import signal
    from scipy.io import wavfile

    rate, audio = wavfile.read(path)
    audio = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio
    audio = audio[:, None] if audio.ndim == 1 else audio
    if sampling_rate is not None and rate != sampling_rate:
        count = max(1, int(round(len(audio) * sampling_rate / rate)))
        audio = signal.resample(audio, count, axis=0).astype(np.float32)
    if output_sequence_length is not None:
        audio = audio[:output_sequence_length]
        audio = np.pad(audio, [(0, output_sequence_length - len(audio)), (0, 0)])
    return audio


@pytest.mark.parametrize("subset", ["training", "validation"])
def test_same_files_and_labels_as_keras(tmp_path, subset):
    root = audio_folder(tmp_path)
    ds = utils.audio_dataset_from_directory(root, batch_size=4, seed=11, validation_split=0.3,
                                            subset=subset, verbose=False)
    paths, labels, _ = dataset_utils.index_directory(str(root), "inferred", formats=(".wav",),
                                                     shuffle=True, seed=11, verbose=False)
    paths, labels = dataset_utils.get_training_or_validation_split(paths, labels, 0.3, subset)
    assert ds.file_paths == paths
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.class_names == ["class_a", "class_b", "class_c"]


def test_batches_are_padded_to_their_longest_file(tmp_path):
    root = audio_folder(tmp_path)
    ds = utils.audio_dataset_from_directory(root, batch_size=3, shuffle=False, verbose=False)
    x, y = ds[0]
    clips = [keras_decoding(p) for p in ds.file_paths[:3]]
    assert x.shape == (3, max(len(c) for c in clips), 1) and x.dtype == np.float32
    for row, clip in zip(x, clips):
        np.testing.assert_array_equal(row[:len(clip)], clip)
        assert not row[len(clip):].any()
    assert y.dtype == np.int32 and y.tolist() == [0, 0, 0]
    one = utils.audio_dataset_from_directory(root, batch_size=None, shuffle=False,
                                             verbose=False)
    assert one[0][0].shape == (len(clips[0]), 1)


@pytest.mark.parametrize("sampling_rate,length", [(None, 33), (None, 80), (8000, 20),
                                                  (22050, None)])
def test_samples_follow_keras_decoding_rules(tmp_path, sampling_rate, length):
    from scipy.io import wavfile

    os.makedirs(tmp_path / "x")
    rng = np.random.default_rng(6)
    write_pcm16(tmp_path / "x" / "a.wav", rng.integers(-32768, 32768, (41, 2)))
    wavfile.write(tmp_path / "x" / "b.wav", 16000,
                  rng.uniform(-1, 1, (57, 2)).astype(np.float32))   # 32-bit float WAV
    ds = utils.audio_dataset_from_directory(tmp_path, batch_size=None, shuffle=False,
                                            sampling_rate=sampling_rate,
                                            output_sequence_length=length, verbose=False)
    for i, path in enumerate(ds.file_paths):
        want = keras_decoding(path, sampling_rate, length)
        got = ds[i][0]
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_label_modes_subsets_and_refusals(tmp_path):
    root = audio_folder(tmp_path, per_class=(3, 2))
    train, val = utils.audio_dataset_from_directory(
        root, label_mode="binary", seed=3, validation_split=0.4, subset="both",
        output_sequence_length=40, verbose=False)
    assert len(train.file_paths) == 3 and len(val.file_paths) == 2
    x, y = next(iter(train))
    assert x.shape == (3, 40, 1) and y.shape == (3, 1) and y.dtype == np.float32
    categorical = utils.audio_dataset_from_directory(root, label_mode="categorical",
                                                     verbose=False)
    assert categorical[0][1].shape == (5, 2)
    no_labels = utils.audio_dataset_from_directory(root, labels=None, verbose=False)
    assert isinstance(no_labels[0], np.ndarray) and no_labels[0].ndim == 3
    assert utils.audio_dataset_from_directory is kilnet.utils.audio_dataset_from_directory
    for kwargs, text in ((dict(ragged=True), "ragged=True"),
                         (dict(sampling_rate=0), "Received: sampling_rate=0"),
                         (dict(output_sequence_length=2.5), "Received: output_sequence_length"),
                         (dict(label_mode="sparse"), "Received: label_mode")):
        with pytest.raises(ValueError, match=text):
            utils.audio_dataset_from_directory(root, verbose=False, **kwargs)


def test_unsupported_wav_files_are_named(tmp_path):
    os.makedirs(tmp_path / "x")
    path = tmp_path / "x" / "deep.wav"
    with wave.open(str(path), "wb") as f:   # 24-bit PCM
        f.setnchannels(1)
        f.setsampwidth(3)
        f.setframerate(8000)
        f.writeframes(bytes(30))
    ds = utils.audio_dataset_from_directory(tmp_path, verbose=False)
    with pytest.raises(ValueError, match="deep.wav: 24-bit PCM WAV is not supported"):
        ds[0]
    path.write_bytes(b"ID3 not a wav file at all")
    with pytest.raises(ValueError, match="deep.wav is not a WAV file"):
        utils.audio_dataset_from_directory(tmp_path, verbose=False)[0]
