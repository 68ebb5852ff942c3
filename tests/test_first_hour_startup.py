"""`import kilnet` is cheap (JAX loads on first use of a public name), so `kilnet train` prints
its first line before JAX has loaded; every public name still resolves, as before."""

from __future__ import annotations

import subprocess
import sys

import kilnet


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.strip()


def test_import_kilnet_does_not_import_jax():
    assert _python("import kilnet, sys; print('jax' in sys.modules)") == "False"


def test_import_kilnet_makes_pil_image_reachable_as_keras_does():
    """keras.io's super-resolution example writes `import PIL` and then `PIL.Image.BICUBIC`,
    which works because importing Keras imports PIL.Image; importing kilnet does too, still
    without JAX."""
    assert _python("import kilnet, PIL, sys; print(PIL.Image.BICUBIC, 'jax' in sys.modules)") \
        == "3 False"


def test_the_command_line_module_does_not_import_jax():
    # The first line of `kilnet train` is printed from here, before the heavy imports.
    assert _python("import kilnet.cli, sys; kilnet.cli.build_parser(); "
                   "print('jax' in sys.modules)") == "False"


def test_first_use_of_a_name_configures_jax_before_computing():
    code = ("import kilnet, sys; kilnet.Sequential; import jax; "
            "print(bool(jax.config.jax_compilation_cache_dir))")
    assert _python(code) == "True"


def test_every_public_name_resolves_and_dir_lists_it():
    listed = dir(kilnet)
    for name in kilnet.__all__:
        assert getattr(kilnet, name) is not None, name
        assert name in listed, name
    assert kilnet.Sequential is kilnet.models.Sequential
    assert kilnet.Input is kilnet.layers.Input
    assert kilnet.plot_history is kilnet.plot.plot_history
    assert issubclass(kilnet.InputError, ValueError)


def test_from_import_works_for_every_public_name_in_a_fresh_process():
    names = ", ".join(n for n in kilnet.__all__ if n != "__version__")
    code = (f"from kilnet import {names}; import kilnet; "
            "print(sorted(set(kilnet.__all__) - set(dir(kilnet))))")
    assert _python(code) == "[]"


def test_submodules_reachable_before_as_attributes_still_are():
    # These were attributes of kilnet after `import kilnet` before it became lazy.
    for name in ("saving", "errors", "checkpoint", "variables",
                 "constraints", "plot"):
        assert getattr(kilnet, name).__name__ == f"kilnet.{name}"


def test_an_unknown_name_is_an_attribute_error():
    try:
        kilnet.not_a_name
    except AttributeError as error:
        assert "not_a_name" in str(error)
    else:
        raise AssertionError("kilnet.not_a_name resolved")


def test_keras_top_level_base_classes_are_the_module_classes():
    """`class MyLayer(kilnet.Layer)` as Keras 3's guides write `keras.Layer`."""
    assert kilnet.Layer is kilnet.layers.Layer
    assert kilnet.Loss is kilnet.losses.Loss
    assert kilnet.Metric is kilnet.metrics.Metric
    assert kilnet.Optimizer is kilnet.optimizers.Optimizer
    assert kilnet.Initializer is kilnet.initializers.Initializer
    assert kilnet.Regularizer is kilnet.regularizers.Regularizer
    assert kilnet.Variable is kilnet.variables.Variable
    assert kilnet.DTypePolicy is kilnet.dtype_policies.DTypePolicy
