"""Sequential: a stack of layers, the pytree of their arrays, and the Keras workflow methods.

The model owns two pytrees keyed by layer name: `params` (trainable) and `state` (non-trainable,
e.g. BatchNorm's moving statistics). Once compiled and trained, they live inside the training
state (kilnet.programs.TrainState) together with the optimizer state, so there is one copy.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from kilnet import utils
from kilnet.layers import ActivatedLayer, InputLayer, Layer


class Sequential:
    def __init__(self, layers=None, name: str | None = None):
        self.name = name or "sequential"
        self._layers: list[Layer] = []
        self._input_shape = None
        self._params = None
        self._state = None
        self._output_shapes: list = []
        self.stop_training = False
        self.compiled = None        # a kilnet.fit.Trainer after compile()
        self.history = None
        for layer in layers or []:
            self.add(layer)

    # -- structure --------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(
                "Sequential takes kilnet layers, e.g. kilnet.layers.Dense(10). "
                f"Received: {layer!r} of type {type(layer).__name__}"
            )
        if isinstance(layer, InputLayer):
            if self._layers or self._input_shape is not None:
                raise ValueError("kilnet.Input(...) must be the first element of a Sequential.")
            self._input_shape = layer.shape
            return
        if layer.input_shape is not None:
            if self._layers:
                raise ValueError(
                    f"input_shape={layer.input_shape} was given to a layer that is not the "
                    "first; only the first layer may declare the input shape."
                )
            self._input_shape = layer.input_shape
        if layer.name is None:
            layer.name = self._unique_name(layer.default_name)
        elif any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"Two layers are named {layer.name!r}; layer names must be unique.")
        self._layers.append(layer)
        # Adding a layer invalidates what was built and compiled.
        self._params = self._state = self.compiled = None

    def _unique_name(self, base: str) -> str:
        taken = {layer.name for layer in self._layers}
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def input_shape(self):
        return self._input_shape

    @property
    def output_shape(self):
        return self._output_shapes[-1] if self._output_shapes else None

    @property
    def built(self) -> bool:
        return self._params is not None or (self.compiled is not None and
                                            self.compiled.state is not None)

    def build(self, input_shape=None, *, seed: int | None = None) -> None:
        """Create the parameters for inputs of `input_shape` (batch axis excluded)."""
        if input_shape is not None:
            input_shape = tuple(int(d) for d in input_shape)
            if self._input_shape is not None and tuple(self._input_shape) != input_shape:
                raise ValueError(
                    f"The model was declared for inputs of shape {self._input_shape} but is "
                    f"being built for {input_shape}."
                )
            self._input_shape = input_shape
        if self._input_shape is None:
            raise ValueError(
                "The input shape is unknown: give the first layer input_shape=..., start the "
                "model with kilnet.Input(shape=...), or call fit() with data."
            )
        if not self._layers:
            raise ValueError("The model has no layers; add some with model.add(layer).")
        seed = utils.next_seed() if seed is None else seed
        params, state, shapes, shape = {}, {}, [], tuple(self._input_shape)
        for index, layer in enumerate(self._layers):
            try:
                p, s, shape = layer.init(utils.numpy_rng(seed, index), shape)
            except ValueError as error:
                raise ValueError(f"Layer {layer.name!r}: {error}") from None
            params[layer.name], state[layer.name] = p, s
            shapes.append(tuple(shape))
        # One transfer of the whole tree to the device.
        self._params, self._state = jax.device_put((params, state))
        self._output_shapes = shapes
        if self.compiled is not None:
            self.compiled.reset_state()

    # -- the pure forward pass --------------------------------------------------------------
    def apply(self, params, state, x, *, training=False, key=None, mask=None, logits=False):
        """Run the layers: returns (outputs, new_state). Pure: traced inside compiled programs.

        logits=True skips the last layer's activation (softmax/sigmoid), for stable losses.
        """
        new_state = {}
        last = len(self._layers) - 1
        for index, layer in enumerate(self._layers):
            layer_key = None if key is None else jax.random.fold_in(key, index)
            kwargs = dict(training=training, key=layer_key, mask=mask)
            if logits and index == last:
                kwargs["logits"] = True
            x, new_state[layer.name] = layer.apply(params[layer.name], state[layer.name], x,
                                                   **kwargs)
        return x, new_state

    @property
    def final_activation_name(self):
        last = self._layers[-1] if self._layers else None
        return last.activation if isinstance(last, ActivatedLayer) else None

    def final_activation(self, logits):
        return self._layers[-1]._activation_fn(logits)

    # -- arrays ------------------------------------------------------------------------------
    @property
    def params(self):
        if self.compiled is not None and self.compiled.state is not None:
            return self.compiled.state.params
        return self._params

    @property
    def state(self):
        if self.compiled is not None and self.compiled.state is not None:
            return self.compiled.state.model_state
        return self._state

    def _require_built(self):
        if not self.built:
            raise ValueError(
                "The model has no weights yet: call model.build(input_shape), give the first "
                "layer input_shape=..., or fit it on data first."
            )

    def _weight_slots(self):
        """(layer, group, name) for every array, in Keras's get_weights order."""
        for layer in self._layers:
            for name in layer.param_names:
                yield layer, "params", name
            for name in layer.state_names:
                yield layer, "state", name

    def get_weights(self) -> list[np.ndarray]:
        self._require_built()
        trees = {"params": self.params, "state": self.state}
        # host sync: copies every array to NumPy
        return [np.asarray(trees[group][layer.name][name])
                for layer, group, name in self._weight_slots()]

    def set_weights(self, weights) -> None:
        self._require_built()
        slots = list(self._weight_slots())
        if len(weights) != len(slots):
            raise ValueError(
                f"set_weights expected a list of {len(slots)} arrays (as get_weights returns). "
                f"Received: {len(weights)} arrays"
            )
        trees = {"params": jax.tree.map(lambda a: a, self.params),
                 "state": jax.tree.map(lambda a: a, self.state)}
        for (layer, group, name), value in zip(slots, weights):
            old = trees[group][layer.name][name]
            value = np.asarray(value)
            if value.shape != old.shape:
                raise ValueError(
                    f"set_weights: {layer.name}/{name} expects shape {old.shape}. "
                    f"Received: shape {value.shape}"
                )
            trees[group][layer.name][name] = jnp.asarray(value, old.dtype)
        self._params, self._state = trees["params"], trees["state"]
        if self.compiled is not None:
            self.compiled.replace_weights(self._params, self._state)

    def count_params(self) -> int:
        self._require_built()
        return sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(
            (self.params, self.state)))

    def trainable_count(self) -> int:
        self._require_built()
        return sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(self.params))

    # -- the Keras workflow ------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, *, on_nonfinite="stop",
                distribution=None, **unsupported):
        """Build the training, evaluation and prediction programs (see kilnet.fit.Trainer).

        distribution: kilnet.distribution.DataParallel() to split each batch over devices."""
        from kilnet.fit import Trainer

        _reject_unsupported("compile", unsupported, ("jit_compile", "run_eagerly",
                                                     "steps_per_execution"))
        self.compiled = Trainer(self, optimizer=optimizer, loss=loss, metrics=metrics,
                                on_nonfinite=on_nonfinite, distribution=distribution)
        self.compiled.prepare()

    def _trainer(self):
        if self.compiled is None:
            raise RuntimeError(
                "The model must be compiled before training or evaluation: call "
                "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', "
                "metrics=['accuracy']) first."
            )
        return self.compiled

    @property
    def compile_report(self):
        return None if self.compiled is None else self.compiled.report

    @property
    def optimizer(self):
        return None if self.compiled is None else self.compiled.optimizer

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            seed=None, steps_per_epoch=None, **unsupported):
        _reject_unsupported("fit", unsupported, ())
        from kilnet.fit import fit
        return fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                   callbacks=callbacks, validation_split=validation_split,
                   validation_data=validation_data, shuffle=shuffle,
                   initial_epoch=initial_epoch, seed=seed, steps_per_epoch=steps_per_epoch)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False,
                 steps=None, **unsupported):
        _reject_unsupported("evaluate", unsupported, ())
        from kilnet.fit import evaluate
        return evaluate(self, x, y, batch_size=batch_size, verbose=verbose,
                        return_dict=return_dict, steps=steps)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, **unsupported):
        _reject_unsupported("predict", unsupported, ())
        from kilnet.fit import predict
        return predict(self, x, batch_size=batch_size, verbose=verbose, steps=steps)

    def __call__(self, x):
        """Inference on an array, outside any compiled program (for quick checks)."""
        self._require_built()
        y, _ = self.apply(self.params, self.state, jnp.asarray(x, jnp.float32))
        return y

    def summary(self, print_fn=None) -> None:
        from kilnet.summary import model_summary
        text = model_summary(self)
        (print_fn or print)(text)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "input_shape": None if self._input_shape is None else list(self._input_shape),
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                       for layer in self._layers],
        }

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        from kilnet.saving import model_from_config
        return model_from_config(config)

    # -- files (kilnet/saving.py) -------------------------------------------------------------
    def save(self, filepath, overwrite=True, include_optimizer=True) -> None:
        """Write the architecture, weights, compile configuration and optimizer state to one
        safetensors file (suggested extension .kilnet), atomically."""
        from kilnet import distribution
        from kilnet.saving import save_model
        if not distribution.is_chief():
            return  # several processes: process 0 writes the file (kilnet.distribution)
        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def save_weights(self, filepath, overwrite=True) -> None:
        from kilnet import distribution
        from kilnet.saving import save_weights
        if not distribution.is_chief():
            return  # several processes: process 0 writes the file (kilnet.distribution)
        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath) -> None:
        from kilnet.saving import load_weights
        load_weights(self, filepath)


def _reject_unsupported(method: str, kwargs: dict, tolerated: tuple):
    """Keras arguments we accept and ignore, and a clear error for the others."""
    unknown = sorted(set(kwargs) - set(tolerated))
    if unknown:
        raise TypeError(f"{method}() got unsupported arguments: {unknown}.")
