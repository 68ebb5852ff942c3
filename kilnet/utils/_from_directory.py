"""image_dataset_from_directory and text_dataset_from_directory: files in class folders as
an ArrayDataset.

Files are listed, labelled, shuffled and split exactly as Keras does (sorted class folders,
sorted walk, NumPy RandomState(seed) shuffle of the paths, the last `validation_split` of them
for validation), so one seed picks the same files for each subset as Keras would. Images are
decoded with Pillow when a batch is read, never all at once, to the pixels TensorFlow gives
Keras (kilnet.utils._tf_pixels), and resized as Keras's `ops.image.resize` does on JAX, cropped
or padded to the target's aspect ratio as Keras's `smart_resize` and `tf.image.resize_with_pad`.
"""

from __future__ import annotations

import os

import numpy as np

from kilnet.utils._arrays import to_categorical
from kilnet.utils._dataset import ArrayDataset
from kilnet.utils._tf_pixels import keras_pixels

IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_CHANNELS = {"rgb": 3, "rgba": 4, "grayscale": 1}
_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5")
_KERAS_ONLY_INTERPOLATIONS = ("area", "gaussian", "mitchellcubic")
MAX_IMAGE_PIXELS = 89_478_485   # Pillow's decompression-bomb limit (about 0.25 GiB as RGB)


# -- listing files, as Keras's dataset_utils.index_directory ------------------------------------
def index_directory(directory, labels, formats, class_names=None, shuffle=True, seed=None,
                    follow_links=False):
    """(file paths, integer labels or None, class names) of the files under `directory`
    whose extension is in `formats`, in Keras's order."""
    if not os.path.isdir(directory):
        raise ValueError(f"directory must be an existing folder. Received: "
                         f"directory={directory!r}")
    if labels == "inferred":
        folders = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names) <= set(folders):
                raise ValueError(f"class_names must name subfolders of {directory!r}. "
                                 f"Expected some of: {folders}. Received: "
                                 f"class_names={list(class_names)}")
            folders = list(class_names)
    else:
        if class_names is not None:
            raise ValueError("class_names can only be given with labels='inferred'. Received: "
                             f"labels={labels!r}, class_names={class_names!r}")
        folders = [""]
    paths, ids = [], []
    for index, folder in enumerate(folders):
        found = _files_under(os.path.join(directory, folder), follow_links, formats)
        paths += [os.path.join(directory, folder, rel) if folder else os.path.join(directory, rel)
                  for rel in found]
        ids += [index] * len(found)
    if labels == "inferred":
        labels = np.array(ids, dtype=np.int32)
        names = folders
    elif labels is None:
        names = None
    else:
        labels = _given_labels(labels, len(paths), directory)
        names = [str(label) for label in sorted(set(labels.tolist()))]
    if shuffle:
        seed = np.random.randint(1e6) if seed is None else seed
        np.random.RandomState(seed).shuffle(paths)
        if labels is not None:
            np.random.RandomState(seed).shuffle(labels)
    return paths, labels, names


def _files_under(folder, follow_links, formats):
    """Relative paths of the matching files, in Keras's sorted-walk order."""
    found = []
    for root, _, files in sorted(os.walk(folder, followlinks=follow_links), key=lambda w: w[0]):
        for name in sorted(files):
            if name.lower().endswith(formats):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return found


def _given_labels(labels, count, directory):
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError("labels must be 'inferred', None, or a list of integer labels, one per "
                         f"file in sorted order. Received: labels={labels!r}")
    if len(labels) != count:
        raise ValueError(f"labels has {len(labels)} entries but {count} files were found in "
                         f"{directory!r}; give one label per file.")
    return np.asarray(labels, dtype=np.int32)


def check_split_arguments(validation_split, subset, shuffle, seed):
    """Keras's rules for validation_split and subset."""
    if validation_split and not 0 < validation_split < 1:
        raise ValueError("validation_split must be between 0 and 1. "
                         f"Received: validation_split={validation_split!r}")
    if bool(validation_split) != bool(subset):
        raise ValueError("Give validation_split and subset together (or neither). Received: "
                         f"validation_split={validation_split!r}, subset={subset!r}")
    if subset not in ("training", "validation", "both", None):
        raise ValueError("subset must be 'training', 'validation' or 'both'. "
                         f"Received: subset={subset!r}")
    if validation_split and shuffle and seed is None:
        raise ValueError("With validation_split and shuffle=True, give a seed, so that the "
                         "training and validation subsets do not overlap.")


