"""Operation: one of Keras's ops (a kilnet.ops function) recorded as a node of a functional
graph.

Why a layer of its own: in a functional model, Keras 3 records every op applied to symbolic
tensors (`x + y`, `x[:, 0]`, `ops.mean(x, axis=1)`, the masks its own layers compute) as a
graph node, and writes those nodes into `.keras` files under the op's class name. kilnet does
the same: a kilnet.ops function or an operator given a symbolic tensor calls `record_op`, which
makes an Operation node running that function. The node keeps what Keras keeps: the op's
settings (Keras's constructor arguments: `axis`, `keepdims`, `newshape`, ...) in its config,
the rest (tensors, numbers, an index) as the call's arguments. So a `.keras` file's op nodes
map onto this layer by class name, from the closed table OPS only (kilnet.keras_files), and the
model saves and loads as a kilnet file too. Its weights: none.
"""

from __future__ import annotations

import inspect

import jax
import numpy as np

from kilnet import _names, ops
from kilnet.layers._base import Layer, common_batch_size
from kilnet.layers._node import KerasTensor, substitute, tensors_in, trace_symbolic

# Keras 3's op classes kilnet records: class name -> (kilnet.ops function, the module Keras
# writes in its files, the function's arguments Keras keeps in the op's config). The other
# arguments are the call's, in the function's order. Read from Keras 3.15's op classes (their
# constructor and `call` signatures, which together are the function's).
_NUMPY_BINARY = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "FloorDivide", "Mod",
                 "Power", "Maximum", "Minimum", "Matmul", "Dot", "Equal", "NotEqual",
                 "Greater", "GreaterEqual", "Less", "LessEqual", "LogicalAnd", "LogicalOr",
                 "LogicalXor", "Where", "GetItem", "Arctan2", "Outer")
_NUMPY_UNARY = ("Negative", "Exp", "Log", "Log1p", "Sqrt", "Square", "Abs", "Absolute", "Sign",
                "Floor", "Ceil", "Cos", "Sin", "Tanh", "LogicalNot", "Isnan", "Isinf",
                "Isfinite", "Tan", "Arcsin", "Arccos", "Arctan", "Sinh", "Cosh", "Arcsinh",
                "Arccosh", "Arctanh", "Exp2", "Expm1", "Log2", "Log10", "Reciprocal", "Trunc")
_NUMPY_MORE_BINARY = ("DivideNoNan", "Fmod", "Fmax", "Fmin", "Hypot", "Heaviside", "Logaddexp",
                      "Logaddexp2", "Ldexp", "Nextafter", "Gcd", "Lcm", "BitwiseAnd",
                      "BitwiseOr", "BitwiseXor", "BitwiseLeftShift", "LeftShift",
                      "BitwiseRightShift", "RightShift", "Inner", "Vdot", "Kron", "Digitize",
                      "Hstack", "Vstack", "Dstack", "Select")
_NUMPY_MORE_UNARY = ("Fabs", "Cbrt", "Deg2rad", "Rad2deg", "Sinc", "I0", "Signbit",
                     "Isneginf", "Isposinf", "BitwiseInvert", "BitwiseNot", "Real", "Imag",
                     "Conjugate", "Conj", "Angle", "Isreal", "Ravel", "Fliplr", "Flipud",
                     "Copy", "Corrcoef", "Slogdet")
