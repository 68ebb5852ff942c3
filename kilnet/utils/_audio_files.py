"""audio_dataset_from_directory: WAV files in class folders as an ArrayDataset, as
keras.utils.audio_dataset_from_directory.

Files are listed, labelled, shuffled and split by kilnet.utils._from_directory's helpers, so
one seed picks the same files for each subset as Keras would. Each file is decoded when a batch
is read: 16-bit PCM and 32-bit float WAV, to float32 samples (frames, channels) in [-1, 1] as
tf.audio.decode_wav gives them. The RIFF chunks are read with `struct` and NumPy rather than
the `wave` module, which refuses float WAV files. Resampling to `sampling_rate` is Fourier
resampling, the same as Keras's scipy-based path (`scipy.signal.resample`), written with
numpy.fft so that SciPy is not needed.
"""

from __future__ import annotations

import struct

import numpy as np

from kilnet.utils._from_directory import check_label_mode, datasets_from_files

AUDIO_FORMATS = (".wav",)
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
# (format tag, bits per sample) -> (NumPy dtype of the samples, scale to [-1, 1])
_ENCODINGS = {(_PCM, 16): ("<i2", 1.0 / 32768.0), (_FLOAT, 32): ("<f4", 1.0)}


# -- one WAV file ---------------------------------------------------------------------------------
def read_wav(path) -> tuple[np.ndarray, int]:
    """(samples, sampling rate) of a WAV file: float32 samples (frames, channels), 16-bit PCM
    scaled by 1 / 32768 into [-1, 1) and 32-bit float as stored (tf.audio.decode_wav's
    convention). Other encodings are refused with the file's name.

    Example:
        >>> import tempfile, wave
        >>> path = tempfile.mkdtemp() + "/tone.wav"
        >>> with wave.open(path, "wb") as f:
        ...     f.setnchannels(1); f.setsampwidth(2); f.setframerate(8000)
        ...     f.writeframes(np.array([0, 16384, -32768], "<i2").tobytes())
        >>> samples, rate = read_wav(path)
        >>> samples[:, 0].tolist(), rate
        ([0.0, 0.5, -1.0], 8000)
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a WAV file (it has no RIFF/WAVE header). Remove it "
                         "from the folder or convert it to WAV.")
    chunks = _chunks(data, path)
    if b"fmt " not in chunks or b"data" not in chunks:
        raise ValueError(f"{path}: the WAV file has no 'fmt ' or no 'data' chunk (a truncated "
                         "file?). Remove or repair it.")
    tag, channels, rate, bits = _format(chunks[b"fmt "], path)
    if (tag, bits) not in _ENCODINGS:
        kind = {_PCM: "PCM", _FLOAT: "float"}.get(tag, f"format tag {tag}")
        raise ValueError(f"{path}: {bits}-bit {kind} WAV is not supported; kilnet decodes "
                         "16-bit PCM and 32-bit float WAV. Convert the file, e.g. with "
                         "`ffmpeg -i in.wav -c:a pcm_s16le out.wav`.")
    dtype, scale = _ENCODINGS[(tag, bits)]
    frame_bytes = channels * bits // 8
    body = chunks[b"data"]
    frames = np.frombuffer(body[:len(body) // frame_bytes * frame_bytes], dtype=dtype)
    return (frames.reshape(-1, channels) * scale).astype(np.float32), rate


def _chunks(data: bytes, path) -> dict:
    """The RIFF chunks after the WAVE header, by id (the first of each id)."""
    chunks, offset = {}, 12
    while offset + 8 <= len(data):
        chunk_id = data[offset:offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        chunks.setdefault(chunk_id, data[offset + 8:offset + 8 + size])
        offset += 8 + size + (size & 1)   # chunks start on even offsets
    return chunks


def _format(fmt: bytes, path) -> tuple[int, int, int, int]:
    """(format tag, channels, sampling rate, bits per sample) of a 'fmt ' chunk; an
    extensible format's tag is its sub-format's."""
    if len(fmt) < 16:
        raise ValueError(f"{path}: the WAV file's 'fmt ' chunk is too short. Remove or repair "
                         "the file.")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        (tag,) = struct.unpack_from("<H", fmt, 24)   # the sub-format GUID's first field
    if channels < 1:
        raise ValueError(f"{path}: the WAV file declares {channels} channels. Remove or repair "
                         "the file.")
    return tag, channels, rate, bits


def resample(samples: np.ndarray, count: int) -> np.ndarray:
    """`samples` (frames, channels) resampled to `count` frames by Fourier resampling (the
    spectrum cut or zero-padded, as scipy.signal.resample for real signals).

    Example:
        >>> resample(np.ones((4, 1), np.float32), 8)[:, 0].tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    length = samples.shape[0]
    kept = min(count, length)
    spectrum = np.fft.rfft(samples, axis=0)[:kept // 2 + 1]
    if kept % 2 == 0 and count != length:
        # the unpaired Nyquist bin: folded in when shrinking, split when growing
        spectrum[kept // 2] *= 2.0 if count < length else 0.5
    return np.fft.irfft(spectrum * (count / length), n=count, axis=0).astype(np.float32)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """`samples` (frames, channels) cut or zero-padded at the end to `length` frames.

    Example:
        >>> fit_length(np.ones((2, 1)), 3)[:, 0].tolist()
        [1.0, 1.0, 0.0]
    """
    samples = samples[:length]
    return np.pad(samples, [(0, length - samples.shape[0]), (0, 0)])


# -- the dataset ---------------------------------------------------------------------------------
class AudioFiles:
    """Rows read on demand: `[indices]` decodes those WAV files into one float32 array
    (rows, frames, channels), each resampled and cut or padded to `output_sequence_length`,
    else zero-padded to the longest of the rows (Keras's padded_batch)."""

    def __init__(self, paths, sampling_rate, output_sequence_length):
        self.paths = paths
        self.sampling_rate, self.length = sampling_rate, output_sequence_length

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, rows):
        clips = [self.load(self.paths[int(i)]) for i in np.atleast_1d(rows)]
        if len({clip.shape[1] for clip in clips}) > 1:
            raise ValueError("WAV files with different channel counts cannot share a batch: "
                             f"{[self.paths[int(i)] for i in np.atleast_1d(rows)]}. Convert "
                             "them to one channel count.")
        longest = max(clip.shape[0] for clip in clips)
        return np.stack([fit_length(clip, longest) for clip in clips])

    def load(self, path) -> np.ndarray:
        samples, rate = read_wav(path)
        if self.sampling_rate is not None and rate != self.sampling_rate and len(samples):
            count = max(1, int(round(len(samples) * self.sampling_rate / rate)))
            samples = resample(samples, count)
        if self.length is not None:
            samples = fit_length(samples, self.length)
        return samples


def audio_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, batch_size=32, sampling_rate=None,
                                 output_sequence_length=None, ragged=False, shuffle=True,
                                 seed=None, validation_split=None, subset=None,
                                 follow_links=False, verbose=True):
    """An ArrayDataset of (audio, labels) from a folder of class subfolders of .wav files, as
    keras.utils.audio_dataset_from_directory: float32 audio (batch, frames, channels) in
    [-1, 1]; labels from the sorted subfolder names (`class_names` attribute) as int32 ids,
    one-hot rows ("categorical") or float32 0/1 ("binary"), or none (`labels=None` or
    `label_mode=None`). `subset="both"` returns [training, validation]; the dataset also has
    `file_paths`.

    Args:
        sampling_rate: resample every file to this rate (Fourier resampling, as Keras's
            scipy-based path) before cutting; None keeps each file's rate.
        output_sequence_length: cut or zero-pad every file to this many frames; None pads
            each batch to its longest file.
        ragged: False only (ArrayDataset batches are dense arrays).
        The other arguments are image_dataset_from_directory's.

    Example:
        >>> import os, tempfile, wave, kilnet
        >>> root = tempfile.mkdtemp()
        >>> for name, frames in (("no", 3), ("yes", 5)):
        ...     os.mkdir(os.path.join(root, name))
        ...     with wave.open(os.path.join(root, name, "a.wav"), "wb") as f:
        ...         f.setnchannels(1); f.setsampwidth(2); f.setframerate(16000)
        ...         f.writeframes(bytes(2 * frames))
        >>> ds = kilnet.utils.audio_dataset_from_directory(root, shuffle=False)
        Found 2 files belonging to 2 classes.
        >>> ds.class_names, ds[0][0].shape, ds[0][1].tolist()
        (['no', 'yes'], (2, 5, 1), [0, 1])
    """
    check_label_mode(labels, label_mode)
    if ragged:
        raise ValueError("ragged=True is not supported: kilnet's datasets hold dense arrays. "
                         "Leave ragged=False: batches are zero-padded to their longest file, "
                         "or give output_sequence_length.")
    _check_optional_positive(sampling_rate, "sampling_rate")
    _check_optional_positive(output_sequence_length, "output_sequence_length")

    def rows(paths):
        return AudioFiles(paths, sampling_rate, output_sequence_length)

    return datasets_from_files(directory, labels, label_mode, class_names, batch_size,
                               shuffle, seed, validation_split, subset, follow_links,
                               AUDIO_FORMATS, rows, "audio", verbose)


def _check_optional_positive(value, argument):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                              or value < 1):
        raise ValueError(f"{argument} must be None or a positive integer. Received: "
                         f"{argument}={value!r}")
