"""The rest of kilnet.ops (Keras's keras.ops.numpy, keras.ops.linalg and the core and math
functions) against keras.ops itself on the JAX backend: values, shapes and dtypes, eagerly and
under jax.jit where the result's shape is static; Variables as arguments; the data-dependent
ops' errors under jit; and op nodes of functional models saved in kilnet's and Keras's files."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kilnet
from kilnet import ops
from kilnet.variables import Variable

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
kops = keras.ops

RNG = np.random.default_rng(7)
F = RNG.normal(size=(3, 4)).astype(np.float32)              # a small float32 matrix
G = RNG.normal(size=(3, 4)).astype(np.float32)
POS = RNG.uniform(0.5, 3.0, size=(3, 4)).astype(np.float32)
UNIT = RNG.uniform(-0.9, 0.9, size=(3, 4)).astype(np.float32)
I = RNG.integers(-6, 7, size=(3, 4)).astype(np.int32)        # small signed integers
J = RNG.integers(1, 9, size=(3, 4)).astype(np.int32)         # small positive integers
B = F > 0
NANS = np.where(RNG.uniform(size=(3, 4)) < 0.3, np.nan, F).astype(np.float32)
NANS[0] = np.nan                                             # one row all NaN
SPECIAL = np.array([0.0, -0.0, 1.5, np.nan, np.inf, -np.inf, -2.0], np.float32)
SQUARE = (RNG.normal(size=(2, 3, 3)) + 3 * np.eye(3)).astype(np.float32)   # a batch
SPD = (SQUARE @ SQUARE.transpose(0, 2, 1) + np.eye(3)).astype(np.float32)
V3 = RNG.normal(size=(4, 3)).astype(np.float32)
SIGNAL = RNG.normal(size=(2, 32)).astype(np.float32)
COMPLEX = (F + 1j * G).astype(np.complex64)

# (id, function name, positional arguments, keyword arguments, traceable under jax.jit)
CASES = [
    # elementwise math
    ("divide_no_nan", "divide_no_nan", (F, np.where(B, G, 0.0)), {}, True),
    ("divide_no_nan_int", "divide_no_nan", (I, np.where(I > 0, J, 0)), {}, True),
    ("fmod", "fmod", (F * 5, POS), {}, True),
    ("fmod_int", "fmod", (I, J), {}, True),
    ("fmax", "fmax", (NANS, G), {}, True),
    ("fmin", "fmin", (NANS, G), {}, True),
    ("fabs", "fabs", (F,), {}, True),
    ("fabs_int", "fabs", (I,), {}, True),
    ("cbrt", "cbrt", (F,), {}, True),
    ("cbrt_int", "cbrt", (I,), {}, True),
    ("hypot", "hypot", (F, G), {}, True),
    ("heaviside", "heaviside", (np.round(F), G), {}, True),
    ("logaddexp", "logaddexp", (F, G), {}, True),
    ("logaddexp_int", "logaddexp", (I, J), {}, True),
    ("logaddexp2", "logaddexp2", (F, G), {}, True),
    ("logaddexp2_half_and_number", "logaddexp2", (F.astype(np.float16), 2), {}, True),
    ("ldexp", "ldexp", (F, I), {}, True),
    ("nextafter", "nextafter", (F, G), {}, True),
    ("gcd", "gcd", (I, J), {}, True),
    ("lcm", "lcm", (I, J), {}, True),
    ("deg2rad", "deg2rad", (F * 90,), {}, True),
    ("deg2rad_int", "deg2rad", (I,), {}, True),
    ("rad2deg", "rad2deg", (F,), {}, True),
    ("sinc", "sinc", (F,), {}, True),
    ("sinc_int", "sinc", (I,), {}, True),
    ("i0", "i0", (F,), {}, True),
    ("i0_int", "i0", (I,), {}, True),
    ("signbit", "signbit", (SPECIAL,), {}, True),
    ("isneginf", "isneginf", (SPECIAL,), {}, True),
    ("isposinf", "isposinf", (SPECIAL,), {}, True),
    ("isclose", "isclose", (F, F + 1e-6 * G), {}, True),
    ("isclose_nan", "isclose", (SPECIAL, SPECIAL), {"equal_nan": True}, True),
    ("allclose", "allclose", (F, F + 1e-3), {"atol": 1e-2}, True),
    ("isin", "isin", (I, np.array([0, 2, 5], np.int32)), {}, True),
    ("isin_invert", "isin", (I, np.array([0, 2, 5], np.int32)), {"invert": True}, True),
    # bitwise
    ("bitwise_and", "bitwise_and", (I, J), {}, True),
    ("bitwise_or", "bitwise_or", (I, J), {}, True),
    ("bitwise_xor", "bitwise_xor", (I, J), {}, True),
    ("bitwise_xor_bool", "bitwise_xor", (B, G > 0), {}, True),
    ("bitwise_invert", "bitwise_invert", (I,), {}, True),
    ("bitwise_not", "bitwise_not", (B,), {}, True),
    ("bitwise_left_shift", "bitwise_left_shift", (I, J), {}, True),
    ("left_shift_int", "left_shift", (J, 2), {}, True),
    ("bitwise_right_shift", "bitwise_right_shift", (I * 40, J), {}, True),
    ("right_shift_int", "right_shift", (I * 40, 3), {}, True),
    # complex numbers
    ("real", "real", (COMPLEX,), {}, True),
    ("imag", "imag", (COMPLEX,), {}, True),
    ("imag_of_real", "imag", (F,), {}, True),
    ("conj", "conj", (COMPLEX,), {}, True),
    ("conjugate", "conjugate", (F,), {}, True),
    ("angle", "angle", (COMPLEX,), {}, True),
    ("angle_int", "angle", (I,), {}, True),
    ("isreal", "isreal", (np.where(B, COMPLEX, F).astype(np.complex64),), {}, True),
    # linear algebra in numpy
    ("inner", "inner", (F, G), {}, True),
    ("vdot", "vdot", (F, G), {}, True),
    ("kron", "kron", (F[:2, :2], G), {}, True),
    ("cross", "cross", (V3, V3[::-1]), {}, True),
    ("cross_axis", "cross", (V3.T, V3.T[:, ::-1]), {"axis": 0}, True),
    ("trace", "trace", (F,), {"offset": 1}, True),
    ("trace_axes", "trace", (SQUARE,), {"axis1": 1, "axis2": 2}, True),
    ("slogdet", "slogdet", (SQUARE,), {}, True),
    ("correlate", "correlate", (F[0], G[1, :3]), {}, True),
    ("correlate_full", "correlate", (F[0], G[1, :3]), {"mode": "full"}, True),
    ("corrcoef", "corrcoef", (F,), {}, True),
    ("vander", "vander", (F[0],), {"N": 3, "increasing": True}, True),
    # reductions and statistics
    ("amax", "amax", (F,), {"axis": 1}, True),
    ("amin", "amin", (I,), {"axis": 0, "keepdims": True}, True),
    ("ptp", "ptp", (F,), {"axis": -1}, True),
    ("count_nonzero", "count_nonzero", (I,), {}, True),
    ("count_nonzero_axis", "count_nonzero", (I,), {"axis": 1}, True),
    ("average", "average", (F,), {"axis": 1, "weights": POS[0]}, True),
    ("average_int", "average", (I,), {}, True),
    ("average_int_half_weights", "average", (I,),
     {"axis": 0, "weights": POS[:, 0].astype(np.float16)}, True),
    ("quantile_int", "quantile", (I, 0.5), {}, True),
    ("nanmean_int", "nanmean", (I,), {"axis": 0}, True),
    ("median", "median", (F,), {"axis": 1}, True),
    ("median_int_keepdims", "median", (I,), {"keepdims": True}, True),
    ("median_axes", "median", (SQUARE,), {"axis": [1, 2]}, True),
    ("quantile", "quantile", (F, np.array([0.1, 0.5, 0.9], np.float32)), {"axis": 0}, True),
    ("quantile_method", "quantile", (F, 0.3), {"method": "nearest", "axis": 1}, True),
    ("percentile", "percentile", (F, 40.0), {"axis": 1, "keepdims": True}, True),
    ("histogram", "histogram", (F.ravel(),), {"bins": 5}, True),
    ("histogram_range", "histogram", (F.ravel(),), {"bins": 4, "range": (-1.0, 1.0)}, True),
    ("trapezoid", "trapezoid", (F,), {"dx": 0.5}, True),
    ("trapezoid_x", "trapezoid", (F,), {"x": np.cumsum(POS[0]), "axis": 1}, True),
    # reductions that skip NaN
    *[(name, name, (NANS,), {"axis": 1}, True)
      for name in ("nansum", "nanprod", "nanmean", "nanstd", "nanvar", "nanmax", "nanmin",
                   "nancumsum", "nancumprod", "nanmedian")],
    ("nanargmax", "nanargmax", (NANS[1:],), {"axis": 1}, True),
    ("nanargmin", "nanargmin", (NANS[1:],), {"axis": 1, "keepdims": True}, True),
    ("nansum_all", "nansum", (NANS,), {}, True),
    ("nanquantile", "nanquantile", (NANS[1:], 0.25), {"axis": 1}, True),
    ("nanpercentile", "nanpercentile", (NANS[1:], 75.0), {"axis": 1}, True),
    # shapes and indexing
    ("ravel", "ravel", (F,), {}, True),
    ("append", "append", (F, G), {}, True),
    ("append_axis", "append", (F, G), {"axis": 0}, True),
    ("roll", "roll", (F, 2), {"axis": 1}, True),
    ("roll_flat", "roll", (F, -3), {}, True),
    ("rot90", "rot90", (F,), {"k": 3}, True),
    ("rot90_axes", "rot90", (SQUARE,), {"axes": (1, 2)}, True),
    ("fliplr", "fliplr", (F,), {}, True),
    ("flipud", "flipud", (F,), {}, True),
    ("diag", "diag", (F,), {"k": 1}, True),
    ("diag_1d", "diag", (F[0],), {"k": -1}, True),
    ("diagflat", "diagflat", (F[:2],), {}, True),
    ("diagonal", "diagonal", (SQUARE,), {"offset": 1, "axis1": 1, "axis2": 2}, True),
    ("diff", "diff", (F,), {"n": 2}, True),
    ("diff_axis", "diff", (I,), {"axis": 0}, True),
    ("digitize", "digitize", (F, np.array([-1.0, 0.0, 1.0], np.float32)), {}, True),
    ("searchsorted", "searchsorted", (np.sort(F[0]), G), {}, True),
    ("searchsorted_right", "searchsorted", (np.array([1, 2, 2, 3], np.int32), J),
     {"side": "right"}, True),
    ("argpartition", "argpartition", (F, 1), {}, True),
    ("argpartition_flat", "argpartition", (F, 4), {"axis": None}, True),
    ("select", "select", ([F < -0.5, F > 0.5], [F, G]), {"default": -1.0}, True),
    ("nonzero", "nonzero", (I,), {}, False),
    ("unique", "unique", (I,), {}, False),
    ("unique_all", "unique", (I.ravel(),),
     {"return_index": True, "return_inverse": True, "return_counts": True}, False),
    ("unique_axis", "unique", (np.array([[1, 2], [1, 2], [0, 5]], np.int32),), {"axis": 0}, False),
    ("unique_size", "unique", (I,), {"size": 20, "fill_value": -1}, True),
    ("bincount", "bincount", (J.ravel(),), {"minlength": 12}, False),
    ("bincount_weights", "bincount", (J.ravel(), POS.ravel()), {}, False),
    ("bincount_2d", "bincount", (J,), {"minlength": 9}, False),
    ("unravel_index", "unravel_index", (J, (3, 3)), {}, True),
    # stacking and splitting
    ("hstack", "hstack", ([F, G],), {}, True),
    ("vstack", "vstack", ([F[0], G[1]],), {}, True),
    ("dstack", "dstack", ([F, G],), {}, True),
    ("array_split", "array_split", (F, 3), {"axis": 1}, True),
    ("hsplit", "hsplit", (F, 2), {}, True),
    ("hsplit_indices", "hsplit", (F, [1, 3]), {}, True),
    ("vsplit", "vsplit", (F, 3), {}, True),
    ("dsplit", "dsplit", (SQUARE, [1]), {}, True),
    ("meshgrid", "meshgrid", (F[0], G[1, :3]), {}, True),
    ("meshgrid_ij", "meshgrid", (F[0], G[1, :3], I[2, :2]), {"indexing": "ij"}, True),
    # creation and conversion
    ("array", "array", (I,), {"dtype": "float32"}, True),
    ("array_list", "array", ([[1, 2], [3, 4]],), {}, False),
    ("copy", "copy", (F,), {}, True),
    ("view", "view", (F,), {"dtype": "int32"}, True),
    ("view_narrower", "view", (I,), {"dtype": "int16"}, True),
    ("empty_like", "empty_like", (I,), {"dtype": "float32"}, True),
    ("identity", "identity", (3,), {}, False),
    ("identity_int", "identity", (2,), {"dtype": "int32"}, False),
    ("tri", "tri", (3,), {"M": 4, "k": 1}, False),
    ("geomspace", "geomspace", (1.0, 1000.0), {"num": 4}, False),
    ("geomspace_arrays", "geomspace", (POS[0], 10 * POS[1]), {"num": 3, "axis": 1}, True),
    ("logspace", "logspace", (0.0, 2.0), {"num": 5, "base": 2.0}, False),
    ("bartlett", "bartlett", (7,), {}, False),
    ("blackman", "blackman", (7,), {}, False),
    ("hamming", "hamming", (7,), {}, False),
    ("hanning", "hanning", (7,), {}, False),
    ("kaiser", "kaiser", (7, 5.0), {}, False),
    # linear algebra
    ("cholesky", "cholesky", (SPD,), {}, True),
    ("cholesky_upper", "cholesky", (SPD,), {"upper": True}, True),
    ("cholesky_inverse", "cholesky_inverse", (np.linalg.cholesky(SPD[0]),), {}, True),
    ("cholesky_inverse_upper", "cholesky_inverse", (np.linalg.cholesky(SPD[1]).T,),
     {"upper": True}, True),
    ("det", "det", (SQUARE,), {}, True),
    ("det_int", "det", (np.eye(3, dtype=np.int32) * 2 + 1,), {}, True),
    ("eig", "eig", (SQUARE[0],), {}, False),
    ("eigh", "eigh", (SPD,), {}, True),
    ("inv", "inv", (SQUARE,), {}, True),
    ("lstsq", "lstsq", (F.T, G[0]), {}, True),
    ("lu_factor", "lu_factor", (SQUARE,), {}, True),
    ("matrix_rank", "matrix_rank", (F.T @ F,), {}, True),
    ("matrix_rank_tol", "matrix_rank", (SQUARE,), {"tol": 0.5}, True),
    ("pinv", "pinv", (F,), {}, True),
    ("qr", "qr", (F.T,), {}, True),
    ("qr_complete", "qr", (F.T,), {"mode": "complete"}, True),
    ("solve", "solve", (SQUARE, F[:, :3, None].repeat(2, -1).transpose(1, 0, 2)[:2]), {}, True),
    ("solve_triangular", "solve_triangular", (np.triu(SQUARE), SQUARE), {}, True),
    ("solve_triangular_lower", "solve_triangular", (np.tril(SQUARE), SQUARE), {"lower": True},
     True),
    ("svd", "svd", (F,), {}, True),
    ("svd_values", "svd", (F,), {"compute_uv": False}, True),
    ("svd_reduced", "svd", (F,), {"full_matrices": False}, True),
    # core
    ("saturate_cast", "saturate_cast", (F * 200,), {"dtype": "uint8"}, True),
    ("saturate_cast_int32", "saturate_cast", (np.array([3e9, -3e9, np.inf, 7.6], np.float32),),
     {"dtype": "int32"}, True),
    ("saturate_cast_narrow", "saturate_cast", (I * 30,), {"dtype": "int8"}, True),
    ("saturate_cast_half", "saturate_cast", (F.astype(np.float16) * 1000,), {"dtype": "int8"},
     True),
    ("scatter", "scatter", (np.array([[0, 1], [2, 3], [0, 1]], np.int32), F[0, :3], (3, 4)), {},
     True),
    ("scatter_rows", "scatter", (np.array([[2], [0]], np.int32), F[:2], (3, 4)), {}, True),
    ("scatter_update", "scatter_update", (F, np.array([[0, 1], [2, 3]], np.int32), G[0, :2]), {},
     True),
    *[(f"scatter_update_{r}", "scatter_update",
       (F, np.array([[0, 1], [0, 1], [2, 0]], np.int32), G[0, :3]),
       {"reduction": r}, True) for r in ("add", "max", "min", "mul")],
    ("scatter_update_rows", "scatter_update", (F, np.array([[1]], np.int32), G[:1]), {}, True),
    # math
    ("segment_min", "segment_min", (F, np.array([0, 0, 2], np.int32)), {"num_segments": 3}, True),
    ("segment_prod", "segment_prod", (F, np.array([1, 0, 1], np.int32)),
     {"num_segments": 2, "sorted": False}, True),
    ("in_top_k", "in_top_k", (np.array([0, 3, 1], np.int32), F, 2), {}, True),
    ("in_top_k_nan", "in_top_k", (np.array([0, 1, 1], np.int32), NANS, 4), {}, True),
    ("logdet", "logdet", (SPD,), {}, True),
    ("cdist", "cdist", (F, G[:2]), {}, True),
    ("cdist_batched", "cdist", (SQUARE, SPD), {}, True),
    ("erfc", "erfc", (F,), {}, True),
    ("erfinv", "erfinv", (UNIT,), {}, True),
    ("view_as_complex", "view_as_complex", (F.reshape(3, 2, 2),), {}, True),
    ("view_as_real", "view_as_real", (COMPLEX,), {}, True),
    ("fft", "fft", ((F, G),), {}, True),
    ("fft2", "fft2", ((F, G),), {}, True),
    ("ifft2", "ifft2", ((F, G),), {}, True),
    ("rfft", "rfft", (F,), {}, True),
    ("rfft_length", "rfft", (F,), {"fft_length": 6}, True),
    ("irfft", "irfft", ((F, G),), {}, True),
    ("irfft_length", "irfft", ((F, G),), {"fft_length": 5}, True),
    ("extract_sequences", "extract_sequences", (SIGNAL, 8, 3), {}, True),
    ("stft", "stft", (SIGNAL, 8, 4, 8), {}, True),
    ("stft_hamming", "stft", (SIGNAL, 6, 3, 8), {"window": "hamming", "center": False}, True),
    ("stft_array_window", "stft", (SIGNAL[0], 5, 2, 8), {"window": POS[0, :4].tolist() + [1.0]},
     True),
    ("stft_no_window", "stft", (SIGNAL, 8, 8, 16), {"window": None}, True),
    # einops
    ("rearrange", "rearrange", (SQUARE, "b h w -> w (b h)"), {}, True),
    ("rearrange_split", "rearrange", (SIGNAL, "b (t f) -> (b f) t"), {"f": 4}, True),
    ("rearrange_split_merge", "rearrange", (SIGNAL.reshape(2, 4, 8, 1),
                                            "b (h1 h) (w1 w) c -> (b h1 w1) h w c"),
     {"h1": 2, "w1": 4}, True),
]

ISTFT_CASES = [dict(sequence_length=8, sequence_stride=4, fft_length=8),
               dict(sequence_length=6, sequence_stride=3, fft_length=8, window="hamming",
                    center=False),
               dict(sequence_length=8, sequence_stride=4, fft_length=16, length=30)]


def call_under(fn, args, kwargs, jit):
    """`fn(*args, **kwargs)`, under jax.jit with the array arguments traced when `jit`."""
    if not jit:
        return fn(*args, **kwargs)
    traced = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]

    def with_traced(*arrays):
        full = list(args)
        for i, array in zip(traced, arrays):
            full[i] = array
        return fn(*full, **kwargs)
    return jax.jit(with_traced)(*[args[i] for i in traced])


def assert_same(ours, theirs, rtol=2e-5, atol=2e-5):
    """Same structure, and in each leaf the same shape, dtype and values (NaN where NaN)."""
    ours_leaves, ours_tree = jax.tree.flatten(ours)
    theirs_leaves, theirs_tree = jax.tree.flatten(theirs)
    assert len(ours_leaves) == len(theirs_leaves), (ours_tree, theirs_tree)
    for got, want in zip(ours_leaves, theirs_leaves):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape, (got.shape, want.shape)
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        if want.dtype.kind in "biu":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


# every case eagerly; under jax.jit those whose result's shape the values do not decide
RUNS = [(*case[1:4], False) for case in CASES] + [(*case[1:4], True) for case in CASES
                                                   if case[4]]
RUN_IDS = [f"{case[0]}-eager" for case in CASES] + [f"{case[0]}-jit" for case in CASES
                                                     if case[4]]


@pytest.mark.parametrize("name, args, kwargs, jit", RUNS, ids=RUN_IDS)
def test_the_same_as_keras(name, args, kwargs, jit):
    theirs = getattr(kops, name)(*args, **kwargs)
    ours = call_under(getattr(ops, name), args, kwargs, jit)
    assert_same(ours, theirs)


@pytest.mark.parametrize("settings", ISTFT_CASES, ids=lambda s: "-".join(map(str, s.values())))
def test_istft_is_keras_s_and_inverts_stft(settings):
    frames = {k: v for k, v in settings.items() if k != "length"}
    spectrum = kops.stft(SIGNAL, **frames)
    theirs = kops.istft(spectrum, **settings)
    ours = jax.jit(lambda s: ops.istft(s, **settings))(tuple(np.asarray(p) for p in spectrum))
    assert_same(ours, theirs, atol=1e-4)
    if settings.get("center", True) and "length" not in settings:
        np.testing.assert_allclose(ours, SIGNAL[:, :ours.shape[-1]], atol=1e-4)


@pytest.mark.parametrize("stride", [4, 8])
def test_istft_without_a_window_inverts_stft(stride):
    """Keras 3.15 divides by the stride there (not by the overlap of its rectangular window), so
    its result is off by fft_length / stride, and without overlap it drops frames: kilnet
    inverts."""
    settings = dict(sequence_length=6, sequence_stride=stride, fft_length=8, window=None)
    spectrum = ops.stft(SIGNAL, **settings)
    np.testing.assert_allclose(ops.istft(spectrum, **settings), SIGNAL, atol=1e-5)


def test_the_linalg_names_are_at_the_top_level_too():
    for name in ops.linalg.__all__:
        assert getattr(ops, name) is getattr(ops.linalg, name)
        assert getattr(kops, name) is getattr(kops.linalg, name)


def test_jvp_and_custom_gradient_as_keras():
    primals, tangents = (F, G), (np.ones_like(F), POS)
    function = lambda a, b: kops.sum(kops.sin(a) * b, axis=1)      # noqa: E731
    assert_same(ops.jvp(function, primals, tangents), kops.jvp(function, primals, tangents))
    aux = ops.jvp(lambda a: (a * 2.0, a), (F,), (G,), has_aux=True)
    assert_same(aux, kops.jvp(lambda a: (a * 2.0, a), (F,), (G,), has_aux=True))

    def log1pexp(make):
        @make
        def function(x):
            e = jnp.exp(x)
            return jnp.log1p(e), lambda upstream: upstream * (1.0 - 1.0 / (1.0 + e))
        return function
    ours, theirs = log1pexp(ops.custom_gradient), log1pexp(kops.custom_gradient)
    big = np.float32(100.0)        # exp overflows: only the defined gradient stays finite
    assert float(jax.grad(ours)(big)) == float(jax.grad(theirs)(big)) == 1.0
    assert float(jax.grad(ours)(np.float32(0.5))) == pytest.approx(1 / (1 + np.exp(-0.5)),
                                                                    rel=1e-6)
    assert float(ours(Variable(np.float32(0.5), name="v"))) == pytest.approx(
        np.log1p(np.exp(0.5)), rel=1e-6)


def test_control_flow_and_maps_as_keras():
    branches = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b]
    for index in (0, 2, 5):               # out of range: clamped, as jax.lax.switch
        assert_same(ops.switch(index, branches, F, G), kops.switch(index, branches, F, G))
    assert_same(jax.jit(lambda i: ops.switch(i, branches, F, G))(1), F * G)
    assert_same(ops.map(lambda row: row.sum(), F), kops.map(lambda row: row.sum(), F))
    outer_rows = lambda xy: jnp.outer(xy[0], xy[1])      # noqa: E731  (a structure mapped)
    assert_same(ops.vectorized_map(outer_rows, (F, G)), kops.vectorized_map(outer_rows, (F, G)))
    assert_same(ops.vectorized_map(lambda row: row * 2, F), kops.vectorized_map(
        lambda row: row * 2, F))
    for reverse, axis in ((False, 0), (True, 1)):
        assert_same(ops.associative_scan(jnp.maximum, F, reverse=reverse, axis=axis),
                    kops.associative_scan(jnp.maximum, F, reverse=reverse, axis=axis))
    assert_same(ops.associative_scan(lambda a, b: (a[0] + b[0], a[1] * b[1]), (F, POS)),
                kops.associative_scan(lambda a, b: (a[0] + b[0], a[1] * b[1]), (F, POS)))


def test_dtype_and_is_tensor_as_keras():
    for value in (F, I, B, jnp.asarray(F, "bfloat16"), 2.0, 3):
        assert ops.dtype(value) == kops.dtype(kops.convert_to_tensor(value))
    assert ops.dtype(Variable(I, name="v", dtype="int32")) == "int32"
    assert ops.is_tensor(jnp.asarray(F)) and kops.is_tensor(jnp.asarray(F))
    assert not ops.is_tensor(F) and not kops.is_tensor(F)
    x = kilnet.Input(shape=(3,), dtype="int32")
    assert (ops.dtype(x), ops.is_tensor(x)) == ("int32", False)   # answered, not recorded


def test_vectorize_as_keras():
    signature = "(n),(n)->()"
    ours = ops.vectorize(lambda a, b: jnp.sum(a * b), signature=signature)
    theirs = kops.vectorize(lambda a, b: jnp.sum(a * b), signature=signature)
    assert_same(ours(F, G), theirs(F, G))
    assert_same(ours(Variable(F, name="f"), G), theirs(F, G))
    with pytest.raises(ValueError, match="pyfunc.*Received"):
        ops.vectorize(3)


# -- Variables as arguments ---------------------------------------------------------------------
WITH_VARIABLES = ["divide_no_nan", "logaddexp", "bitwise_and", "average", "median", "quantile",
                  "nanmean", "roll", "diagonal", "select", "hstack", "array_split", "searchsorted",
                  "cholesky", "solve", "svd_values", "scatter_update", "saturate_cast",
                  "segment_min", "in_top_k", "cdist", "fft", "stft", "unique", "bincount"]


def _as_variables(value):
    if isinstance(value, np.ndarray) and value.ndim:
        return Variable(value, name="v", dtype=value.dtype)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
        return type(value)(_as_variables(v) for v in value)
    return value


@pytest.mark.parametrize("case", WITH_VARIABLES)
def test_variables_as_arguments(case):
    _, name, args, kwargs, _ = next(c for c in CASES if c[0] == case)
    expected = getattr(kops, name)(*args, **kwargs)
    assert_same(getattr(ops, name)(*_as_variables(args), **_as_variables(kwargs)), expected)


# -- errors -------------------------------------------------------------------------------------
def test_data_dependent_shapes_under_jit_say_what_to_do():
    for name, fix in (("nonzero", "mask"), ("unique", "size="), ("bincount", "one_hot")):
        with pytest.raises(ValueError, match=f"ops.{name}'s output shape.*{fix}.*Received"):
            jax.jit(getattr(ops, name))(I if name != "bincount" else J.ravel())


@pytest.mark.parametrize("call, error, match", [
    (lambda: ops.cholesky(F), ValueError, "square matrices.*Received: x.shape=\\(3, 4\\)"),
    (lambda: ops.cholesky(-SPD), ValueError, "positive definite.*Received"),
    (lambda: ops.det(F[0]), ValueError, "rank >= 2.*Received"),
    (lambda: ops.qr(F, mode="r"), ValueError, "'reduced' or 'complete'.*Received: mode='r'"),
    (lambda: ops.jvp(jnp.sin, F, G), TypeError, "tuples or lists.*Received"),
    (lambda: ops.ldexp(F, G), TypeError, "integers.*cast.*Received: x2.dtype=float32"),
    (lambda: ops.fabs(COMPLEX), TypeError, "real numbers.*Received"),
    (lambda: ops.array_split(F, [1, 2]), ValueError, "positive int.*Received"),
    (lambda: ops.histogram(F), ValueError, "1-D.*ravel.*Received"),
    (lambda: ops.histogram(F[0], range=[0, 1]), ValueError, "tuple.*Received"),
    (lambda: ops.searchsorted(F, G), ValueError, "1-D.*vectorized_map.*Received"),
    (lambda: ops.select(F > 0, [F]), ValueError, "lists of arrays.*Received"),
    (lambda: ops.vander(F), ValueError, "1-D.*Received"),
    (lambda: ops.rot90(F[0]), ValueError, "at least 2.*Received"),
    (lambda: ops.diagonal(F, axis1=1, axis2=-1), ValueError, "different.*Received"),
    (lambda: ops.meshgrid(F[0], indexing="yx"), ValueError, "'xy' or 'ij'.*Received"),
    (lambda: ops.scatter_update(F, [[0, 0]], [1.0], reduction="sum"), ValueError, "Received"),
    (lambda: ops.fft(F), ValueError, "tuple \\(real, imaginary\\).*Received"),
    (lambda: ops.fft((I, I)), ValueError, "floats.*cast.*Received"),
    (lambda: ops.stft(I, 8, 4, 8), TypeError, "float32 or float64.*Received"),
    (lambda: ops.stft(SIGNAL, 8, 4, 4), ValueError, "at least `sequence_length`.*Received"),
    (lambda: ops.stft(SIGNAL, 8, 4, 8, window="box"), ValueError, "'hann'.*Received"),
    (lambda: ops.view_as_complex(F), ValueError, "length 2.*Received"),
    (lambda: ops.cdist(F[0], G), ValueError, "rank >= 2.*Received"),
    (lambda: ops.rearrange(F, "a b"), ValueError, "'input axes -> output axes'.*Received"),
    (lambda: ops.rearrange(F, "a b c -> a b c"), ValueError, "names 3 axes.*Received"),
    (lambda: ops.rearrange(F, "a b -> a"), ValueError, "same axes.*Received"),
    (lambda: ops.rearrange(F, "(a x y) b -> a x y b"), ValueError, "all but one.*Received"),
    (lambda: ops.rearrange(F, "(a x) b -> a x b", x=2), ValueError, "divide.*Received"),
], ids=lambda v: "" if callable(v) or isinstance(v, type) else v.split(".")[0][:24])
def test_bad_arguments_are_refused_with_the_fix(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- functional models --------------------------------------------------------------------------
def _graph_of_new_ops():
    inputs = kilnet.Input(shape=(6, 4), name="x")
    h = kilnet.layers.Dense(4)(inputs)
    outputs = [ops.logaddexp(h, inputs), ops.nanmean(h, axis=1), ops.median(h, axis=-1),
               ops.nanmedian(h, axis=1), ops.cross(h[..., :3], inputs[..., 1:]),
               ops.roll(h, 2, axis=1), ops.diagonal(h, axis1=1, axis2=2),
               ops.trace(h, axis1=1, axis2=2),
               ops.divide_no_nan(h, inputs), ops.isclose(h, inputs, atol=0.5),
               ops.count_nonzero(ops.round(h), axis=-1), ops.cdist(h, inputs), ops.diff(h, axis=1),
               ops.erfc(h), ops.in_top_k(ops.argmax(inputs[:, 0], axis=-1), h[:, 0], 2),
               ops.rfft(h)[0], ops.hstack([h, inputs]),
               ops.select([h > 0.5, h < -0.5], [h, inputs])]
    return kilnet.Model(inputs, outputs)


def test_new_op_nodes_compute_save_and_load_in_kilnet_and_keras_files(tmp_path):
    model = _graph_of_new_ops()
    x = RNG.normal(size=(3, 6, 4)).astype(np.float32)
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "m.kilnet")
    for a, b in zip(before, kilnet.models.load_model(tmp_path / "m.kilnet").predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    for ours, keras_out in zip(before, theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(ours, np.asarray(keras_out), rtol=1e-5, atol=1e-5)


def test_keras_s_new_op_nodes_open_in_kilnet(tmp_path):
    inputs = keras.Input(shape=(6, 4))
    h = keras.layers.Dense(4)(inputs)
    outputs = [kops.nansum(h, axis=1), kops.fmod(h, 0.3), kops.diagonal(h, 0, 1, 2),
               kops.cdist(h, inputs), kops.ptp(h, axis=-1), kops.hypot(h, inputs),
               kops.rot90(h, axes=(1, 2)), kops.logaddexp2(h, inputs),
               kops.isin(kops.cast(h > 0, "int32"), kops.cast(inputs > 0, "int32"))]
    theirs = keras.Model(inputs, outputs)
    theirs.save(tmp_path / "k.keras")
    ours = kilnet.models.load_model(tmp_path / "k.keras")
    x = RNG.normal(size=(3, 6, 4)).astype(np.float32)
    for a, b in zip(ours.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-5)