def split_files(paths, labels, validation_split, subset):
    """The training (all but the last fraction) or validation (the last) files."""
    if not validation_split:
        return paths, labels
    n_val = int(validation_split * len(paths))
    cut = len(paths) - n_val
    if subset == "training":
        return paths[:cut] if n_val else [], None if labels is None else labels[:cut]
    return paths[cut:], None if labels is None else labels[cut:]


def _label_array(labels, label_mode, num_classes):
    if label_mode == "binary":
        return labels.astype(np.float32).reshape(-1, 1)
    if label_mode == "categorical":
        return to_categorical(labels, num_classes).astype(np.float32)   # tf.one_hot's, as Keras
    return labels.astype(np.int32)


def check_label_mode(labels, label_mode):
    """Keras's rules for the labels and label_mode arguments.

    Example:
        >>> check_label_mode("inferred", "sparse")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: label_mode must be ... Received: label_mode='sparse'
    """
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError("labels must be 'inferred', None, or a list of integer labels, one per "
                         f"file in sorted order. Received: labels={labels!r}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError("label_mode must be 'int', 'categorical', 'binary' or None. "
                         f"Received: label_mode={label_mode!r}")


def datasets_from_files(directory, labels, label_mode, class_names, batch_size, shuffle,
                        seed, validation_split, subset, follow_links, formats, make_rows, kind,
                        verbose):
    """The shared path of the *_dataset_from_directory functions: list, split and wrap the
    files; `make_rows(paths)` gives the rows that read them (an object with len() and
    [indices]), `kind` names the files in messages.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> for name in ("a.dat", "b.dat"):
        ...     open(os.path.join(root, name), "w").close()
        >>> ds = datasets_from_files(root, None, None, None, 2, False, None, None, None, False,
        ...                          (".dat",), lambda paths: np.array(paths), "data", False)
        >>> [os.path.basename(p) for p in ds[0]]
        ['a.dat', 'b.dat']
    """
    check_split_arguments(validation_split, subset, shuffle, seed)
    if labels is None or label_mode is None:
        labels = label_mode = None
    seed = np.random.randint(1e6) if seed is None else seed
    paths, ids, names = index_directory(directory, labels, formats, class_names, shuffle,
                                        seed, follow_links)
    if label_mode == "binary" and len(names) != 2:
        raise ValueError("label_mode='binary' needs exactly 2 classes. "
                         f"Received: class_names={names}")
    if verbose:
        print(f"Found {len(paths)} files" + ("." if ids is None else
                                             f" belonging to {len(names)} classes."))
    subsets = ("training", "validation") if subset == "both" else (subset,)
    out = []
    for part in subsets:
        part_paths, part_ids = split_files(paths, ids, validation_split, part)
        if validation_split:   # Keras prints it whatever `verbose` says
            print(f"Using {len(part_paths)} files for {part}.")
        if not part_paths:
            raise ValueError(f"No {kind} files found for subset={part!r} in {directory!r}. "
                             f"Allowed formats: {formats}")
        y = None if part_ids is None else _label_array(part_ids, label_mode, len(names))
        # Keras shuffles the training subset (or the whole set) again per pass, never a
        # validation subset made by subset="both".
        reshuffle = shuffle and not (subset == "both" and part == "validation")
        ds = ArrayDataset(make_rows(part_paths), y, batch_size=batch_size, shuffle=reshuffle,
                          seed=seed, class_names=names)
        ds.file_paths = list(part_paths)
        out.append(ds)
    return out if subset == "both" else out[0]


# -- images -----------------------------------------------------------------------------------
class ImageFiles:
    """Rows read on demand: `[indices]` decodes and resizes those images (float32)."""

    def __init__(self, paths, image_size, channels, interpolation, crop_to_aspect_ratio,
                 pad_to_aspect_ratio=False):
        self.paths = paths
        self.image_size, self.channels = tuple(image_size), channels
        self.interpolation, self.crop = interpolation, crop_to_aspect_ratio
        self.pad = pad_to_aspect_ratio

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, rows):
        return np.stack([self.load(self.paths[int(i)]) for i in np.atleast_1d(rows)])

    def load(self, path) -> np.ndarray:
        import jax

        pixels = read_image(path, self.channels)
        if self.crop:
            pixels = _center_crop(pixels, *self.image_size)
        size, (top, left) = self.image_size, (0, 0)
        if self.pad:
            size, (top, left) = fit_inside(pixels.shape[:2], self.image_size)
        method = "nearest" if self.interpolation == "nearest" else self.interpolation
        with jax.default_device(jax.devices("cpu")[0]):
            resized = jax.image.resize(pixels, size + (self.channels,), method=method,
                                       antialias=False)
        resized = np.asarray(resized, dtype=np.float32)
        if not self.pad:
            return resized
        out = np.zeros(self.image_size + (self.channels,), np.float32)
        out[top:top + size[0], left:left + size[1]] = resized
        return out


