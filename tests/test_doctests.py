"""The examples in the docstrings of the model contract run, and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kilnet.layers._base", "kilnet.layers._core", "kilnet.layers._node",
           "kilnet.models._model", "kilnet.models._sequential", "kilnet.variables",
           "kilnet.utils", "kilnet.layers._merge", "kilnet.layers._reshaping",
           "kilnet.layers._attention", "kilnet.layers._layer_norm",
           "kilnet.layers._embedding", "kilnet.layers._conv1d", "kilnet.layers._conv_transpose",
           "kilnet.layers._conv_more", "kilnet.layers._conv3d",
           "kilnet.layers._pooling",
           "kilnet.layers._preprocessing", "kilnet.layers._augmentation",
           "kilnet.layers._recurrent", "kilnet.layers._wrappers",
           "kilnet.layers._activations", "kilnet.layers._regularization", "kilnet.regularizers"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
