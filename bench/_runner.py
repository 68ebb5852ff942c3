"""One benchmark measurement, in a fresh process: one framework, one workload.

Started by bench/bench.py with the interpreter that has the framework
(kilnet: the repo's .venv; peers: bench/.venv-peers). Prints exactly one line
starting with RESULT_PREFIX followed by a JSON object; everything else it
prints (framework logs) is ignored by the parent.

    python bench/_runner.py --framework keras-jax --workload mlp
    python bench/_runner.py --framework kilnet --workload mlp --train-samples 300000 --epochs 3

What is timed (time.perf_counter, wall clock):
  build_s         building the model (Keras initialises a model whose input shape
                  is known right here, compiling the initialisers on JAX)
  compile_call_s  the model.compile(...) call (Keras only records settings;
                  torch builds the optimizer)
  epoch_times     each epoch, from on_epoch_begin to on_epoch_end of a callback
                  (torch: around the epoch's loop)
  first_epoch_s   from the start of building the model to the end of the first
                  epoch, so that it includes initialisation and compilation
                  wherever a framework does them
  fit_wall_s      building the model, compile() and the whole fit(...) call
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

RESULT_PREFIX = "BENCH_RESULT "
FRAMEWORKS = ("kilnet", "keras-jax", "keras-tensorflow", "torch")
WORKLOADS = {
    # name: (batch_size, epochs)
    "mlp": (32, 5),
    "cnn": (128, 2),
    "lstm": (64, 3),
    "transformer": (64, 3),
    "resnet": (128, 2),
}
TEXT_WORKLOADS = ("lstm", "transformer")  # token sequences and binary labels (bench/_data.py)
EMBED = 64  # the text models' embedding width


def rss_now_mb() -> float:
    """Resident set size right now (Linux /proc), in MiB."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def cpu_s() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class CompileCounter:
    """Counts XLA compilations through jax.monitoring, per phase of the run.

    JAX records "/jax/core/compile/backend_compile_duration" once per XLA
    compilation (a persistent-cache hit also passes through it). The phase is
    moved forward by the runner: compile -> first_epoch -> later_epochs -> eval.
    """

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        import jax.monitoring

        self.phase = "setup"
        self.events: list[dict] = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if event == self.EVENT:
            self.events.append({"phase": self.phase, "fun": str(kwargs.get("fun_name", "?")),
                                "s": round(float(duration), 4)})

    def summary(self) -> dict:
        by_phase: dict[str, int] = {}
        secs: dict[str, float] = {}
        for e in self.events:
            by_phase[e["phase"]] = by_phase.get(e["phase"], 0) + 1
            secs[e["phase"]] = round(secs.get(e["phase"], 0.0) + e["s"], 4)
        return {"total": len(self.events), "by_phase": by_phase, "seconds_by_phase": secs,
                "after_first_epoch": by_phase.get("later_epochs", 0),
                "events": self.events[:200]}


class _Clock:
    """Shared timestamps of one run; the epoch callback writes into it."""

    def __init__(self, counter: CompileCounter | None):
        self.counter = counter
        self.begins: list[float] = []
        self.ends: list[float] = []
        self.logs: list[dict] = []

    def epoch_begin(self):
        self.begins.append(time.perf_counter())

    def epoch_end(self, logs):
        self.ends.append(time.perf_counter())
        self.logs.append({k: _to_float(v) for k, v in (logs or {}).items()})
        if self.counter is not None and len(self.ends) == 1:
            self.counter.phase = "later_epochs"

    def epoch_times(self, fit_start: float) -> list[float]:
        if len(self.begins) == len(self.ends):
            return [e - b for b, e in zip(self.begins, self.ends)]
        # A callback API without on_epoch_begin: time between epoch ends.
        starts = [fit_start] + self.ends[:-1]
        return [e - s for s, e in zip(starts, self.ends)]


def _to_float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


# --------------------------------------------------------------------------
# Keras and kilnet: one code path, `keras` is either module.
# --------------------------------------------------------------------------

def build_keras_model(keras, layers, workload: str):
    """The seed MLP, Keras's simple MNIST convnet or a text classifier, in the Keras API."""
    if workload in TEXT_WORKLOADS:
        return build_text_model(keras, layers, workload)
    if workload == "resnet":
        return build_resnet(keras, layers)
    if workload == "mlp":
        return keras.Sequential([
            layers.Flatten(input_shape=(28, 28)),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ])
    return keras.Sequential([
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])


