__version__ = "0.1.0"


def version() -> str:
    """kilnet's version, as Keras's `keras.version()` gives Keras's.

    >>> version() == __version__
    True
    """
    return __version__
