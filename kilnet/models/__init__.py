"""Keras's `keras.models` namespace: the model classes and loading a saved model."""

from kilnet.models._model import Model
from kilnet.models._sequential import Sequential
from kilnet.saving import load_model

__all__ = ["Model", "Sequential", "load_model"]
