"""A layer's call that reads and assigns a weight of its sub-layer before calling it, as
keras.io's PixelCNN masks its convolution's kernel (`self.conv.kernel.assign(self.conv.kernel
* self.mask)`): inside the compiled step the sub-layer then computes with the assigned value,
and the gradient flows through it, as in Keras."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402


def pixel_conv_layer(lib):
    """keras.io PixelCNN's PixelConvLayer: a Conv2D whose kernel is masked at every call."""

    class PixelConvLayer(lib.layers.Layer):
        def __init__(self, mask_type, **kwargs):
            super().__init__()
            self.mask_type = mask_type
            self.conv = lib.layers.Conv2D(**kwargs)

        def build(self, input_shape):
            self.conv.build(input_shape)
            kernel_shape = lib.ops.shape(self.conv.kernel)
            self.mask = np.zeros(shape=kernel_shape)
            self.mask[: kernel_shape[0] // 2, ...] = 1.0
            self.mask[kernel_shape[0] // 2, : kernel_shape[1] // 2, ...] = 1.0
            if self.mask_type == "B":
                self.mask[kernel_shape[0] // 2, kernel_shape[1] // 2, ...] = 1.0

        def call(self, inputs):
            self.conv.kernel.assign(self.conv.kernel * self.mask)
            return self.conv(inputs)

    return PixelConvLayer


def pixel_model(lib):
    layer = pixel_conv_layer(lib)
    inputs = lib.Input(shape=(6, 6, 1))
    x = layer("A", filters=4, kernel_size=3, padding="same", activation="relu")(inputs)
    x = layer("B", filters=4, kernel_size=3, padding="same", activation="relu")(x)
    return lib.Model(inputs, lib.layers.Conv2D(1, 1, activation="sigmoid")(x))


def test_a_masked_sub_layer_kernel_trains_as_keras():
    rng = np.random.default_rng(0)
    x = (rng.random((16, 6, 6, 1)) > 0.5).astype(np.float32)
    runs = []
    for lib in (kilnet, keras):
        model = pixel_model(lib)
        if lib is kilnet:
            start = [np.asarray(w) for w in model.get_weights()]
        else:
            model.set_weights(start)
        model.compile(optimizer=lib.optimizers.SGD(0.5), loss="binary_crossentropy")
        history = model.fit(x, x, epochs=3, batch_size=4, shuffle=False, verbose=0)
        runs.append((history.history["loss"], model.predict(x, verbose=0),
                     [np.asarray(w) for w in model.get_weights()]))
    (ours, our_out, our_weights), (theirs, their_out, their_weights) = runs
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert ours[-1] < ours[0]
    np.testing.assert_allclose(our_out, their_out, rtol=1e-5, atol=1e-6)
    for a, b in zip(our_weights, their_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the mask counts: the masked entries got no gradient, so they kept their start values
    masked = pixel_conv_layer(kilnet)("A", filters=4, kernel_size=3)
    masked.build((None, 6, 6, 1))
    hidden = masked.mask == 0
    np.testing.assert_array_equal(our_weights[0][hidden], start[0][hidden])
    assert not np.allclose(our_weights[0][~hidden], start[0][~hidden])