_NUMPY_MORE = {
    "Amax": ("axis", "keepdims"), "Amin": ("axis", "keepdims"), "Ptp": ("axis", "keepdims"),
    "Median": ("axis", "keepdims"), "CountNonzero": ("axis",), "Average": ("axis",),
    "Quantile": ("axis", "method", "keepdims"), "Percentile": ("axis", "method", "keepdims"),
    "Trapezoid": ("x", "dx", "axis"), "Isclose": ("equal_nan",),
    **{name: ("axis", "keepdims") for name in (
        "Nansum", "Nanprod", "Nanmean", "Nanstd", "Nanvar", "Nanmax", "Nanmin", "Nanargmax",
        "Nanargmin", "Nanmedian")},
    "Nancumsum": ("axis", "dtype"), "Nancumprod": ("axis", "dtype"),
    "Nanquantile": ("axis", "method", "keepdims"), "Nanpercentile": ("axis", "method", "keepdims"),
    "Append": ("axis",), "Roll": ("shift", "axis"), "Rot90": ("k", "axes"), "Diag": ("k",),
    "Diagflat": ("k",), "Diagonal": ("offset", "axis1", "axis2"), "Diff": ("n", "axis"),
    "Trace": ("offset", "axis1", "axis2"), "Cross": ("axisa", "axisb", "axisc", "axis"),
    "Correlate": ("mode",), "Vander": ("N", "increasing"), "Argpartition": ("kth", "axis"),
    "UnravelIndex": ("shape",), "ArraySplit": ("indices_or_sections", "axis"),
    "Hsplit": ("indices_or_sections",), "Vsplit": ("indices_or_sections",),
    "Dsplit": ("indices_or_sections",), "Array": ("dtype",), "View": ("dtype",),
    "EmptyLike": ("dtype",), "IsIn": ("assume_unique", "invert"), "SearchSorted": ("side",),
    **{name: () for name in _NUMPY_MORE_BINARY + _NUMPY_MORE_UNARY}}
_NN_UNARY = ("Relu", "Relu6", "Sigmoid", "LogSigmoid", "Softplus", "Silu", "Selu",
             "HardSigmoid", "HardSilu", "Softsign", "HardTanh", "SparsePlus", "SparseSigmoid",
             "TanhShrink")
