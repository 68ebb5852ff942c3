"""Keras's `keras.models` namespace: the model class and loading a saved model."""

from kilnet.model import Sequential
from kilnet.saving import load_model

__all__ = ["Sequential", "load_model"]
