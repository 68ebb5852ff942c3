"""A Variable assigned inside a layer's call() during an eager call keeps the value, as in
Keras: trainable ones too (keras.io's mnist_moe counts its experts' use in a trainable
keras.Variable), at the first call, which builds the layer, and at the later ones; the
trace or run that builds the layer counts nothing, so nothing is counted twice. A symbolic
call (a functional model made from Input) assigns nothing, as Keras's."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

X = (np.arange(6, dtype=np.float32).reshape(2, 3) / 10)


def values(*variables):
    return [np.asarray(kilnet.ops.convert_to_numpy(v)) for v in variables]


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for mine, keras_value in zip(values(*ours), values(*theirs)):
        np.testing.assert_allclose(mine, np.asarray(keras_value), rtol=1e-6, atol=1e-7)


def counter(lib, width=3, name="counter"):
    """A trainable keras.Variable made in __init__, a non-trainable and a trainable weight
    made by build(), each assigned in call (assign, assign_add)."""
    class Counter(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.total = lib.Variable(np.zeros(width, np.float32))

        def build(self, input_shape):
            self.calls = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                         trainable=False, name="calls")
            self.doubled = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                           name="doubled")

        def call(self, x):
            column_sums = lib.ops.sum(x, axis=0)
            self.total.assign(self.total + column_sums)
            self.calls.assign(self.calls + 1.0)
            self.doubled.assign_add(column_sums * 2)
            return x * 2

    return Counter(name=name)


def counts(layer):
    return [layer.total, layer.calls, layer.doubled]


def with_sublayer(lib, name="with_sub"):
    """A Dense sub-layer built at the first call; counts of its outputs (trainable, assign)
    and of calls (non-trainable, assign_sub)."""
    class WithSub(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(2, kernel_initializer="ones", name="dense")
            self.output_sum = lib.Variable(np.zeros(2, np.float32))
            self.countdown = lib.Variable(np.zeros((), np.float32), trainable=False)

        def call(self, x):
            y = self.dense(x)
            self.output_sum.assign(self.output_sum + lib.ops.sum(y, axis=0))
            self.countdown.assign_sub(1.0)
            return y

    return WithSub(name=name)


@pytest.mark.parametrize("make, read", [(counter, counts),
                                        (with_sublayer,
                                         lambda la: [la.output_sum, la.countdown])])
def test_the_first_and_second_eager_calls_keep_what_call_assigned(make, read):
    ours, theirs = make(kilnet), make(keras)
    ours(X)
    theirs(X)
    assert_same(read(ours), read(theirs))
    assert float(np.sum(values(*read(ours))[0])) != 0.0   # the trainable one counted
    ours(X)
    theirs(X)
    assert_same(read(ours), read(theirs))


def counting_model(lib):
    class Net(lib.Model):
        def __init__(self):
            super().__init__(name="net")
            self.inner = with_sublayer(lib, "inner")
            self.count = counter(lib, width=2, name="count")
            self.steps = lib.Variable(np.zeros((), np.float32))

        def call(self, x, training=False):
            self.steps.assign_add(1.0)
            return self.count(self.inner(x))

    return Net()


def model_counts(model):
    return [model.steps, model.inner.output_sum, model.inner.countdown] + counts(model.count)


def test_a_subclassed_models_first_eager_call_keeps_what_its_layers_assigned():
    ours, theirs = counting_model(kilnet), counting_model(keras)
    ours(X)
    theirs(X)
    assert_same(model_counts(ours), model_counts(theirs))
    ours(X)
    theirs(X)
    assert_same(model_counts(ours), model_counts(theirs))
    assert float(ours.steps.numpy()) == 2.0


def test_a_functional_model_assigns_nothing_when_made_and_keeps_its_eager_calls_writes():
    made = {}
    for lib in (kilnet, keras):
        layer = counter(lib)
        inputs = lib.Input((3,))
        made[lib] = layer, lib.Model(inputs, layer(inputs))
        for v in values(*counts(layer)):   # the symbolic pass assigned nothing
            np.testing.assert_array_equal(v, np.zeros(3))
    for lib in (kilnet, keras):
        made[lib][1](X)
    assert_same(counts(made[kilnet][0]), counts(made[keras][0]))


def test_an_eager_call_after_build_keeps_what_call_assigned():
    ours, theirs = counter(kilnet), counter(keras)
    ours.build((None, 3))
    theirs.build((None, 3))
    assert_same(counts(ours), counts(theirs))
    ours(X)
    theirs(X)
    assert_same(counts(ours), counts(theirs))


def test_a_layer_called_twice_in_one_eager_call_counts_both_calls():
    def twice(lib):
        class Twice(lib.Model):
            def __init__(self):
                super().__init__(name="twice")
                self.count = counter(lib)

            def call(self, x):
                return self.count(self.count(x))

        return Twice()

    ours, theirs = twice(kilnet), twice(keras)
    ours(X)
    theirs(X)
    assert_same(counts(ours.count), counts(theirs.count))
    np.testing.assert_allclose(ours.count.total.numpy(), X.sum(0) * 3, rtol=1e-6)


def moving_mean(lib):
    """A BatchNormalization-like statistic, moved in training only."""
    class MovingMean(lib.layers.Layer):
        def build(self, input_shape):
            self.mean = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                        trainable=False, name="mean")

        def call(self, x, training=None):
            if training:
                self.mean.assign(self.mean * 0.9 + lib.ops.mean(x, axis=0) * 0.1)
            return x - self.mean

    return MovingMean(name="moving")


@pytest.mark.parametrize("make, read", [
    (moving_mean, lambda la: [la.mean]),
    (lambda lib: lib.layers.BatchNormalization(name="bn"),
     lambda la: [la.moving_mean, la.moving_variance])])
def test_a_first_eager_call_in_training_moves_the_statistics_once(make, read):
    ours, theirs = make(kilnet), make(keras)
    ours(X, training=True)
    theirs(X, training=True)
    assert_same(read(ours), read(theirs))
    ours(X, training=True)
    theirs(X, training=True)
    assert_same(read(ours), read(theirs))


def expert_counter(lib):
    """keras.io's mnist_moe's first LinearMoE: the experts picked for the first sample are
    read into Python (so the first call runs on the arrays, not a trace), and their use is
    counted in a trainable keras.Variable."""
    class PickAndCount(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.experts = [lib.layers.Dense(2, kernel_initializer="ones", name=f"expert_{i}")
                            for i in range(3)]
            self.gate = lib.layers.Dense(3, kernel_initializer="identity", name="gate")
            self.usage = lib.Variable(np.zeros(3, np.float32))

        def call(self, x):
            _, picked = lib.ops.top_k(self.gate(x), k=2)
            self.usage.assign(self.usage + lib.ops.sum(
                lib.ops.one_hot(lib.ops.reshape(picked, [-1]), 3), axis=0))
            return sum(self.experts[int(i)](x)
                       for i in lib.ops.convert_to_numpy(picked)[0])

    return PickAndCount(name="pick_count")


def test_a_call_reading_values_counts_once_at_its_first_eager_call():
    ours, theirs = expert_counter(kilnet), expert_counter(keras)
    ours(X)
    theirs(X)
    assert_same([ours.usage], [theirs.usage])
    np.testing.assert_array_equal(ours.usage.numpy(), [0.0, 2.0, 2.0])
    ours(X)
    theirs(X)
    assert_same([ours.usage], [theirs.usage])


def test_a_model_holding_a_value_reading_layer_counts_once_at_its_first_call():
    def net(lib):
        class Net(lib.Model):
            def __init__(self):
                super().__init__(name="moe_net")
                self.moe = expert_counter(lib)

            def call(self, x):
                return self.moe(x)

        return Net()

    ours, theirs = net(kilnet), net(keras)
    ours(X)
    theirs(X)
    assert_same([ours.moe.usage], [theirs.moe.usage])
    np.testing.assert_array_equal(ours.moe.usage.numpy(), [0.0, 2.0, 2.0])


def test_fit_predict_and_stateless_call_keep_only_the_non_trainable_writes_as_keras():
    """Keras on JAX returns only the non-trainable variables from its stateless calls (fit's
    and predict's steps, stateless_call): a trainable Variable assigned in call keeps its
    value there; so does kilnet's. Only eager calls keep trainable writes."""
    def net(lib):
        class Net(lib.Model):
            def __init__(self):
                super().__init__(name="net")
                self.count = counter(lib)
                self.head = lib.layers.Dense(1, kernel_initializer="ones", name="head")

            def call(self, x):
                return self.head(self.count(x))

        return Net()

    seen = {}
    for lib in (kilnet, keras):
        model = net(lib)
        model(X)
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        _, returned = model.stateless_call(trainable, non_trainable, X)
        model.compile(lib.optimizers.SGD(0.0), "mse")
        model.fit(X, np.ones((2, 1), np.float32), batch_size=2, epochs=2, verbose=0)
        model.predict(X, verbose=0)
        seen[lib] = values(*counts(model.count)) + [np.asarray(returned[0])]
    assert_same(seen[kilnet], seen[keras])
    np.testing.assert_allclose(seen[kilnet][0], X.sum(0), rtol=1e-6)   # the eager call's only
    np.testing.assert_array_equal(seen[kilnet][1], [4.0] * 3)   # 1 eager, 2 fit, 1 predict