_POOL = ("pool_size", "strides", "padding", "data_format")
_CONV = ("strides", "padding", "data_format", "dilation_rate")
_SETTINGS = {
    "numpy": {
        "Clip": ("x_min", "x_max"), "Einsum": ("subscripts",), "Tensordot": ("axes",),
        "Mean": ("axis", "keepdims"), "Sum": ("axis", "keepdims"),
        "Max": ("axis", "keepdims", "initial"), "Min": ("axis", "keepdims", "initial"),
        "Prod": ("axis", "keepdims", "dtype"), "Std": ("axis", "keepdims"),
        "Var": ("axis", "keepdims"), "Argmax": ("axis", "keepdims"),
        "Argmin": ("axis", "keepdims"), "All": ("axis", "keepdims"),
        "Any": ("axis", "keepdims"), "Cumsum": ("axis", "dtype"), "Concatenate": ("axis",),
        "Stack": ("axis",), "Split": ("indices_or_sections", "axis"), "Reshape": ("newshape",),
        "Transpose": ("axes",), "Swapaxes": ("axis1", "axis2"),
        "Moveaxis": ("source", "destination"), "ExpandDims": ("axis",), "Squeeze": ("axis",),
        "Flip": ("axis",), "Tile": ("repeats",), "Repeat": ("repeats", "axis"),
        "BroadcastTo": ("shape",), "Take": ("axis",), "TakeAlongAxis": ("axis",),
        "Pad": ("pad_width", "mode"), "Sort": ("axis",), "Argsort": ("axis",),
        "Round": ("decimals",), "NanToNum": ("nan", "posinf", "neginf"),
        "ZerosLike": ("dtype",), "OnesLike": ("dtype",), "FullLike": ("dtype",),
        "Tril": ("k",), "Triu": ("k",), "Cumprod": ("axis", "dtype"),
        **{name: () for name in _NUMPY_BINARY + _NUMPY_UNARY}, **_NUMPY_MORE},
    "nn": {
        "Softmax": ("axis",), "LogSoftmax": ("axis",), "Gelu": ("approximate",),
        "LeakyRelu": ("negative_slope",), "Elu": ("alpha",),
        "OneHot": ("num_classes", "axis", "dtype", "sparse"),
        "Moments": ("axes", "keepdims", "synchronized"),
        "Normalize": ("axis", "order", "epsilon"), "BinaryCrossentropy": ("from_logits",),
        "CategoricalCrossentropy": ("from_logits", "axis"),
        "SparseCategoricalCrossentropy": ("from_logits", "axis"),
        "Celu": ("alpha",), "Glu": ("axis",), "HardShrink": ("threshold",),
        "SoftShrink": ("threshold",), "Squareplus": ("b",), "Sparsemax": ("axis",),
        "Threshold": ("threshold", "default_value"), "MaxPool": _POOL, "AveragePool": _POOL,
        "AdaptiveMaxPool": ("output_size", "data_format"),
        "AdaptiveAveragePool": ("output_size", "data_format"), "Conv": _CONV,
        "DepthwiseConv": _CONV, "SeparableConv": _CONV,
        "ConvTranspose": ("strides", "padding", "output_padding", "data_format",
                          "dilation_rate"),
        "MultiHot": ("num_classes", "axis", "dtype", "sparse"), "BatchNorm": ("axis", "epsilon"),
        "LayerNorm": ("axis", "epsilon", "rms_scaling"), "RMSNorm": ("axis", "epsilon"),
        "CTCLoss": ("mask_index",),
        "DotProductAttention": ("is_causal", "flash_attention", "attn_logits_soft_cap"),
        "DepthToSpace": ("block_size", "data_format"),
        "SpaceToDepth": ("block_size", "data_format"),
        "Unfold": ("kernel_size", "dilation", "padding", "stride"),
        "Fold": ("output_size", "kernel_size", "dilation", "padding", "stride"),
        "Polar": (), **{name: () for name in _NN_UNARY}},
    "core": {"Cast": ("dtype",), "ConvertToTensor": ("dtype", "sparse", "ragged"),
             "StopGradient": (), "Unstack": ("num", "axis"), "Slice": ("shape",),
             "SliceUpdate": (), "SaturateCast": ("dtype",), "ScatterUpdate": ("reduction",)},
    "math": {"Logsumexp": ("axis", "keepdims"), "TopK": ("k", "sorted"), "Rsqrt": (),
             "Erf": (), "SegmentMin": ("num_segments", "sorted"),
             "SegmentProd": ("num_segments", "sorted"), "InTopK": ("k",), "CDist": (),
             "Erfc": (), "Erfinv": (), "Logdet": (), "ViewAsComplex": (), "ViewAsReal": (),
             "FFT": (), "FFT2": (), "IFFT2": (), "RFFT": ("fft_length",),
             "IRFFT": ("fft_length",), "ExtractSequences": ("sequence_length", "sequence_stride"),
             "STFT": ("sequence_length", "sequence_stride", "fft_length", "window", "center"),
             "ISTFT": ("sequence_length", "sequence_stride", "fft_length", "length", "window",
                       "center")},
    "linalg": {"Norm": ("ord", "axis", "keepdims"), "Cholesky": ("upper",),
               "CholeskyInverse": ("upper",), "Det": (), "Eig": (), "Eigh": (), "Inv": (),
               "LuFactor": (), "Qr": ("mode",), "Solve": (), "SolveTriangular": ("lower",),
               "SVD": ("full_matrices", "compute_uv"), "Lstsq": ("rcond",),
               "MatrixRank": ("tol",), "Pinv": ("rcond",)},
    "image": {
        "RGBToGrayscale": ("data_format",), "RGBToHSV": ("data_format",),
        "HSVToRGB": ("data_format",),
        "Resize": ("size", "interpolation", "antialias", "crop_to_aspect_ratio",
                   "pad_to_aspect_ratio", "fill_mode", "fill_value", "data_format"),
        "AffineTransform": ("interpolation", "fill_mode", "fill_value", "data_format"),
        "ExtractPatches": ("size", "strides", "dilation_rate", "padding", "data_format"),
        "PadImages": ("top_padding", "left_padding", "bottom_padding", "right_padding",
                      "target_height", "target_width", "data_format"),
        "CropImages": ("top_cropping", "left_cropping", "bottom_cropping", "right_cropping",
                       "target_height", "target_width", "data_format"),
        "PerspectiveTransform": ("interpolation", "fill_value", "data_format"),
        "GaussianBlur": ("kernel_size", "sigma", "data_format"),
        "ElasticTransform": ("alpha", "sigma", "interpolation", "fill_mode", "fill_value",
                             "seed", "data_format"),
        "SobelEdges": ("data_format",),
        "SSIM": ("max_val", "filter_size", "filter_sigma", "k1", "k2", "data_format")},
}
# the op classes whose function is not named as the class in snake case
_FUNCTION_NAMES = {"BatchNorm": "batch_normalization", "LayerNorm": "layer_normalization",
                   "RMSNorm": "rms_normalization", "IsIn": "isin", "SearchSorted": "searchsorted",
                   "CDist": "cdist"}
