"""Keras's `keras.preprocessing` namespace, for tutorials written against it: the image and
sequence helpers and the dataset makers, the same functions as in kilnet.utils.

Example:
    >>> import kilnet
    >>> kilnet.preprocessing.sequence.pad_sequences([[1], [2, 3]]).tolist()
    [[0, 1], [2, 3]]
    >>> kilnet.preprocessing.image.load_img is kilnet.utils.load_img
    True
"""

from kilnet.preprocessing import image, sequence
from kilnet.utils import (image_dataset_from_directory, text_dataset_from_directory,
                          timeseries_dataset_from_array)

__all__ = ["image", "image_dataset_from_directory", "sequence", "text_dataset_from_directory",
           "timeseries_dataset_from_array"]