def fit_inside(shape, target):
    """((height, width), (top, left)): the size an image of `shape` (height, width) is resized
    to so that it fits inside `target` without distortion, and where it goes in the zeros
    around it, as `tf.image.resize_with_pad` (Keras's pad_to_aspect_ratio) computes them, in
    float32: the smaller scale of the two sides, the size rounded down, the top and left
    padding half of what the unrounded size leaves, rounded down (the rest goes below and to
    the right).

    Example:
        >>> fit_inside((20, 24), (20, 40))
        ((20, 24), (0, 8))
        >>> fit_inside((30, 20), (10, 10))
        ((10, 6), (0, 1))
    """
    height, width = np.float32(shape[0]), np.float32(shape[1])
    target_height, target_width = np.float32(target[0]), np.float32(target[1])
    ratio = max(width / target_width, height / target_height)
    new_height, new_width = height / ratio, width / ratio
    top = max(0, int(np.floor((target_height - new_height) / np.float32(2))))
    left = max(0, int(np.floor((target_width - new_width) / np.float32(2))))
    # at least one pixel: an image 100 times wider than the target (TensorFlow fails there)
    size = (max(1, int(np.floor(new_height))), max(1, int(np.floor(new_width))))
    return size, (top, left)


def read_image(path, channels) -> np.ndarray:
    """(height, width, channels) float32 pixels of an image file, through Pillow: the first
    frame of a GIF, with the requested channels, as TensorFlow decodes them for Keras
    (kilnet.utils._tf_pixels). Refuses an image whose header claims more than
    MAX_IMAGE_PIXELS pixels before decoding it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            check_pixel_count(image, path, "Shrink it or remove it from the folder.")
            pixels = keras_pixels(image, channels).astype(np.float32)
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: Pillow refused it as a decompression bomb ({error}). "
                         "Shrink it or remove it from the folder.") from error
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path} could not be decoded as an image ({error}). Remove or "
                         "repair the file.") from error
    return pixels


def check_pixel_count(image, where, fix=""):
    """Refuse an opened (not yet decoded) Pillow image whose header claims more than
    MAX_IMAGE_PIXELS pixels."""
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{where}: the image claims {width}x{height} pixels, more than the "
                         f"{MAX_IMAGE_PIXELS} kilnet decodes (a decompression bomb?). {fix}"
                         .rstrip())


def _center_crop(pixels, height, width):
    """The largest centered box with the target's aspect ratio (Keras's crop rule)."""
    h, w = pixels.shape[:2]
    crop_h = max(min(h, int(float(w * height) / width)), 1)
    crop_w = max(min(w, int(float(h * width) / height)), 1)
    top, left = int(float(h - crop_h) / 2), int(float(w - crop_w) / 2)
    return pixels[top:top + crop_h, left:left + crop_w]


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, verbose=True):
    """An ArrayDataset of (images, labels) from a folder of class subfolders, as
    keras.utils.image_dataset_from_directory: float32 images of `image_size` (height, width)
    with 1, 3 or 4 channels (`color_mode` "grayscale", "rgb", "rgba"); labels from the sorted
    subfolder names (`class_names` attribute) as int32 ids, one-hot rows ("categorical") or
    float32 0/1 ("binary"). Files whose extension is not .bmp, .gif, .jpeg, .jpg or .png are
    skipped, as in Keras. `subset="both"` returns [training, validation]. The dataset also
    has `file_paths`.

    The pixels are those TensorFlow decodes for Keras (a colour PNG read as grey through
    libpng's integer weights, a JPEG's own grey plane, 16-bit PNGs as their high byte: see
    kilnet.utils._tf_pixels). `crop_to_aspect_ratio=True` resizes the largest centred window
    with the target's aspect ratio; `pad_to_aspect_ratio=True` resizes the whole image to fit
    inside the target and centres it on zeros, as Keras's (give one of the two).

    Refused: `data_format="channels_first"`, and the "area", "gaussian" and "mitchellcubic"
    interpolations (JAX has no such resize).

    Example:
        >>> import os, tempfile, kilnet
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> for name in ("cat", "dog"):
        ...     os.mkdir(os.path.join(root, name))
        ...     Image.new("RGB", (8, 6)).save(os.path.join(root, name, "a.png"))
        >>> ds = kilnet.utils.image_dataset_from_directory(root, image_size=(4, 4), seed=1)
        Found 2 files belonging to 2 classes.
        >>> ds.class_names, ds[0][0].shape
        (['cat', 'dog'], (2, 4, 4, 3))
    """
    check_label_mode(labels, label_mode)
    channels = _CHANNELS.get(color_mode)
    if channels is None:
        raise ValueError("color_mode must be 'rgb', 'rgba' or 'grayscale'. "
                         f"Received: color_mode={color_mode!r}")
    image_size = _image_size(image_size)
    interpolation = _interpolation(interpolation)
    if pad_to_aspect_ratio and crop_to_aspect_ratio:
        raise ValueError("Give only one of pad_to_aspect_ratio and crop_to_aspect_ratio, as "
                         "Keras: an image is either padded or cropped to the target's aspect "
                         "ratio. Received: pad_to_aspect_ratio=True, crop_to_aspect_ratio=True")
    if data_format not in (None, "channels_last"):
        raise ValueError("kilnet's images are channels_last. Received: "
                         f"data_format={data_format!r}; transpose the batches with map().")

    def rows(paths):
        return ImageFiles(paths, image_size, channels, interpolation, crop_to_aspect_ratio,
                          pad_to_aspect_ratio)

    return datasets_from_files(directory, labels, label_mode, class_names, batch_size,
                               shuffle, seed, validation_split, subset, follow_links,
                               IMAGE_FORMATS, rows, "image", verbose)


def _image_size(image_size):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (not isinstance(image_size, (list, tuple)) or len(image_size) != 2
            or not all(isinstance(v, (int, np.integer)) and v > 0 for v in image_size)):
        raise ValueError("image_size must be a tuple of 2 positive integers (height, width). "
                         f"Received: image_size={image_size!r}")
    return tuple(int(v) for v in image_size)


def _interpolation(interpolation):
    name = str(interpolation).lower()
    if name in _KERAS_ONLY_INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r} is not supported by kilnet. "
                         f"Use one of {_INTERPOLATIONS}.")
    if name not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}. "
                         f"Received: interpolation={interpolation!r}")
    return name


# -- text -------------------------------------------------------------------------------------
class TextFiles:
    """Rows read on demand: `[indices]` reads those files as str (UTF-8) in an object array."""

    def __init__(self, paths, max_length):
        self.paths, self.max_length = paths, max_length

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, rows):
        out = np.empty(len(np.atleast_1d(rows)), dtype=object)
        for j, i in enumerate(np.atleast_1d(rows)):
            with open(self.paths[int(i)], "rb") as f:
                raw = f.read() if self.max_length is None else f.read(self.max_length)
            out[j] = raw.decode("utf-8", errors="ignore")
        return out


def text_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                class_names=None, batch_size=32, max_length=None, shuffle=True,
                                seed=None, validation_split=None, subset=None,
                                follow_links=False, verbose=True):
    """An ArrayDataset of (texts, labels) from a folder of class subfolders of .txt files, as
    keras.utils.text_dataset_from_directory. The texts are Python str (UTF-8) in NumPy object
    arrays, where Keras gives bytes; `max_length` keeps the first `max_length` bytes of each
    file, as Keras does. Labels, shuffling and subsets follow
    `image_dataset_from_directory`.

    Example:
        >>> import os, tempfile, kilnet
        >>> root = tempfile.mkdtemp()
        >>> for name in ("neg", "pos"):
        ...     os.mkdir(os.path.join(root, name))
        ...     with open(os.path.join(root, name, "a.txt"), "w") as f:
        ...         _ = f.write(f"a {name} review")
        >>> ds = kilnet.utils.text_dataset_from_directory(root, shuffle=False)
        Found 2 files belonging to 2 classes.
        >>> ds[0]
        (array(['a neg review', 'a pos review'], dtype=object), array([0, 1], dtype=int32))
    """
    check_label_mode(labels, label_mode)
    if max_length is not None and (isinstance(max_length, bool)
                                   or not isinstance(max_length, (int, np.integer))
                                   or max_length < 1):
        raise ValueError("max_length must be None or a positive integer. "
                         f"Received: max_length={max_length!r}")

    def rows(paths):
        return TextFiles(paths, max_length)

    return datasets_from_files(directory, labels, label_mode, class_names, batch_size,
                               shuffle, seed, validation_split, subset, follow_links,
                               (".txt",), rows, "text", verbose)