OPS = {name: (_FUNCTION_NAMES.get(name) or _names.snake_case(name), f"keras.src.ops.{module}",
              settings)
       for module, table in _SETTINGS.items() for name, settings in table.items()}
OPERATIONS = frozenset(OPS)
_BY_FUNCTION = {function: name for name, (function, _, _) in OPS.items()}


def _axes(axis):
    return tuple(axis) if isinstance(axis, list) else axis


# The ops that only move values (shape, order, selection), as NumPy runs them on arrays of
# strings (dtype object): on a string Input they run on the host with the string layers, as
# keras.io's wide & deep `lookup(ops.expand_dims(text, -1))`. Each takes kilnet.ops's
# parameter names.
STRING_OPS = {
    "ExpandDims": lambda x, axis: np.expand_dims(x, _axes(axis)),
    "Squeeze": lambda x, axis=None: np.squeeze(x, _axes(axis)),
    "Reshape": lambda x, newshape: np.reshape(x, newshape),
    "Transpose": lambda x, axes=None: np.transpose(x, axes),
    "Concatenate": lambda xs, axis=0: np.concatenate(xs, axis),
    "Stack": lambda x, axis=0: np.stack(x, axis),
    "GetItem": lambda x, key: x[key],
    "Flip": lambda x, axis=None: np.flip(x, _axes(axis)),
    "Tile": lambda x, repeats: np.tile(x, repeats),
    "Repeat": lambda x, repeats, axis=None: np.repeat(x, repeats, axis),
}


