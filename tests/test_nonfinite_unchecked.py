"""The normal training loop applies each step without checking it (kilnet.programs) and relies
on a non-finite step leaving a trace that the check at the chunk's end sees: a non-finite loss
in the loss sum, a non-finite gradient in the weights or the optimizer state. These tests pin
the property that reliance needs, for every kilnet optimizer, and show that where the update
could hide a non-finite gradient (clipvalue clips inf to a finite bound; the user's own
constraint) the step checks the gradient itself, so fit still stops at the right step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import kilnet
from kilnet import constraints, layers, optimizers
from kilnet.errors import NonFiniteError

ALL_OPTIMIZERS = [
    optimizers.SGD(0.1), optimizers.SGD(0.1, momentum=0.9), optimizers.SGD(0.1, nesterov=True,
                                                                           momentum=0.5),
    optimizers.Adam(), optimizers.AdamW(), optimizers.RMSprop(), optimizers.Adagrad(),
    optimizers.Nadam(), optimizers.Adam(clipnorm=1.0), optimizers.Adam(global_clipnorm=1.0),
    optimizers.Adam(amsgrad=True), optimizers.AdamW(amsgrad=True),
    optimizers.SGD(0.1, global_clipnorm=1.0),
    optimizers.Adamax(), optimizers.Adamax(weight_decay=0.1), optimizers.Adadelta(),
    optimizers.Adadelta(weight_decay=0.1), optimizers.Lion(), optimizers.Lion(weight_decay=0.1),
    optimizers.Lamb(), optimizers.Lamb(weight_decay=0.1), optimizers.Adafactor(),
    optimizers.Adafactor(weight_decay=0.1), optimizers.Ftrl(),
    optimizers.Ftrl(l1_regularization_strength=0.1, weight_decay=0.1),
]


def test_every_optimizer_type_is_in_the_list():
    assert {type(o) for o in ALL_OPTIMIZERS} == set(optimizers.OPTIMIZER_TYPES.values())


def _leaves_finite(*trees) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for tree in trees
               for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating))


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("optimizer", ALL_OPTIMIZERS, ids=lambda o: repr(o) + str(
    {k: getattr(o, k) for k in ("clipnorm", "global_clipnorm") if getattr(o, k)}))
def test_every_kilnet_optimizer_keeps_a_non_finite_gradient_visible(optimizer, bad):
    assert optimizers.keeps_non_finite(optimizer)
    tx = optimizers.transformation(optimizer)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}
    state = tx.init(params)
    grads = {"w": jnp.full((3, 2), 0.1).at[1, 0].set(bad), "b": jnp.full((2,), 0.1)}
    updates, new_state = tx.update(grads, state, params)
    assert not _leaves_finite(optax.apply_updates(params, updates), new_state)


def test_clipvalue_and_foreign_transformations_hide_it_so_they_are_not_trusted():
    clipped = optimizers.SGD(0.1, clipvalue=1.0)
    tx = optimizers.transformation(clipped)
    params = {"w": jnp.ones((2,))}
    updates, new_state = tx.update({"w": jnp.array([np.inf, 0.0])}, tx.init(params), params)
    assert _leaves_finite(optax.apply_updates(params, updates), new_state)  # hidden
    assert not optimizers.keeps_non_finite(clipped)
    assert not optimizers.keeps_non_finite(optax.sgd(0.1))


@pytest.mark.parametrize("constraint", [constraints.MaxNorm(1.0), constraints.NonNeg(),
                                        constraints.UnitNorm(), constraints.MinMaxNorm(0.5, 1.0)])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_kilnet_constraints_keep_a_non_finite_weight_non_finite(constraint, bad):
    w = jnp.ones((3, 2)).at[0, 1].set(bad)
    assert constraints.keeps_non_finite(constraint)
    assert not _leaves_finite(constraint(w))


class SqrtScale(layers.Layer):
    """y = x * sqrt(|s|) with s starting at 0: a finite loss whose gradient is infinite."""

    def build(self, input_shape):
        self.s = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="s")

    def call(self, x):
        return x * kilnet.ops.sqrt(kilnet.ops.abs(self.s))


def _infinite_gradient_model(optimizer, constraint=None):
    model = kilnet.Sequential([kilnet.Input(shape=(2,)), SqrtScale(),
                               layers.Dense(1, kernel_constraint=constraint)])
    model.compile(optimizer=optimizer, loss="mse")
    model.build(seed=0)
    return model


@pytest.mark.parametrize("optimizer, constraint", [
    (optimizers.SGD(0.01), None),                       # trusted: inf reaches the weights
    (optimizers.SGD(0.01, clipvalue=1.0), None),        # clipvalue would hide it
    (optax.sgd(0.01), None),                            # a foreign transformation
    (optimizers.SGD(0.01), lambda w: jnp.clip(w, -1.0, 1.0)),  # a user's constraint
], ids=["sgd", "sgd-clipvalue", "optax-sgd", "user-constraint"])
def test_a_finite_loss_with_an_infinite_gradient_stops_fit_at_its_step(optimizer, constraint):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 2)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    model = _infinite_gradient_model(optimizer, constraint)
    initial = [w.copy() for w in model.get_weights()]
    assert np.isfinite(model.evaluate(x, y, verbose=0))  # the loss itself is finite
    with pytest.raises(NonFiniteError, match=r"epoch 1, step 1\b"):
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for before, after in zip(initial, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_the_step_checks_its_gradient_only_where_the_update_could_hide_it():
    trusted = _infinite_gradient_model(optimizers.Adam())
    clipped = _infinite_gradient_model(optimizers.Adam(clipvalue=0.5))
    custom = _infinite_gradient_model(optimizers.Adam(), lambda w: w)
    assert trusted.compiled.update_keeps_non_finite(trusted)
    assert not clipped.compiled.update_keeps_non_finite(clipped)
    assert not custom.compiled.update_keeps_non_finite(custom)


# -- the chunk's closing check (kilnet.programs._state_finite) ----------------------------------
def _state_tree(rng):
    """A training state's mix: float32 weights of several sizes, a bfloat16 leaf, integer
    counters, an empty array and a scalar."""
    return {"w": [rng.normal(size=s).astype(np.float32) for s in ((40, 30), (30,), (30, 5))],
            "bf16": jnp.asarray(rng.normal(size=(7, 3)), jnp.bfloat16),
            "count": np.int32(3), "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
            "empty": np.zeros((0, 4), np.float32), "loss": np.float32(0.25)}


@pytest.mark.parametrize("group_elements", [2**22, 100, 1])
def test_the_chunk_check_finds_any_non_finite_element_in_any_leaf(monkeypatch, group_elements):
    from kilnet import programs

    # Small groups too: leaves split over several groups, and leaves larger than a group.
    monkeypatch.setattr(programs, "_CHECK_GROUP_ELEMENTS", group_elements)
    check = jax.jit(programs._state_finite)
    rng = np.random.default_rng(0)
    tree = _state_tree(rng)
    assert bool(check(tree))
    paths = [p for p, leaf in jax.tree_util.tree_leaves_with_path(tree)
             if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating) and np.size(leaf)]
    for path in paths:
        for bad in (np.nan, np.inf, -np.inf):
            def poison(p, leaf, bad=bad, path=path):
                if p != path:
                    return leaf
                flat = np.array(leaf, np.float32).reshape(-1)
                flat[rng.integers(flat.size)] = bad
                return jnp.asarray(flat.reshape(np.shape(leaf)), jnp.asarray(leaf).dtype)
            poisoned = jax.tree_util.tree_map_with_path(poison, tree)
            assert not bool(check(poisoned)), (path, bad)
    assert bool(check({"only_ints": np.arange(3)})) and bool(check({}))


def test_the_chunk_check_compiles_one_reduction_per_group_not_per_leaf():
    """Each reduction is about three XLA kernels to compile; the check's reductions are one
    per dtype group, whatever the number of leaves (24 here)."""
    from kilnet import programs

    tree = [jnp.ones((8, 4)) for _ in range(20)] + [jnp.ones(3, jnp.bfloat16)] * 4
    text = jax.jit(programs._state_finite).lower(tree).as_text()
    assert text.count("is_finite") == 2  # float32 and bfloat16
    per_leaf = jax.jit(programs._all_finite).lower(tree).as_text()
    assert per_leaf.count("is_finite") == 24