def build_text_model(keras, layers, workload: str):
    """Embedding + LSTM(64), or one Transformer block (as keras.io's text classification
    with a Transformer, without its dropout), each ending in Dense(1, sigmoid)."""
    import _data

    inputs = keras.Input(shape=(_data.TEXT_LENGTH,), dtype="int32")
    x = layers.Embedding(_data.TEXT_VOCAB, EMBED)(inputs)
    if workload == "lstm":
        x = layers.LSTM(EMBED)(x)
    else:
        x = position_embedding_class(keras)(name="position")(x)
        # key_dim 32 = 64 / 2 heads: the per-head width torch's nn.MultiheadAttention uses.
        attention = layers.MultiHeadAttention(num_heads=2, key_dim=EMBED // 2)(x, x)
        x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, attention]))
        ff = layers.Dense(EMBED)(layers.Dense(EMBED, activation="relu")(x))
        x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, ff]))
        x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


# The small CIFAR-style ResNet: stem, three stages of one residual block each, 16/32/64
# filters, the second and third halving the resolution (a 1x1 projection on the shortcut).
RESNET_STAGES = ((16, 1), (32, 2), (64, 2))


def build_resnet(keras, layers):
    """A ResNet-8 for 32x32x3 images in Keras's functional API (the same code runs on kilnet
    and Keras): Conv-BN-ReLU blocks with identity or projection shortcuts, global average
    pooling, Dense(10, softmax)."""
    def conv_bn(x, filters, kernel, strides=1):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        # momentum 0.9 (torch's default 0.1): with Keras's 0.99 the moving statistics are still
        # far from the data after the bench's 158 steps, and every framework's test accuracy
        # stays near chance while its training accuracy reaches 100%.
        return layers.BatchNormalization(momentum=0.9)(x)

    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Activation("relu")(conv_bn(inputs, 16, 3))
    for filters, strides in RESNET_STAGES:
        shortcut = x if strides == 1 else conv_bn(x, filters, 1, strides)
        y = layers.Activation("relu")(conv_bn(x, filters, 3, strides))
        y = conv_bn(y, filters, 3)
        x = layers.Activation("relu")(layers.Add()([shortcut, y]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def position_embedding_class(keras):
    """A learned position table added to the token embeddings, in Keras's subclassing form
    (the same code runs on kilnet and Keras): the table is what keras.io's
    TokenAndPositionEmbedding looks up with positions 0..length-1."""

    class PositionEmbedding(keras.layers.Layer):
        def build(self, input_shape):
            # "uniform" is U(-0.05, 0.05) in both (Keras's RandomUniform defaults)
            self.table = self.add_weight(shape=tuple(input_shape[1:]), name="table",
                                         initializer="uniform")

        def call(self, x):
            return keras.ops.add(x, self.table)

    return PositionEmbedding


def seed_everything(keras, args):
    """Seed Python, NumPy and the framework without importing TensorFlow needlessly.

    keras.utils.set_random_seed also seeds TensorFlow whenever it is installed,
    which would load TensorFlow (hundreds of MB) into the Keras-on-JAX process.
    Keras's default SeedGenerator draws its seed from Python's `random`, so
    seeding `random` and NumPy seeds Keras on JAX too.
    """
    import random

    import numpy as np

    random.seed(args.seed)
    np.random.seed(args.seed)
    if args.framework == "keras-jax":
        return
    utils = getattr(keras, "utils", None)
    if utils is not None and hasattr(utils, "set_random_seed"):
        utils.set_random_seed(args.seed)


def run_keras_like(keras, layers, args, data, counter):
    (x_train, y_train), (x_test, y_test) = data
    if args.workload == "cnn":
        x_train, x_test = x_train[..., None], x_test[..., None]
    text = args.workload in TEXT_WORKLOADS
    loss = "binary_crossentropy" if text else "sparse_categorical_crossentropy"
    batch_size, epochs = args.batch_size, args.epochs

    seed_everything(keras, args)
    if args.dtype_policy != "float32":  # Keras's mixed precision API, the same in kilnet
        keras.mixed_precision.set_global_policy(args.dtype_policy)

    clock = _Clock(counter)

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            clock.epoch_begin()

        def on_epoch_end(self, epoch, logs=None):
            clock.epoch_end(logs)

    rss_before = rss_now_mb()
    # Timing starts before the model is built: Keras initialises (and on JAX compiles
    # the initialisers of) a model with a known input shape when it is constructed,
    # kilnet in compile() or fit. Counting from here is fair to both.
    if counter is not None:
        counter.phase = "build"
    c0, t0 = cpu_s(), time.perf_counter()
    model = build_keras_model(keras, layers, args.workload)
    t_built = time.perf_counter()
    if counter is not None:
        counter.phase = "compile"
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    t_compiled = time.perf_counter()
    if counter is not None:
        counter.phase = "first_epoch"
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0,
              callbacks=[EpochTimer()])
    t_fit, c_fit = time.perf_counter(), cpu_s()

    if counter is not None:
        counter.phase = "eval"
    result = model.evaluate(x_test, y_test, verbose=0)
    t_eval = time.perf_counter()
    test_loss, test_acc = (float(result[0]), float(result[1]))
    return _timings(clock, t0, t_built, t_compiled, t_fit, t_eval, test_loss, test_acc,
                    rss_before, c_fit - c0)


def _timings(clock, t0, t_built, t_compiled, t_fit, t_eval, test_loss, test_acc, rss_before,
             fit_cpu):
    epoch_times = clock.epoch_times(t_compiled)
    later = epoch_times[1:]
    return {
        "build_s": t_built - t0,
        "compile_call_s": t_compiled - t_built,
        "epoch_times": epoch_times,
        "first_epoch_s": (clock.ends[0] - t0) if clock.ends else None,
        "median_epoch_after_first_s": statistics.median(later) if later else None,
        "fit_wall_s": t_fit - t0,
        "fit_cpu_s": fit_cpu,  # CPU seconds of all threads during build + compile + fit
        "eval_s": t_eval - t_fit,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "history": clock.logs,
        "rss_before_fit_mb": rss_before,
    }


# --------------------------------------------------------------------------
# PyTorch: a plain eager loop over in-memory tensors, no DataLoader.
# --------------------------------------------------------------------------

def run_torch(args, data):
    import torch
    from torch import nn

    (x_train, y_train), (x_test, y_test) = data
    torch.manual_seed(args.seed)
    rss_before = rss_now_mb()
    c0, t0 = cpu_s(), time.perf_counter()  # from building the model, as for Keras
    text = args.workload in TEXT_WORKLOADS
    if text:
        model = torch_text_model(args.workload)
        x, xt = torch.from_numpy(x_train.astype("int64")), torch.from_numpy(x_test.astype("int64"))
    elif args.workload == "resnet":
        model = torch_resnet()
        # channels-first, as torch's convolutions take them
        x = torch.from_numpy(x_train.transpose(0, 3, 1, 2).copy())
        xt = torch.from_numpy(x_test.transpose(0, 3, 1, 2).copy())
    elif args.workload == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        x, xt = torch.from_numpy(x_train), torch.from_numpy(x_test)
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 5 * 5, 10),
        )
        x, xt = torch.from_numpy(x_train[:, None]), torch.from_numpy(x_test[:, None])
    # Keras's initialisation (Glorot uniform, zero bias), so accuracies compare.
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if text:  # float (n, 1) labels, a sigmoid output: the loss takes its logit
        y, yt = torch.from_numpy(y_train), torch.from_numpy(y_test)
        loss_fn = nn.BCEWithLogitsLoss()
        hits = lambda logits, yb: ((logits > 0) == (yb > 0.5)).sum()  # noqa: E731
    else:
        y, yt = torch.from_numpy(y_train.astype("int64")), torch.from_numpy(y_test.astype("int64"))
        loss_fn = nn.CrossEntropyLoss()
        hits = lambda logits, yb: (logits.argmax(1) == yb).sum()  # noqa: E731
    # The GPU when there is one (bench/gpu.sh), as Keras and kilnet use theirs: the data
    # moves there once, before timing, as kilnet's and Keras-JAX's arrays do.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    x, xt, y, yt = x.to(device), xt.to(device), y.to(device), yt.to(device)
    n, batch_size = len(x), args.batch_size
    gen = torch.Generator().manual_seed(args.seed)
    clock = _Clock(None)

    autocast = _torch_autocast(torch, device, args.dtype_policy)
    t_built = time.perf_counter()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    t_compiled = time.perf_counter()
    for _ in range(args.epochs):
        clock.epoch_begin()
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            with autocast():
                logits = model(xb)
                loss = loss_fn(logits.float(), yb)
            loss.backward()
            opt.step()
            with torch.no_grad():  # running metrics, like Keras's "accuracy"
                loss_sum += loss.detach() * len(idx)
                correct += hits(logits, yb)
        clock.epoch_end({"loss": float(loss_sum) / n, "accuracy": int(correct) / n})
    t_fit, c_fit = time.perf_counter(), cpu_s()

    model.eval()
    with torch.no_grad():
        total_loss, total_correct = 0.0, 0
        for start in range(0, len(xt), 1000):
            logits = model(xt[start:start + 1000])
            yb = yt[start:start + 1000]
            total_loss += float(loss_fn(logits, yb)) * len(yb)
            total_correct += int(hits(logits, yb))
    t_eval = time.perf_counter()
    return _timings(clock, t0, t_built, t_compiled, t_fit, t_eval, total_loss / len(xt),
                    total_correct / len(xt), rss_before, c_fit - c0)


