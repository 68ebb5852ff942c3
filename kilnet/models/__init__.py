"""Keras's `keras.models` namespace: the model classes, saving and loading, JSON, cloning."""

from kilnet.models._model import Model
from kilnet.models._sequential import Sequential
from kilnet.models._config import clone_model, model_from_json
from kilnet.saving import load_model, save_model

__all__ = ["Model", "Sequential", "clone_model", "load_model", "model_from_json", "save_model"]
