"""`keras.applications.resnet50`: ResNet50 with its preprocessing and decoding, the names
Keras also gives this module (`from kilnet.applications.resnet50 import preprocess_input`).

Example:
    >>> from kilnet.applications.resnet50 import ResNet50, preprocess_input
    >>> from kilnet.applications import resnet
    >>> ResNet50 is resnet.ResNet50 and preprocess_input is resnet.preprocess_input
    True
"""

from kilnet.applications.resnet import ResNet50, decode_predictions, preprocess_input

__all__ = ["ResNet50", "decode_predictions", "preprocess_input"]