def _torch_autocast(torch, device, policy):
    """A context for the forward pass: torch.autocast with the policy's 16-bit type (float16
    takes a GradScaler in torch, which this loop does not have: refused), or nothing."""
    import contextlib

    if policy == "float32":
        return contextlib.nullcontext
    if policy == "mixed_float16":
        raise SystemExit("the torch loop runs mixed_bfloat16 only (float16 needs a GradScaler)")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def torch_resnet():
    """build_resnet's ResNet-8 in torch (BatchNorm with its momentum 0.9 and Keras's epsilon
    1e-3, so both train the same model)."""
    from torch import nn

    def conv_bn(cin, cout, kernel, stride=1):
        return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
                             nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.shortcut = nn.Identity() if stride == 1 else conv_bn(cin, cout, 1, stride)
            self.first, self.second = conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3)

        def forward(self, x):
            return (self.shortcut(x) + self.second(self.first(x).relu())).relu()

    blocks, cin = [], 16
    for filters, stride in RESNET_STAGES:
        blocks.append(Block(cin, filters, stride))
        cin = filters
    return nn.Sequential(conv_bn(3, 16, 3), nn.ReLU(), *blocks, nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(cin, 10))


def torch_text_model(workload: str):
    """The Keras text models in torch, initialised as Keras initialises them: Embedding
    uniform(-0.05, 0.05), Glorot-uniform kernels, orthogonal recurrent kernels, zero biases
    but the LSTM's forget gate (1, Keras's unit_forget_bias). Returns logits (n, 1)."""
    import torch
    from torch import nn

    import _data

    class TextModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(_data.TEXT_VOCAB, EMBED)
            nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
            if workload == "lstm":
                self.lstm = nn.LSTM(EMBED, EMBED, batch_first=True)
                nn.init.xavier_uniform_(self.lstm.weight_ih_l0)
                nn.init.orthogonal_(self.lstm.weight_hh_l0)
                nn.init.zeros_(self.lstm.bias_hh_l0)
                with torch.no_grad():  # gate order i, f, g, o as in Keras
                    self.lstm.bias_ih_l0.zero_()
                    self.lstm.bias_ih_l0[EMBED:2 * EMBED] = 1.0
            else:
                self.position = nn.Parameter(torch.empty(_data.TEXT_LENGTH, EMBED))
                nn.init.uniform_(self.position, -0.05, 0.05)
                self.attention = nn.MultiheadAttention(EMBED, 2, batch_first=True)
                self.norm1 = nn.LayerNorm(EMBED, eps=1e-6)
                self.ff = nn.Sequential(nn.Linear(EMBED, EMBED), nn.ReLU(), nn.Linear(EMBED, EMBED))
                self.norm2 = nn.LayerNorm(EMBED, eps=1e-6)
            self.out = nn.Linear(EMBED, 1)

        def forward(self, tokens):
            x = self.embedding(tokens)
            if workload == "lstm":
                _, (h, _) = self.lstm(x)
                return self.out(h[-1])
            x = x + self.position
            x = self.norm1(x + self.attention(x, x, x, need_weights=False)[0])
            x = self.norm2(x + self.ff(x))
            return self.out(x.mean(dim=1))

    model = TextModel()
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


