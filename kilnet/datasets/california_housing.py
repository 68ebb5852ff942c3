"""California housing prices (1990 census): 20,640 block groups, 8 features each.

Features: MedInc, HouseAge, AveRooms, AveBedrms, Population, AveOccup,
Latitude, Longitude; the target is the median house value in dollars.
"""

from . import _remote, _tabular

URL_ENV = "KILNET_CALIFORNIA_HOUSING_URL"
# Published by Keras (keras/src/datasets/california_housing.py).
DATA = _remote.Remote(
    "california_housing", "california_housing.npz",
    "1a2e3a52e0398de6463aebe6f4a8da34fb21fbb6b934cf88c3425e766f2a1a6f",
    _remote.KERAS_URL, URL_ENV,
)
VERSIONS = {"small": 600, "large": None}  # how many leading rows each version keeps


def load_data(version="large", path="california_housing.npz", test_split=0.2, seed=113,
              *, base_url=None):
    """Loads California housing as `(x_train, y_train), (x_test, y_test)`, like Keras.

    `version="large"` keeps all 20,640 rows, `"small"` the first 600 (Keras's
    stand-in for Boston housing). Rows are then shuffled with `seed` and the
    first `int(n * (1 - test_split))` are the training set. `x_*` have shape
    (N, 8); the dtypes are the file's.

    `path`: a bare file name is the file's name in kilnet's cache, as in Keras;
    a path with a folder names your own copy. Without one,
    `$KILNET_DATA/california_housing.npz` (or in a `california_housing/`
    folder there) is used when it exists, else the verified cache entry, else
    a download from `base_url`, `$KILNET_CALIFORNIA_HOUSING_URL` or Keras's mirror.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> file = os.path.join(tempfile.mkdtemp(), "california_housing.npz")
    >>> np.savez(file, x=np.zeros((700, 8), np.float32), y=np.zeros(700, np.float32))
    >>> (x_train, y_train), (x_test, y_test) = load_data(version="small", path=file)
    >>> x_train.shape, x_test.shape
    ((480, 8), (120, 8))
    """
    if version not in VERSIONS:
        raise ValueError(
            f"Expected version to be one of 'small', 'large'. Received: version={version!r}"
        )
    _tabular.check_test_split(test_split)
    x, y = _tabular.load_table(_remote.locate(DATA, path, base_url), n_features=8)
    rows = VERSIONS[version]
    return _tabular.shuffled_split(x[:rows], y[:rows], test_split, seed)