class Operation(Layer):
    """One of Keras's ops as a node of a functional model, by Keras's class name (`Add`,
    `GetItem`, `Mean`, `Reshape`, `Softmax`, ...: `kilnet.layers.Operation.OPS`), with the op's
    settings as `arguments`. You do not make these yourself: an operator or a kilnet.ops
    function applied to the symbolic tensors of `kilnet.Input` makes one, as in Keras; so does
    opening a `.keras` file whose graph has op nodes.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet import ops
        >>> x = kilnet.Input(shape=(3,))
        >>> y = ops.mean(x * 2.0 + 1.0, axis=-1, keepdims=True)
        >>> y.node.layer, y.node.layer.keras_class_name
        (<Operation name=mean>, 'Mean')
        >>> model = kilnet.Model(x, y)
        >>> model.predict(np.array([[1.0, 2.0, 3.0]]), verbose=0).tolist()
        [[5.0]]
    """

    OPS = OPS
    config_keys = ("operation", "arguments")
    numbered_in_process = False   # named by the graph it is a node of, from its operation
    positional_values_allowed = True   # ops.not_equal(x, 0): Keras's Operation takes them

    def __init__(self, operation, arguments=None, *, axis=None, keepdims=False, dtype_to=None,
                 **kwargs):
        # axis / keepdims / dtype_to: the form of kilnet 0.1 files (Any, All, Cast only)
        super().__init__(**kwargs)
        if operation not in OPS:
            raise ValueError(f"operation must be one of Keras's ops that kilnet records "
                             f"({len(OPS)}: {', '.join(sorted(OPS))}). Received: "
                             f"operation={operation!r}")
        self.operation = operation
        legacy = {"axis": axis, "keepdims": keepdims} if operation in ("Any", "All") else (
            {"dtype": dtype_to} if operation == "Cast" else {})
        self.arguments = _check_settings(operation, {**legacy, **(arguments or {})})

    @property
    def keras_class_name(self) -> str:
        """Keras's class of the op ("Mean", "TrueDivide"), as its summary names the node."""
        return self.operation

    def __repr__(self):
        return f"<Operation name={self.name}>"   # Keras's Operation repr

    @property
    def default_name(self) -> str:
        return OPS[self.operation][0]

    @property
    def function(self):
        return op_function(self.operation)

    def call_input_shape(self, args, kwargs):
        """The per-sample shape of each argument; None for a number, an index or a list."""
        return [tuple(a.shape[1:]) if _is_tensor(a) else None for a in args]

    def sample_output_shape(self, input_shape):
        """The output's per-sample shape for arguments that are all float32 tensors of these
        per-sample shapes (other calls: their symbolic tensors say it)."""
        if any(s is None for s in input_shape):
            raise ValueError(f"the output shape of {self.operation} depends on its non-tensor "
                             f"arguments. Received: input_shape={input_shape}")
        outputs = self.symbolic_outputs([KerasTensor((None,) + tuple(s)) for s in input_shape],
                                        {})
        return jax.tree.map(lambda t: t.sample_shape, outputs,
                            is_leaf=lambda t: isinstance(t, KerasTensor))

    def init(self, rng, input_shape):
        """No weights to make. The output shape where the arguments are all tensors; else
        None: the non-tensor arguments decide it, and symbolic_outputs sees them."""
        known = isinstance(input_shape, list) and all(s is not None for s in input_shape)
        return {}, {}, self.sample_output_shape(input_shape) if known else None

    def symbolic_outputs(self, args, kwargs):
        """The op's symbolic outputs, their shapes and dtypes found by tracing the op
        abstractly, as Keras computes an op's output spec."""
        try:
            outputs = trace_symbolic(self.run, args, kwargs)
        except ValueError as error:
            raise ValueError(
                f"kilnet.ops.{OPS[self.operation][0]} ({self.operation}) with "
                f"{self.arguments}: {error}. Reduce or index the other axes (axis=1, x[:, 0]), "
                "or compute it inside a layer's call().") from None
        batch = common_batch_size(args)   # the trace checked the batch axis stays first
        if batch is None:
            return outputs
        return jax.tree.map(lambda t: KerasTensor((batch,) + t.shape[1:], t.dtype), outputs,
                            is_leaf=lambda t: isinstance(t, KerasTensor))

    def call_on_strings(self, args, kwargs):
        """A shape op (STRING_OPS) on string tensors only: a string tensor recorded as a node
        that the model runs on the host (run_on_host), its shape traced as on numbers.

        Example:
            >>> import kilnet
            >>> soil = kilnet.Input((), dtype="string")
            >>> column = kilnet.ops.expand_dims(soil, -1)
            >>> column.shape, column.dtype, column.node.layer.keras_class_name
            ((None, 1), 'string', 'ExpandDims')
        """
        tensors = tensors_in((args, kwargs))
        if self.operation not in STRING_OPS or any(t.dtype != "string" for t in tensors):
            raise TypeError(
                f"kilnet.ops.{OPS[self.operation][0]} ({self.operation}) was called on a "
                "string tensor. Strings run on the host before the compiled model, where "
                "kilnet takes the ops that only move them, on strings only: "
                f"{', '.join(sorted(STRING_OPS))}. Turn the strings into numbers first with a "
                "string layer (StringLookup, TextVectorization, Hashing, HashedCrossing).")
        stand_ins = {t.uid: KerasTensor(t.shape, "float32") for t in tensors}
        outputs = jax.tree.map(lambda t: KerasTensor(t.shape, "string"),
                               self.symbolic_outputs(substitute(args, stand_ins),
                                                     substitute(kwargs, stand_ins)),
                               is_leaf=lambda t: isinstance(t, KerasTensor))
        self.built = True   # no weights, and it runs on the host: nothing to build
        self.record_node(args, kwargs, outputs)
        return outputs

    def run_on_host(self, *args, **kwargs):
        """The op with NumPy on arrays of strings (a node call_on_strings recorded).

        Example:
            >>> import numpy as np
            >>> Operation("ExpandDims", {"axis": -1}).run_on_host(
            ...     np.array(["a", "b"], dtype=object)).tolist()
            [['a'], ['b']]
        """
        function = STRING_OPS[self.operation]
        names = [name for name in inspect.signature(function).parameters
                 if name not in self.arguments]
        return function(**dict(zip(names, args)), **kwargs, **self.arguments)

    def autocast_apply(self, params, state, *args, **kwargs):
        """Runs the op as it is: an op has no dtype policy in Keras (its inputs' dtypes
        decide), so nothing is cast."""
        return self.apply(params, state, *args, **kwargs)

    def apply(self, params, state, *args, training=False, rng=None, sample_mask=None,
              **kwargs):
        return self.run(*args, **kwargs), state

    def run(self, *args, **kwargs):
        """The op on the call's arguments (Keras's `call`): they fill the function's
        parameters that are not settings, in order."""
        parameters = inspect.signature(self.function).parameters.values()
        if any(p.kind is p.VAR_POSITIONAL for p in parameters):   # einsum(subscripts, *xs)
            leading = [self.arguments[p.name] for p in parameters
                       if p.kind is p.POSITIONAL_OR_KEYWORD]
            return self.function(*leading, *args, **kwargs)
        names = [p.name for p in parameters if p.name not in self.arguments]
        return self.function(**dict(zip(names, args)), **kwargs, **self.arguments)


