"""Datasets as NumPy arrays, the Keras way: `kilnet.datasets.mnist.load_data()`.

Environment variables:
    KILNET_DATA               a .npz, a folder of IDX files, or a folder holding
                              `mnist.npz` / `fashion-mnist/` (used before anything else);
                              for the other datasets, a folder holding Keras's files
                              (`imdb.npz`, `cifar-10-python.tar.gz`, ...)
    KILNET_OFFLINE=1          never download
    KILNET_MNIST_URL          base URL to download `mnist.npz` from
    KILNET_FASHION_MNIST_URL  base URL to download the Fashion-MNIST `.gz` files from
    KILNET_CIFAR10_URL, KILNET_CIFAR100_URL, KILNET_IMDB_URL, KILNET_REUTERS_URL,
    KILNET_BOSTON_HOUSING_URL, KILNET_CALIFORNIA_HOUSING_URL
                              base URLs for the other Keras datasets' files
    XDG_CACHE_HOME            the cache lives in `$XDG_CACHE_HOME/kilnet`
"""

from . import (
    boston_housing,
    california_housing,
    cifar10,
    cifar100,
    fashion_mnist,
    imdb,
    mnist,
    reuters,
)
from ._cache import cache_dir
from ._download import ChecksumError, DownloadError
from ._idx import DatasetError, read_idx
from .mnist import OfflineSubsetWarning

__all__ = [
    "ChecksumError",
    "DatasetError",
    "DownloadError",
    "OfflineSubsetWarning",
    "boston_housing",
    "cache_dir",
    "california_housing",
    "cifar10",
    "cifar100",
    "fashion_mnist",
    "imdb",
    "mnist",
    "read_idx",
    "reuters",
]
