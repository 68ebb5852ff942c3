"""Datasets as NumPy arrays, the Keras way: `kilnet.datasets.mnist.load_data()`.

Environment variables:
    KILNET_DATA               a .npz, a folder of IDX files, or a folder holding
                              `mnist.npz` / `fashion-mnist/` (used before anything else)
    KILNET_OFFLINE=1          never download
    KILNET_MNIST_URL          base URL to download `mnist.npz` from
    KILNET_FASHION_MNIST_URL  base URL to download the Fashion-MNIST `.gz` files from
    XDG_CACHE_HOME            the cache lives in `$XDG_CACHE_HOME/kilnet`
"""

from . import fashion_mnist, mnist
from ._cache import cache_dir
from ._download import ChecksumError, DownloadError
from ._idx import DatasetError, read_idx
from .mnist import OfflineSubsetWarning

__all__ = [
    "ChecksumError",
    "DatasetError",
    "DownloadError",
    "OfflineSubsetWarning",
    "cache_dir",
    "fashion_mnist",
    "mnist",
    "read_idx",
]
