"""Fashion-MNIST (Zalando): 60,000 training and 10,000 test 28x28 uint8 images.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal,
6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot.
"""

from pathlib import Path

from . import _download, _sources
from ._cache import cache_dir, offline
from ._idx import DatasetError

DEFAULT_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
URL_ENV = "KILNET_FASHION_MNIST_URL"
# Where Debian's `dataset-fashion-mnist` package installs the gzipped IDX files.
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
# Published by Keras (keras/src/datasets/fashion_mnist.py, FILE_HASHES); the same
# values appear in TFDS's and Zalando's checksum lists. Debian recompresses the
# files, so its copies differ; they are trusted as installed by the system.
SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}


def load_data(path=None, *, base_url=None):
    """Loads Fashion-MNIST as `(x_train, y_train), (x_test, y_test)`, like Keras.

    Images are uint8 arrays of shape (N, 28, 28), labels uint8 of shape (N,).
    The first source that exists wins:

    1. `path`, else the `KILNET_DATA` environment variable: a `.npz` with keys
       x_train, y_train, x_test, y_test, a folder with the four IDX files
       (gzipped or not), or a folder holding `fashion-mnist.npz` or `fashion-mnist/`;
    2. the cache, `kilnet.datasets.cache_dir() / "fashion-mnist"`;
    3. a download from `base_url`, else `$KILNET_FASHION_MNIST_URL`, else Keras's
       mirror, checked against SHA-256 and cached (skipped when `KILNET_OFFLINE=1`);
    4. `/usr/share/datasets/fashion-mnist`, from Debian's `dataset-fashion-mnist`.

    Raises `DatasetError` when none is available.
    """
    user = _sources.user_path(path, "fashion-mnist")
    if user is not None:
        return _sources.load_path(*user)
    folder = cache_dir() / "fashion-mnist"
    files = _cache_files(folder)
    # Re-hashed on every load (~60 ms) so a damaged cache entry is fetched again.
    if all(_download.is_verified(file, SHA256[file.name]) for file in files.values()):
        return _sources.load_idx_files(files)
    reason = "KILNET_OFFLINE is set"
    if not offline():
        try:
            _fetch_missing(files, base_url)
            return _sources.load_idx_files(files)
        except _download.DownloadError as error:
            reason = str(error)
    if SYSTEM_DIR.is_dir():
        return _sources.load_idx_folder(SYSTEM_DIR)
    raise DatasetError(
        f"Fashion-MNIST is not available: no cache entry, no download ({reason}), and no "
        f"{SYSTEM_DIR}. Connect to the internet, pass path= or set KILNET_DATA to the "
        "IDX files or a .npz, or install Debian's `dataset-fashion-mnist` package."
    )


def _cache_files(folder: Path) -> dict:
    return {key: folder / f"{stem}.gz" for key, stem in _sources.IDX_STEMS.items()}


def _fetch_missing(files: dict, base_url) -> None:
    # Each file is verified on its own, so an interrupted run resumes where it stopped.
    for file in files.values():
        if not _download.is_verified(file, SHA256[file.name]):
            url = _sources.url(base_url, URL_ENV, DEFAULT_URL, file.name)
            _download.fetch(url, file, SHA256[file.name])
