"""Boston housing prices: 506 rows of 13 features, the target in k$.

Keras keeps this dataset with a warning, and so does kilnet: one of its
features ("B") encodes an assumption about racial self-segregation, so it
suits teaching about ethics in data more than modelling.
`california_housing.load_data(version="small")` is Keras's suggested stand-in.
"""

from . import _remote, _tabular

URL_ENV = "KILNET_BOSTON_HOUSING_URL"
# Published by Keras (keras/src/datasets/boston_housing.py).
DATA = _remote.Remote(
    "boston_housing", "boston_housing.npz",
    "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5",
    _remote.KERAS_URL, URL_ENV,
)


def load_data(path="boston_housing.npz", test_split=0.2, seed=113, *, base_url=None):
    """Loads Boston housing as `(x_train, y_train), (x_test, y_test)`, like Keras.

    `x_*` are float64 arrays (N, 13), `y_*` float64 prices (N,) in k$. The
    rows are shuffled with `seed` and the first `int(506 * (1 - test_split))`
    (404 by default) are the training set.

    `path`: a bare file name is the file's name in kilnet's cache, as in Keras;
    a path with a folder names your own copy. Without one,
    `$KILNET_DATA/boston_housing.npz` (or `.../boston_housing/boston_housing.npz`)
    is used when it exists, else the verified cache entry, else a download from
    `base_url`, `$KILNET_BOSTON_HOUSING_URL` or Keras's mirror.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> file = os.path.join(tempfile.mkdtemp(), "boston_housing.npz")
    >>> np.savez(file, x=np.zeros((10, 13)), y=np.arange(10.0))
    >>> (x_train, y_train), (x_test, y_test) = load_data(path=file)
    >>> x_train.shape, x_test.shape, y_test.dtype
    ((8, 13), (2, 13), dtype('float64'))
    """
    _tabular.check_test_split(test_split)
    x, y = _tabular.load_table(_remote.locate(DATA, path, base_url), n_features=13)
    return _tabular.shuffled_split(x, y, test_split, seed)
