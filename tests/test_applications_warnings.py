"""The applications' warnings point at the line of yours that called the builder, however deep
inside the builders they are raised (the builders share code at different depths)."""

import warnings

import pytest

from kilnet import applications


@pytest.mark.parametrize("build", [
    lambda: applications.MobileNet(weights=None, input_shape=(32, 32, 5), alpha=0.25),
    lambda: applications.ResNet50(weights=None, input_shape=(32, 32, 5), include_top=False),
    lambda: applications.DenseNet121(weights=None, input_shape=(32, 32, 5),
                                     include_top=False),
], ids=["mobilenet", "resnet50", "densenet121"])
def test_the_channel_count_warning_points_at_your_call(build):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    channel_warnings = [w for w in caught if "input channels" in str(w.message)]
    assert len(channel_warnings) == 1, [str(w.message) for w in caught]
    assert channel_warnings[0].filename == __file__
