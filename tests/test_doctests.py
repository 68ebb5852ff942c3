"""The examples in the docstrings of the model contract run, and give what they show."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import kilnet

MODULES = ["kilnet._small_objects", "kilnet.quantization_ops", "kilnet.quantization_config", "kilnet.tree", "kilnet.serialization", "kilnet.layers._dropout_masks", "kilnet.constraints", "kilnet.metrics", "kilnet.metrics._base", "kilnet.metrics._accuracy",
           "kilnet.metrics._regression", "kilnet.metrics._probabilistic",
           "kilnet.metrics._confusion", "kilnet.metrics._fscore", "kilnet.metrics._iou",
           "kilnet.keras_files", "kilnet.keras_files._archive", "kilnet.keras_files._h5",
           "kilnet.keras_files._layout", "kilnet.keras_files._import",
           "kilnet.keras_files._export", "kilnet.keras_files._optimizer",
           "kilnet.keras_files._precheck", "kilnet.keras_files._legacy",
           "kilnet.keras_files._feature_space", "kilnet.keras_files._install",
           "kilnet.keras_files._legacy_export", "kilnet.keras_files._held_optimizers",
           "kilnet.keras_files._keras2_graph", "kilnet.keras_files._config",
           "kilnet.layers._base", "kilnet.layers._input_spec", "kilnet.layers._tensor_masks",
           "kilnet.layers._batch_axis", "kilnet.layers._call_context", "kilnet.layers._host_call",
           "kilnet.layers._tensorflow_calls",
           "kilnet.layers._mask_arguments", "kilnet.layers._positional_values",
           "kilnet.layers._value_reads", "kilnet.layers._auto_config",
           "kilnet.layers._shared_layers",
           "kilnet.models._host_stage", "kilnet.models._graph_masks",
           "kilnet.layers._core",
           "kilnet.layers._node",
           "kilnet.models._model", "kilnet.models._sequential", "kilnet.models._constants",
           "kilnet.variables",
           "kilnet.utils", "kilnet.utils._seeding", "kilnet.utils._arrays",
           "kilnet.utils._dataset", "kilnet.utils._timeseries", "kilnet.utils._from_directory",
           "kilnet.utils._get_file", "kilnet.utils._plot_model", "kilnet.utils._images",
           "kilnet.utils._packing", "kilnet.utils._tf_pixels", "kilnet.preprocessing",
           "kilnet.layers._merge", "kilnet.layers._reshaping", "kilnet.layers._operation",
           "kilnet._toposort", "kilnet._custom_gradients",
           "kilnet.layers._attention", "kilnet.layers._attention_names",
           "kilnet.layers._layer_norm",
           "kilnet.layers._embedding", "kilnet.layers._conv1d", "kilnet.layers._conv_transpose",
           "kilnet.layers._conv_lstm",
           "kilnet.layers._einsum_dense", "kilnet.layers._dense", "kilnet.layers._int8",
           "kilnet.layers._int4", "kilnet.layers._quantized_kernel",
           "kilnet.quantizers",
           "kilnet.layers._conv_more", "kilnet.layers._conv3d", "kilnet._kernels.onednn",
           "kilnet._kernels.onednn_conv", "kilnet._kernels.onednn_batch_norm",
           "kilnet.layers._pooling", "kilnet.loaders", "kilnet.feeds", "kilnet.structure",
           "kilnet.layers._preprocessing", "kilnet.layers._augmentation",
           "kilnet.layers._color_augmentation", "kilnet.layers._mixing_augmentation",
           "kilnet.layers._recurrent", "kilnet.layers._rnn", "kilnet.layers._wrappers",
           "kilnet.layers._nested",
           "kilnet.layers._spectral_normalization", "kilnet.layers._adaptive_pooling",
           "kilnet.layers._reversible_embedding",
           "kilnet.layers._activations", "kilnet.layers._regularization", "kilnet.regularizers",
           "kilnet.layers._fingerprints", "kilnet.layers._encoding", "kilnet.layers._lookup",
           "kilnet.layers._text_vectorization", "kilnet.layers._audio",
           "kilnet.layers._grouped_query_attention", "kilnet.layers._geometric_augmentation",
           "kilnet.layers._hashed_crossing",
           "kilnet.utils._audio_files", "kilnet.utils._feature_space",
           "kilnet", "kilnet._report_html", "kilnet.distribution", "kilnet._version",
           "kilnet.progress", "kilnet.run_dir", "kilnet.insight", "kilnet.jobs",
           "kilnet.datasets.cifar10", "kilnet.datasets.cifar100", "kilnet.datasets.imdb",
           "kilnet.datasets.reuters", "kilnet.datasets.boston_housing",
           "kilnet.datasets.california_housing", "kilnet.datasets._cifar",
           "kilnet.datasets._safe_pickle", "kilnet.datasets._safe_npz", "kilnet.datasets._remote",
           "kilnet.datasets._sequences", "kilnet.datasets._tabular",
           "kilnet.applications", "kilnet.applications.imagenet_utils",
           "kilnet.applications._origin", "kilnet.applications._builder",
           "kilnet.applications.mobilenet_v2", "kilnet.applications.resnet",
           "kilnet.applications.vgg16", "kilnet.applications.vgg19",
           "kilnet.applications.xception", "kilnet.applications.densenet",
           "kilnet.applications.mobilenet", "kilnet.applications.inception_v3",
           "kilnet.applications.mobilenet_v3", "kilnet.applications.efficientnet",
           "kilnet.applications.resnet_v2",
           "kilnet.applications.efficientnet_v2", "kilnet.applications.convnext",
           "kilnet.layers._application_layers", "kilnet.applications.inception_resnet_v2",
           "kilnet.applications.nasnet",
           "kilnet._names", "kilnet._safefile", "kilnet._saving_hooks", "kilnet.checkpoint",
           "kilnet.saving",
           "kilnet.mixed_precision", "kilnet.loss_scale", "kilnet.dtype_policies",
           "kilnet.optimizers", "kilnet.initializers", "kilnet.optimizers.schedules",
           "kilnet.optimizers._adam_kernel", "kilnet.optimizers.keras_variables",
           "kilnet.optimizers._moving_average",
           "kilnet.callbacks._ema", "kilnet.callbacks._loggers", "kilnet.callbacks._early_stopping",
           "kilnet.config", "kilnet.backend", "kilnet.losses", "kilnet._ctc",
           "kilnet.activations", "kilnet._registry", "kilnet.programs", "kilnet.fit",
           "kilnet.trainer", "kilnet._scope", "kilnet.compile_metrics", "kilnet._step_logs", "kilnet.models._keras_steps", "kilnet._metric_held_layers", "kilnet._optimizer_attributes", "kilnet.optimizers._accumulation",
           "kilnet.data", "kilnet._tree", "kilnet.layers._bias", "kilnet.layers._conv",
           "kilnet.layers._conv_base",
           "kilnet._kernels.conv",
           "kilnet.layers._lambda", "kilnet.layers._matmul", "kilnet._kernels.onednn_matmul",
           "kilnet.layers._rnn_cells", "kilnet.layers._tracking", "kilnet.objective",
           "kilnet.validation", "kilnet.applications.resnet50", "kilnet.errors",
           "kilnet.models._intermediate_inputs", "kilnet.models._graph"]

# Modules whose examples other tests run (tests/test_ops.py, test_graph_saving.py,
# test_summary.py), and one whose only example downloads (skipped).
RUN_ELSEWHERE = {"kilnet.ops", "kilnet.ops._convert", "kilnet.ops._core", "kilnet.ops._einops",
                 "kilnet.ops._math", "kilnet.ops.image", "kilnet.ops.linalg", "kilnet.ops.nn",
                 "kilnet.ops.numpy", "kilnet.random", "kilnet.models._config",
                 "kilnet.summary", "kilnet.datasets.mnist"}


def test_every_module_with_examples_runs_them():
    """A module whose docstrings show examples is listed here (or run by another test), so
    that its examples are checked: eleven modules' examples had been run by none."""
    package = Path(kilnet.__file__).parent
    with_examples = set()
    for path in package.rglob("*.py"):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            with_examples.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert with_examples - set(MODULES) - RUN_ELSEWHERE == set()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
