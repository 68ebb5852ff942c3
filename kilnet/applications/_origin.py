"""Where the applications' files come from: Keras's own pretrained weights and ImageNet class
index, at Keras's URLs, cached in `<kilnet cache>/models` and checked against Keras's hashes.

`KILNET_APPLICATIONS_ORIGIN` replaces the `https://storage.googleapis.com` at the start of
those URLs (the rest of the path is kept): a mirror inside a network without internet access,
or a test's local server. Nothing is downloaded before a builder or decode_predictions asks.
"""

from __future__ import annotations

import os

from kilnet.utils import get_file

KERAS_ORIGIN = "https://storage.googleapis.com"
ORIGIN_ENV = "KILNET_APPLICATIONS_ORIGIN"


def redirected(url: str) -> str:
    """`url` with Keras's host replaced by `$KILNET_APPLICATIONS_ORIGIN`, when set.

    Example:
        >>> import os
        >>> from unittest import mock
        >>> from kilnet.applications._origin import redirected
        >>> with mock.patch.dict(os.environ, KILNET_APPLICATIONS_ORIGIN="http://mirror.local/"):
        ...     redirected("https://storage.googleapis.com/tensorflow/x.h5")
        'http://mirror.local/tensorflow/x.h5'
    """
    origin = os.environ.get(ORIGIN_ENV, "").strip()
    if not origin or not url.startswith(KERAS_ORIGIN):
        return url
    return origin.rstrip("/") + url[len(KERAS_ORIGIN):]


def keras_file(file_name: str, url: str, file_hash: str | None = None) -> str:
    """The cached path of one of Keras's application files, downloaded on first use.

    Example:
        >>> import os, tempfile
        >>> from kilnet.applications._origin import keras_file
        >>> folder = tempfile.mkdtemp()
        >>> with open(os.path.join(folder, "w.h5"), "wb") as f:
        ...     _ = f.write(b"weights")
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, XDG_CACHE_HOME=folder):  # doctest: +ELLIPSIS
        ...     path = keras_file("w.h5", "file://" + os.path.join(folder, "w.h5"))
        Downloading data from file://...
        >>> path.endswith(os.path.join("kilnet", "models", "w.h5"))
        True
    """
    return get_file(file_name, redirected(url), cache_subdir="models", file_hash=file_hash)
