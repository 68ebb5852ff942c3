"""Activations at their kinks: values and gradients equal Keras's where the function is not
differentiable (x = 0 of relu, 6 of relu6, the threshold of ReLU, 0 of ELU and PReLU, ...).

A gradient there is a convention, but not an idle one: an all-zero conv patch with a zero bias
sits exactly at relu's kink every step, so a different convention trains differently from Keras.
Compared with Keras itself, through jax.grad, on the same inputs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402
from kilnet import activations  # noqa: E402

# every kink of the activations below, and points on each side of them
X = jnp.array([-7.0, -6.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 5.0, 6.0, 7.0], jnp.float32)

# activations of one argument that are elementwise (softmax & co. are compared elsewhere)
_NAMES = sorted(set(activations._BY_NAME) - {"softmax", "log_softmax", "sparsemax"})

_RELU_ARGS = [{}, {"max_value": 6.0}, {"max_value": 5.0}, {"max_value": 0.5},
              {"max_value": 0.0}, {"negative_slope": 0.1}, {"threshold": 0.5},
              {"threshold": 1.0}, {"negative_slope": 0.1, "threshold": 0.5},
              {"negative_slope": 0.1, "max_value": 6.0}, {"max_value": 6.0, "threshold": 1.0},
              {"negative_slope": 0.1, "max_value": 5.0, "threshold": 1.0}]


def _value_and_grad(fn):
    """fn(X) and the gradient of its sum, as NumPy arrays."""
    return (np.asarray(fn(X)),
            np.asarray(jax.grad(lambda x: jnp.sum(fn(x)))(X)))


def _assert_as_keras(kilnet_fn, keras_fn):
    """Values and gradients at X equal Keras's (float32 rounding apart)."""
    ours, theirs = _value_and_grad(kilnet_fn), _value_and_grad(keras_fn)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6, atol=1e-7, err_msg="values")
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-6, atol=1e-7, err_msg="gradients")


@pytest.mark.parametrize("name", _NAMES)
def test_activation_by_name(name):
    _assert_as_keras(activations.get(name), keras.activations.get(name))


@pytest.mark.parametrize("name", ["relu", "relu6", "elu", "selu", "leaky_relu", "hard_sigmoid",
                                  "hard_silu", "hard_tanh", "hard_shrink", "soft_shrink",
                                  "sparse_plus", "sparse_sigmoid", "celu"])
def test_activation_layer(name):
    _assert_as_keras(kilnet.layers.Activation(name), keras.layers.Activation(name))


@pytest.mark.parametrize("kwargs", _RELU_ARGS, ids=str)
def test_relu_layer_and_function(kwargs):
    _assert_as_keras(kilnet.layers.ReLU(**kwargs), keras.layers.ReLU(**kwargs))
    _assert_as_keras(lambda x: activations.relu(x, **kwargs),
                     lambda x: keras.activations.relu(x, **kwargs))


def test_relu_examples_from_the_guides():
    """The cases first found apart from Keras, spelled out."""
    grad = jax.grad(lambda x: jnp.sum(kilnet.layers.ReLU()(x)))
    assert grad(jnp.array([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 1.0]
    capped = kilnet.layers.ReLU(max_value=6.0)
    assert jax.grad(lambda x: jnp.sum(capped(x)))(jnp.array([0.0, 6.0])).tolist() == [0.0, 0.0]
    shifted = kilnet.layers.ReLU(negative_slope=0.1, threshold=0.5)
    assert float(shifted(jnp.array([0.5]))[0]) == 0.0
    elu_grad = jax.grad(lambda x: jnp.sum(kilnet.layers.ELU()(x)))
    assert elu_grad(jnp.array([0.0])).tolist() == [1.0]


@pytest.mark.parametrize("slope", [0.3, 0.0, 1.0])
def test_leaky_relu_layer(slope):
    _assert_as_keras(kilnet.layers.LeakyReLU(slope), keras.layers.LeakyReLU(slope))


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_elu_layer(alpha):
    _assert_as_keras(kilnet.layers.ELU(alpha), keras.layers.ELU(alpha))


def test_activation_functions_with_arguments():
    _assert_as_keras(lambda x: activations.elu(x, alpha=0.5),
                     lambda x: keras.activations.elu(x, alpha=0.5))
    _assert_as_keras(lambda x: activations.leaky_relu(x, negative_slope=0.1),
                     lambda x: keras.activations.leaky_relu(x, negative_slope=0.1))


# Keras's activations that take more than x, with a setting other than the default
_WITH_ARGUMENTS = [("celu", {"alpha": 2.0}), ("gelu", {"approximate": True}),
                   ("hard_shrink", {"threshold": 0.8}), ("soft_shrink", {"threshold": 0.25}),
                   ("squareplus", {"b": 16}), ("softmax", {"axis": 0}),
                   ("log_softmax", {"axis": 0}), ("sparsemax", {"axis": 0})]


def test_every_activation_takes_keras_arguments():
    """The same parameters, with the same defaults, as keras.activations' functions."""
    import inspect
    for name in keras.activations.__dict__:
        theirs = getattr(keras.activations, name)
        if name.startswith("_") or name in ("get", "serialize", "deserialize") \
                or not inspect.isfunction(theirs):
            continue
        assert inspect.signature(getattr(activations, name)) == inspect.signature(theirs), name


@pytest.mark.parametrize("name,kwargs", _WITH_ARGUMENTS, ids=str)
def test_activation_arguments_as_keras(name, kwargs):
    """keras.io's Switch Transformer calls softmax(logits, axis=-1): each setting gives
    Keras's values (sparsemax's on a matrix whose columns have one score in their support,
    where Keras 3.15's threshold is the definition's)."""
    x = jnp.stack([X, -X, X / 4.0])
    if name == "sparsemax":
        x = jnp.array([[3.0, -1.0], [0.0, 2.0], [-2.0, 0.5]])
    ours = getattr(activations, name)(x, **kwargs)
    theirs = getattr(keras.activations, name)(x, **kwargs)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6, atol=1e-7)


def test_prelu_layer():
    ours = kilnet.layers.PReLU(alpha_initializer=kilnet.initializers.Constant(0.25))
    ours.build((None, X.shape[0]))
    theirs = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25))
    theirs.build((None, X.shape[0]))
    _assert_as_keras(lambda x: ours(x[None])[0], lambda x: theirs(x[None])[0])