def op_function(operation):
    """The kilnet.ops function of one of Keras's op classes; the image ops are in
    kilnet.ops.image only, as Keras's are in keras.ops.image.

    Example:
        >>> op_function("Resize").__module__, op_function("Mean").__name__
        ('kilnet.ops.image', 'mean')
    """
    function, module, _ = OPS[operation]
    return getattr(ops.image if module.endswith(".image") else ops, function)


def record_op(function, args, kwargs):
    """The symbolic output(s) of `function` (a kilnet.ops function) called on symbolic
    tensors: an Operation node of the graph, with Keras's split of its arguments (the op's
    settings in its config, the rest as the call's)."""
    name = function.__name__
    if name not in _BY_FUNCTION:
        raise TypeError(
            f"kilnet.ops.{name} cannot be a node of a functional model (it has no Keras op "
            "that a model file could hold, or its result has no batch axis). Received: "
            f"symbolic tensors among its arguments. Compute it inside a layer's call(), where "
            "it receives arrays.")
    operation = _BY_FUNCTION[name]
    signature = inspect.signature(function)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"kilnet.ops.{name}: {error}") from None
    bound.apply_defaults()
    settings, call_args = {}, []
    for parameter in signature.parameters.values():
        value = bound.arguments.get(parameter.name)
        if parameter.name in OPS[operation][2]:
            settings[parameter.name] = value
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            call_args.extend(value)
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            if value:
                raise TypeError(f"kilnet.ops.{name} on symbolic tensors takes no extra "
                                f"keyword arguments. Received: {sorted(value)}")
        else:
            call_args.append(value)
    if "data_format" in settings and settings["data_format"] is None:
        settings["data_format"] = "channels_last"   # Keras's configs hold the resolved layout
    return Operation(operation, settings)(*call_args)


def _is_tensor(value) -> bool:
    return isinstance(value, KerasTensor) or hasattr(value, "shape") and np.ndim(value) > 0


def _check_settings(operation, settings: dict) -> dict:
    """An op's settings as JSON values (what its config holds); no symbolic tensor or array
    among them, since Keras keeps them in the op's config, not in the graph."""
    allowed = OPS[operation][2]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"The op {operation} takes the settings {list(allowed)}. Received: "
                         f"{unknown}")
    return {key: _json_value(operation, key, value) for key, value in settings.items()}


def _json_value(operation, key, value):
    if isinstance(value, KerasTensor):
        raise TypeError(f"The argument {key!r} of kilnet.ops.{OPS[operation][0]} is part of "
                        f"the op's settings in a model, so it must be a number, string or "
                        f"list of them. Received: a symbolic tensor {value!r}. Compute with it "
                        "inside a layer's call() instead.")
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_value(operation, key, v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return str(np.dtype(value))      # a dtype given as an object (np.int32, jnp.bfloat16)
    except TypeError:
        pass
    raise TypeError(f"The argument {key!r} of kilnet.ops.{OPS[operation][0]} must be a "
                    f"number, string or list of them in a model's op node. Received: "
                    f"{value!r:.100}")
