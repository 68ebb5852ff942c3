"""kilnet.utils: Keras's keras.utils helpers, and the seeding that the rest of kilnet uses.

One module per concept: `_seeding` (where the first random key comes from), `_arrays`
(to_categorical, normalize, pad_sequences), `_dataset` (ArrayDataset, split_dataset),
`_timeseries`, `_from_directory` (image and text folders), `_audio_files` (WAV folders),
`_images` (one image file in and out), `_packing` (a batch's (x, y, sample_weight)),
`_get_file` (cached, verified downloads and safe extraction), `_plot_model` and
`_feature_space` (FeatureSpace, imported when first used).

Example:
    >>> import kilnet
    >>> kilnet.utils.pad_sequences([[1, 2], [3]]).tolist()
    [[1, 2], [0, 3]]
"""

from kilnet.utils._arrays import normalize, pad_sequences, to_categorical
from kilnet.utils._audio_files import audio_dataset_from_directory
from kilnet.utils._dataset import ArrayDataset, split_dataset
from kilnet.utils._from_directory import image_dataset_from_directory, text_dataset_from_directory
from kilnet.utils._get_file import extract_archive, get_file, hash_file, validate_file
from kilnet.utils._images import (array_to_img, img_to_array, load_img, save_img,
                                 smart_resize)
from kilnet.utils._packing import pack_x_y_sample_weight, unpack_x_y_sample_weight
from kilnet.utils._plot_model import plot_model
from kilnet.utils._seeding import (
    clear_session,
    next_seed,
    numpy_rng,
    raw_key,
    seed_is_set,
    set_random_seed,
)
from kilnet.utils._timeseries import timeseries_dataset_from_array
from kilnet.progress import Progbar
# Keras's keras.utils.PyDataset (and its old name Sequence): batches by index, kilnet.loaders.
from kilnet.loaders import PyDataset  # noqa: E402  isort: skip

Sequence = PyDataset

# The seed state itself, where tests/conftest.py saves and restores it around each test
# (kilnet.utils._seed before utils became a package).
from kilnet.utils._seeding import _seed  # noqa: E402,F401  isort: skip

# Keras's utils names whose home is elsewhere in kilnet: kilnet.saving (the registry of your
# objects) and the functional graph (layers). Those modules build on kilnet.utils, so these
# are looked up when first used (PEP 562) instead of imported here, which would be a circle.
_ELSEWHERE = {
    "register_keras_serializable": "kilnet.saving", "get_custom_objects": "kilnet.saving",
    "custom_object_scope": "kilnet.saving", "CustomObjectScope": "kilnet.saving",
    "get_registered_name": "kilnet.saving", "get_registered_object": "kilnet.saving",
    "is_keras_tensor": "kilnet.backend",
    "serialize_keras_object": "kilnet.serialization",
    "deserialize_keras_object": "kilnet.serialization",
    "standardize_dtype": "kilnet.backend", "enable_interactive_logging": "kilnet.config",
    "disable_interactive_logging": "kilnet.config",
    "is_interactive_logging_enabled": "kilnet.config",
}


def __getattr__(name):
    if name == "FeatureSpace":  # built on kilnet.layers, which imports kilnet.utils
        from kilnet.utils._feature_space import FeatureSpace
        return FeatureSpace
    if name == "get_source_inputs":
        from kilnet.layers._node import source_inputs
        return source_inputs
    if name in _ELSEWHERE:
        import importlib
        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module 'kilnet.utils' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "PyDataset", "Sequence", "Progbar", "get_source_inputs", "FeatureSpace", *_ELSEWHERE,
    "ArrayDataset",
    "array_to_img",
    "audio_dataset_from_directory",
    "clear_session",
    "extract_archive",
    "get_file",
    "hash_file",
    "image_dataset_from_directory",
    "img_to_array",
    "load_img",
    "next_seed",
    "normalize",
    "numpy_rng",
    "pack_x_y_sample_weight",
    "pad_sequences",
    "plot_model",
    "raw_key",
    "save_img",
    "smart_resize",
    "seed_is_set",
    "set_random_seed",
    "split_dataset",
    "text_dataset_from_directory",
    "timeseries_dataset_from_array",
    "to_categorical",
    "unpack_x_y_sample_weight",
    "validate_file",
]
