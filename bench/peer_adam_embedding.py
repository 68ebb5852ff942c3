"""Why Keras on TensorFlow learns the bench's text tasks faster: its Adam step on an Embedding.

An Embedding's gradient on TensorFlow is a `tf.IndexedSlices` with one row per occurrence of a
token in the batch. Keras's Adam squares that gradient row by row before the rows of a
repeated token are summed, so the second moment of a token seen k times with the same gradient
g is k * g^2 instead of (k * g)^2, and its first step is sqrt(k) times the learning rate.
On JAX (Keras and kilnet) the gradient is dense and the step is Adam's: the learning rate.

The bench's synthetic reviews hold 8 marker tokens of their class among 50 ids: a marker id
occurs 6.3 times on average (up to 14) in the first batch of 64, so the markers' embeddings
move about 2.5x faster on TensorFlow, and its Transformer reaches 0.995-0.998 test accuracy after 3 epochs where Keras
on JAX and kilnet reach 0.972-0.988 (kilnet and Keras on JAX started from the same weights
give the same losses to 5 digits).

Run with the peers' environment (bench/setup_peers.sh):
    bench/.venv-peers/bin/python bench/peer_adam_embedding.py
"""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = r"""
import os, sys
import numpy as np, keras
inputs = keras.Input((4,), dtype="int32")
x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10, 1)(inputs))
model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(x))
model.layers[1].set_weights([np.zeros((10, 1), "float32")])
model.layers[3].set_weights([np.ones((1, 1), "float32")])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001), loss="mse")
# token 0 four times in the first sequence, tokens 1-4 once each in the second
model.train_on_batch(np.array([[0, 0, 0, 0], [1, 2, 3, 4]], "int32"), np.array([[1.0], [1.0]]))
table = model.layers[1].get_weights()[0][:, 0]
print(f"{os.environ['KERAS_BACKEND']:10s}  token seen 4 times: {table[0]:.6f}   "
      f"token seen once: {table[1]:.6f}")
"""


def main() -> None:
    print("First Adam step (learning rate 0.001) of an Embedding row:")
    for backend in ("jax", "tensorflow"):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        result = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                                text=True)
        lines = result.stdout.strip().splitlines()
        print(lines[-1] if lines else f"{backend}: failed\n{result.stderr[-2000:]}")


if __name__ == "__main__":
    main()
