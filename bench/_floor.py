"""The matmul-bound floor of the seed MLP's epoch on this machine.

    python bench/_floor.py            # prints one BENCH_RESULT line (JSON)

The seed MLP (784 -> 128 -> 10, batch 32, 60,000 samples) does five matrix products per step:
two forward, three backward (no gradient for the inputs), 24.5 GFLOP an epoch. This times
those products alone, in one lax.scan of 1,875 steps as kilnet's epoch runs them, with a
minimal weight update so that no step can be skipped, under XLA's default CPU options and
with each option set kilnet may choose (kilnet._runtime); the fastest is the floor. bench.py
--check compares kilnet's median epoch with it.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

STEPS, BATCH, FEATURES, HIDDEN, CLASSES = 1875, 32, 784, 128, 10
OPTION_SETS = {"default": None, "ynn fusion off": {"xla_cpu_experimental_ynn_fusion_type": ""}}


def epoch(weights, x):
    def step(w, xb):
        w1, w2 = w
        h = xb @ w1
        z = h @ w2
        dw2 = h.T @ z
        dh = z @ w2.T
        dw1 = xb.T @ dh
        return (w1 - 1e-9 * dw1, w2 - 1e-9 * dw2), None
    return jax.lax.scan(step, weights, x)[0]


def flops() -> int:
    forward = BATCH * FEATURES * HIDDEN + BATCH * HIDDEN * CLASSES
    backward = 2 * BATCH * HIDDEN * CLASSES + BATCH * FEATURES * HIDDEN
    return 2 * STEPS * (forward + backward)


def main(repeats: int = 5) -> int:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((STEPS, BATCH, FEATURES), np.float32))
    weights = (jnp.asarray(rng.random((FEATURES, HIDDEN), np.float32) * 0.01),
               jnp.asarray(rng.random((HIDDEN, CLASSES), np.float32) * 0.01))
    lowered = jax.jit(epoch).lower(weights, x)
    times = {}
    for name, options in OPTION_SETS.items():
        try:
            program = lowered.compile(compiler_options=options) if options else lowered.compile()
        except Exception as error:  # an option this XLA does not know
            times[name] = f"unavailable: {error}"
            continue
        jax.block_until_ready(program(weights, x))
        runs = []
        for _ in range(repeats):
            began = time.perf_counter()
            jax.block_until_ready(program(weights, x))
            runs.append(time.perf_counter() - began)
        times[name] = statistics.median(runs)
    measured = {k: v for k, v in times.items() if isinstance(v, float)}
    best = min(measured, key=measured.get)
    result = {"floor_s": measured[best], "samples": STEPS * BATCH, "floor_options": best, "gflop": flops() / 1e9,
              "gflops_per_s": flops() / measured[best] / 1e9, "by_options": times}
    print("BENCH_RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