@pytest.mark.parametrize("name", ["relu", "relu6", "elu", "leaky_relu", "hard_silu"])
def test_ops(name):
    _assert_as_keras(getattr(kilnet.ops, name), getattr(keras.ops, name))


def _bias_grad_on_zeros(layer, shape):
    """The gradient of sum(layer(zeros)) for the bias: every pre-activation is exactly 0."""
    layer.build((None,) + shape)
    variables = [v.value for v in layer.trainable_variables]
    zeros = jnp.zeros((2,) + shape)
    return jax.grad(lambda tv: jnp.sum(layer.stateless_call(tv, [], zeros)[0]))(variables)[1]


@pytest.mark.parametrize("activation", ["relu", "relu6", "elu", "leaky_relu"])
@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_layer_activation_at_zero(kind, activation):
    """Dense and Conv2D with an activation, on an all-zero input with a zero bias: the bias's
    gradient is Keras's (0 for relu, however the layer computes its product)."""
    def make(lib):
        if kind == "Dense":
            return lib.layers.Dense(3, activation=activation, bias_initializer="zeros"), (4,)
        return (lib.layers.Conv2D(3, 3, activation=activation, bias_initializer="zeros"),
                (5, 5, 2))
    grads = [np.asarray(_bias_grad_on_zeros(*make(lib))) for lib in (kilnet, keras)]
    np.testing.assert_array_equal(grads[0], grads[1])


_ON_SYMBOLIC = [("sigmoid", {}), ("relu", {}), ("softmax", {"axis": -1}), ("gelu", {}),
                ("gelu", {"approximate": True}), ("exponential", {}),
                ("linear", {}), ("leaky_relu", {"negative_slope": 0.1}), ("elu", {"alpha": 0.5}),
                ("log_softmax", {}), ("silu", {})]


def _scored(lib, name, kwargs):
    inputs = lib.Input((3,))
    logits = lib.layers.Dense(4)(inputs)
    return lib.Model(inputs, getattr(lib.activations, name)(logits, **kwargs) * 5.0)


@pytest.mark.parametrize("name,kwargs", _ON_SYMBOLIC, ids=str)
def test_activations_on_symbolic_tensors_make_nodes_as_keras(name, kwargs, tmp_path):
    """keras.io's memory-efficient embeddings write `keras.activations.sigmoid(logits) * 5`
    in a functional model: the same predictions as Keras's from the same weights, and the
    model saved as .keras opens in Keras with them."""
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    ours, theirs = _scored(kilnet, name, kwargs), _scored(keras, name, kwargs)
    theirs.set_weights(ours.get_weights())
    expected = theirs.predict(x, verbose=0)
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=2e-5, atol=1e-6)
    ours.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras").predict(
        x, verbose=0), expected, rtol=2e-5, atol=1e-6)


def test_mish_on_symbolic_tensors_is_composed_of_ops():
    """Keras 3.15's mish cannot take a symbolic tensor (it calls JAX directly); kilnet's
    composes x * tanh(softplus(x)) of ops nodes, checked against NumPy."""
    inputs = kilnet.Input((3,))
    model = kilnet.Model(inputs, activations.mish(inputs))
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               x * np.tanh(np.log1p(np.exp(x))), rtol=1e-6, atol=1e-7)


def test_an_activation_setting_no_op_takes_is_refused_on_symbolic_tensors():
    with pytest.raises(TypeError, match=r"relu\(max_value=6.0\) cannot be a node.*"
                                        r"kilnet\.layers\.ReLU"):
        activations.relu(kilnet.Input((3,)), max_value=6.0)