# --------------------------------------------------------------------------

def _versions(framework: str) -> dict:
    import numpy

    v = {"python": platform.python_version(), "numpy": numpy.__version__}
    mods = {"kilnet": ["kilnet", "jax", "jaxlib", "optax"], "keras-jax": ["keras", "jax", "jaxlib"],
            "keras-tensorflow": ["keras", "tensorflow"], "torch": ["torch"]}[framework]
    for name in mods:
        mod = sys.modules.get(name)
        if mod is None:
            try:
                mod = __import__(name)
            except ImportError:
                continue
        v[name] = getattr(mod, "__version__", "?")
    return v


def _device(framework: str) -> str:
    """Where the framework ran its training: JAX's default device, PyTorch's CUDA device or the
    CPU, TensorFlow's first GPU or the CPU (the table's device column)."""
    if framework in ("kilnet", "keras-jax"):
        import jax
        return str(jax.devices()[0].device_kind)
    if framework == "torch":
        import torch
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


def _threads(framework: str) -> dict:
    out = {"affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    if framework == "torch":
        import torch
        out["torch_intra_op"] = torch.get_num_threads()
        out["torch_inter_op"] = torch.get_num_interop_threads()
    if framework == "keras-tensorflow":
        import tensorflow as tf
        out["tf_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads()
        out["tf_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", required=True, choices=FRAMEWORKS)
    p.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    p.add_argument("--data", default="auto", choices=("auto", "fashion-mnist", "synthetic"))
    p.add_argument("--train-samples", type=int, default=None,
                   help="synthetic training set of this size (scaling mode)")
    p.add_argument("--epochs", type=int, default=None, help="default: the workload's")
    p.add_argument("--batch-size", type=int, default=None, help="default: the workload's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype-policy", default="float32",
                   choices=("float32", "mixed_bfloat16", "mixed_float16"),
                   help="Keras's global dtype policy (kilnet and Keras); torch runs its loop "
                        "under torch.autocast with the same 16-bit type")
    args = p.parse_args(argv)
    default_bs, default_epochs = WORKLOADS[args.workload]
    args.batch_size = args.batch_size or default_bs
    args.epochs = args.epochs or default_epochs

    t_start = time.perf_counter()
    rss_start = rss_now_mb()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _data

    if args.workload in TEXT_WORKLOADS:
        n = args.train_samples or 25_000
        (x_train, y_train), (x_test, y_test) = _data.text_classification(
            n, min(5_000, max(1_000, n // 5)), seed=args.seed)
        data_name = "synthetic tokens"
    elif args.workload == "resnet":
        n = args.train_samples or 10_000
        (x_train, y_train), (x_test, y_test) = _data.synthetic_images(
            n, min(2_000, max(500, n // 5)), seed=args.seed)
        data_name = "synthetic 32x32x3 images"
    else:
        (x_train, y_train), (x_test, y_test), data_name = _data.load(
            args.data, args.train_samples, args.seed)
    data = ((x_train, y_train), (x_test, y_test))
    t_data = time.perf_counter()
    rss_data = rss_now_mb()

    counter = None
    if args.framework in ("kilnet", "keras-jax"):
        counter = CompileCounter()  # imports jax before the framework does: harmless
    if args.framework == "kilnet":
        import kilnet as keras
        from kilnet import layers
        # kilnet resolves its public names on first use (a fast `import kilnet`); load them
        # all here, so the import is timed as the import, as `import keras` is for Keras.
        for name in keras.__all__:
            getattr(keras, name)
        t_import = time.perf_counter()
        out = run_keras_like(keras, layers, args, data, counter)
    elif args.framework.startswith("keras-"):
        os.environ["KERAS_BACKEND"] = args.framework.split("-", 1)[1]
        import keras
        from keras import layers
        t_import = time.perf_counter()
        out = run_keras_like(keras, layers, args, data, counter)
    else:
        import torch  # noqa: F401  (timed as the import)
        t_import = time.perf_counter()
        out = run_torch(args, data)

    result = {
        "framework": args.framework,
        "workload": args.workload,
        "data": data_name,
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "dataset_bytes": int(x_train.nbytes + y_train.nbytes),
        "batch_size": args.batch_size,
        "dtype_policy": args.dtype_policy,
        "epochs": args.epochs,
        "seed": args.seed,
        **out,
        # CPU seconds over the process's life, against its wall seconds: a run whose
        # CPU share is far below the cores it had was starved by other processes.
        "process_cpu_s": cpu_s(),
        "compiles": counter.summary() if counter is not None else None,
        "peak_rss_mb": peak_rss_mb(),
        "rss_start_mb": rss_start,
        "rss_after_data_mb": rss_data,
        "data_s": t_data - t_start,
        "import_s": t_import - t_data,
        "process_s": time.perf_counter() - t_start,
        "versions": _versions(args.framework),
        "device": _device(args.framework),
        "threads": _threads(args.framework),
        # Which big frameworks ended up imported (e.g. Keras on JAX pulling in TensorFlow).
        "frameworks_loaded": [m for m in ("jax", "tensorflow", "torch", "kilnet") if m in sys.modules],
    }
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
