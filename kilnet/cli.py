"""The `kilnet` command: train, evaluate, predict, info, report.

    kilnet train                         # the seed job: MLP on MNIST, 5 epochs, batch 32
    kilnet train --model cnn --epochs 3 --out runs/cnn
    kilnet evaluate runs/cnn             # a run folder or a model.kilnet file
    kilnet predict runs/cnn digit.png    # any PNG/JPEG of a handwritten digit
    kilnet info                          # versions, devices, cache folders
    kilnet report runs/cnn               # (re)write the run's report.html

Exit status: 0 success; 2 a usage mistake (bad option, missing or unreadable file, unknown
dataset, corrupt model or data file: kilnet's errors are ValueError/TypeError/OSError
subclasses), reported on one line as `kilnet: error: ...`, with the traceback only under
--debug; 1 training stopped by a numeric fault (kilnet.NonFiniteError) or an internal error;
130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM. An interrupted `kilnet train` leaves a
checkpoint in its run folder (BackupAndRestore) and prints the command that resumes it: the
same command with the same --out.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import traceback
import warnings
from pathlib import Path

from kilnet.jobs import (  # the datasets and models `kilnet train` offers
    MODELS,
    Dataset,  # noqa: F401  (re-exported: tests build run folders with it)
    _ensure_accuracy,
    build_model,
    compile_model,
    format_metrics,
    load_dataset,
    load_model,
    recorded_dataset,
    scale_images,
)

EXIT_OK, EXIT_FAULT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
VALIDATION_SPLIT = 0.1  # held out by default: without validation data overfitting is invisible


# -- argument parsing ----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line: `kilnet: error: ...`, exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"kilnet: error: {message} (see '{self.prog} --help')\n")


def _number(kind, text, test, expected):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}. Received: {text!r}") from None
    if not test(value):
        raise argparse.ArgumentTypeError(f"expected {expected}. Received: {text!r}")
    return value


def positive_int(text):
    return _number(int, text, lambda v: v >= 1, "a positive integer")


def non_negative_int(text):
    return _number(int, text, lambda v: v >= 0, "a non-negative integer")


def positive_float(text):
    return _number(float, text, lambda v: math.isfinite(v) and v > 0, "a positive number")


def fraction(text):
    return _number(float, text, lambda v: 0 <= v < 1, "a number in [0, 1), e.g. 0.1")


def build_parser() -> argparse.ArgumentParser:
    from kilnet._version import __version__

    parser = _Parser(prog="kilnet", description="Train and use Keras-style models compiled "
                     "into whole-epoch XLA programs with JAX.")
    parser.add_argument("--version", action="version", version=f"kilnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dataset_help = ("mnist, fashion_mnist, or the path of a .npz file (keys x_train, y_train, "
                    "x_test, y_test) or a folder of the four IDX files (default: mnist)")

    train = sub.add_parser("train", parents=[common], help="train a model, write a run folder",
                           description="Train a model and write a run folder: model.kilnet, "
                           "history.json/.csv, config.json, predictions.npz, curves.png, "
                           "report.html.")
    train.add_argument("--dataset", default="mnist", metavar="NAME|PATH", help=dataset_help)
    train.add_argument("--model", default="mlp", choices=MODELS,
                       help="mlp: Flatten, Dense 128 relu, Dense 10 softmax (default); cnn: "
                       "Keras's simple MNIST convnet")
    train.add_argument("--epochs", type=positive_int, default=5, metavar="N", help="default: 5")
    train.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                       help="default: 32")
    train.add_argument("--learning-rate", type=positive_float, default=0.001, metavar="LR",
                       help="Adam's learning rate (default: 0.001)")
    train.add_argument("--validation-split", type=fraction, default=VALIDATION_SPLIT,
                       metavar="FRACTION",
                       help="fraction of the training data held out for validation, so the "
                       f"verdict can see overfitting (default: {VALIDATION_SPLIT}; 0 turns it "
                       "off)")
    train.add_argument("--seed", type=non_negative_int, default=None, metavar="N",
                       help="makes the run reproducible (default: a random seed, recorded in "
                       "config.json)")
    train.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="run folder (default: runs/<dataset>-<model>, numbered -2, -3, ... "
                       "when a finished run is there). An unfinished run there is resumed; a "
                       "finished one is kept unless --overwrite")
    train.add_argument("--overwrite", action="store_true",
                       help="train over the finished (or unfinished) run in --out")
    train.add_argument("--limit", type=positive_int, default=None, metavar="N",
                       help="train on the first N training samples only")
    multi = train.add_argument_group("multi-host training (see kilnet.distribution)")
    multi.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="address of process 0, the same for every process")
    multi.add_argument("--num-processes", type=positive_int, default=None, metavar="N",
                       help="number of processes in the run")
    multi.add_argument("--process-id", type=non_negative_int, default=None, metavar="I",
                       help="this process's index, 0 .. N-1 (0 writes the run folder and logs)")
    train.set_defaults(run=cmd_train)

    evaluate = sub.add_parser("evaluate", parents=[common], help="test loss and accuracy",
                              description="Print a saved model's loss and accuracy on a "
                              "dataset's test split.")
    evaluate.add_argument("model", type=Path, metavar="MODEL",
                          help="a model.kilnet file or a run folder")
    evaluate.add_argument("--dataset", default=None, metavar="NAME|PATH",
                          help="default: the dataset the run recorded (a run folder), else mnist")
    evaluate.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                          help="default: 32")
    evaluate.add_argument("--limit", type=positive_int, default=None, metavar="N",
                          help="evaluate on the first N test samples only")
    evaluate.set_defaults(run=cmd_evaluate)

    predict = sub.add_parser("predict", parents=[common], help="classify images",
                             description="Classify images (PNG, JPEG, any size; dark-on-light "
                             "or light-on-dark): each is converted to a 28x28 MNIST-style "
                             "image first, and named with the class names the run recorded.")
    predict.add_argument("model", type=Path, metavar="MODEL",
                         help="a model.kilnet file or a run folder")
    predict.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    predict.set_defaults(run=cmd_predict)

    info = sub.add_parser("info", parents=[common], help="versions, devices, cache folders")
    info.set_defaults(run=cmd_info)

    report = sub.add_parser("report", parents=[common], help="write a run's HTML report",
                            description="(Re)write RUN_DIR/report.html from the run folder.")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.set_defaults(run=cmd_report)
    return parser


# -- entry point and error handling ------------------------------------------------------------
def main(argv=None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    with _plain_warnings(debug):
        try:
            return args.run(args) or EXIT_OK
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            print("kilnet: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as error:  # noqa: BLE001 - sorted into user mistakes and bugs below
            code = exit_code(error)
            if code is None:
                raise  # a bug: the traceback is the useful report
            if debug:
                traceback.print_exc()
            print(f"kilnet: error: {one_line(error)}", file=sys.stderr)
            return code


def exit_code(error: BaseException):
    """1 for a numeric fault, 2 for a user mistake, None for anything else (a bug)."""
    from kilnet.errors import NonFiniteError

    if isinstance(error, NonFiniteError):
        return EXIT_FAULT
    if isinstance(error, (ValueError, TypeError, OSError)):
        return EXIT_USAGE
    return None


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    return text or type(error).__name__


def warn(message: str) -> None:
    print(f"kilnet: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _plain_warnings(debug: bool):
    """Warnings as one `kilnet: warning: ...` line, without Python's file:line preamble."""
    if debug:
        yield
        return
    saved = warnings.showwarning
    warnings.showwarning = lambda message, *_args, **_kw: warn(message)
    try:
        yield
    finally:
        warnings.showwarning = saved



# -- commands ------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    # The first line comes before JAX and the data load (seconds): say what is happening.
    if not args.process_id:  # process 0 (or the only one) speaks
        print(f"kilnet train: {args.model} on {args.dataset}, {args.epochs} epochs (loading "
              "JAX and the data)", flush=True)
    import kilnet
    from kilnet import distribution, insight, run_dir

    if distribution.initialize_from_args(args) and not distribution.is_chief():
        return _as_worker(cmd_train, args)
    data = load_dataset(args.dataset)
    out = choose_run_folder(args, data.name)
    resuming = run_dir.resumable_seed(out) is not None
    seed = args.seed
    if seed is None:  # resuming an interrupted run: its seed
        seed = run_dir.resumable_seed(out)
    if seed is None:
        seed = int.from_bytes(os.urandom(3), "little")
    seed = distribution.shared_seed(seed)  # several processes: process 0's
    shard = distribution.process_shard  # several processes: each trains on its own shard
    kilnet.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    available = len(x_train)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    classes = max(10, int(max(y_train.max(), y_test.max(initial=0))) + 1)
    model = build_model(args.model, classes)
    compile_model(model, args.learning_rate)
    out.mkdir(parents=True, exist_ok=True)

    held_out = len(x_train) - int(len(x_train) * (1 - args.validation_split))
    print(f"kilnet {kilnet.__version__}: {args.model} on {data.name}, {len(x_train):,} training "
          f"and {len(x_test):,} test images ({data.source})")
    if held_out:
        print(f"Validation: the last {held_out:,} training images ({args.validation_split:g}) "
              "are held out to judge overfitting (--validation-split 0 turns this off)")
    print(f"Run folder: {out}" + (" (resuming its interrupted run)" if resuming else ""),
          flush=True)
    run = run_dir.Run(out, args, data, model, seed=seed, samples={
        "train_available": available, "train": len(x_train), "test": len(x_test),
        "validation": held_out}, resume=resume_command(args, out, seed))
    # fit() compiles the training program before on_train_begin: print what it built.
    show_report = kilnet.callbacks.LambdaCallback(
        on_train_begin=lambda logs: print(model.compile_report, flush=True))
    # Exact resume: an interrupted run (Ctrl-C, SIGTERM) checkpoints into out/backup; running
    # the same command again continues from there. The backups are deleted once it completes.
    backup = kilnet.callbacks.BackupAndRestore(out / run_dir.BACKUP, verbose=1)
    history_writer = run_dir.HistoryWriter(out)
    # fit itself stays silent: the lines, gains and verdict come from the whole run's history,
    # which after a resume starts before the interruption.
    callbacks = [show_report, backup, history_writer, run_dir.RunProgress(history_writer)]
    from kilnet.errors import TrainingInterrupted

    with run.recording(), _resume_hint(TrainingInterrupted, args, out, seed):
        model.fit(scale_images(shard(x_train)), shard(y_train), epochs=args.epochs,
                  batch_size=args.batch_size, validation_split=args.validation_split,
                  seed=seed, callbacks=callbacks, verbose=0)
        if len(history_writer.epochs) >= 2:
            print(insight.analyze_plateau(history_writer.logs), flush=True)
        x_test = scale_images(x_test)
        logs = model.evaluate(shard(x_test), shard(y_test), batch_size=args.batch_size, verbose=0,
                              return_dict=True)
        print(format_metrics(logs), flush=True)
        probabilities = model.predict(shard(x_test), batch_size=args.batch_size, verbose=0)
        run.finish(history_writer, logs, x_test=x_test, y_test=y_test,  # predict: all rows
                   probabilities=probabilities)
    for line in run.notes:
        print(line)
    return EXIT_OK


def choose_run_folder(args, dataset_name: str) -> Path:
    """The run folder of `kilnet train`: --out as given, or the default one for the dataset and
    model (kilnet.run_dir.default_path). A finished run in --out is never trained over without
    --overwrite; an unfinished one is resumed when it trains the same thing."""
    import shutil

    from kilnet import run_dir

    options = {k: v for k, v in vars(args).items() if k not in ("run", "debug", "command")}
    if args.out is None:
        return run_dir.default_path(dataset_name, args.model, options=options)
    out = Path(args.out)
    config = run_dir.read_config(out)
    if config is None:
        return out
    if args.overwrite:
        shutil.rmtree(out / run_dir.BACKUP, ignore_errors=True)  # start afresh, not resume
        return out
    if run_dir.is_finished(out):
        raise FileExistsError(f"--out {out} holds a finished run ({_describe_run(config)}); "
                              "kilnet never trains over one: choose another --out, or pass "
                              "--overwrite to replace it")
    if run_dir.resumable_seed(out) is not None and not run_dir.same_job(config, options):
        raise FileExistsError(f"--out {out} holds an unfinished run of other options "
                              f"({_describe_run(config)}); rerun its own command to resume it, "
                              "choose another --out, or pass --overwrite to replace it")
    return out


def _describe_run(config: dict) -> str:
    options = config.get("options") or {}
    return (f"{options.get('model')} on {(config.get('dataset') or {}).get('name')}, "
            f"{config.get('status')}")


@contextlib.contextmanager
def _resume_hint(interrupted, args, out, seed):
    """On an interruption (which BackupAndRestore checkpointed), print the command that resumes."""
    try:
        yield
    except interrupted:
        print(f"kilnet: to resume this run: {resume_command(args, out, seed)}", file=sys.stderr,
              flush=True)
        raise


def resume_command(args, out, seed) -> str:
    import shlex

    words = ["kilnet", "train", "--dataset", args.dataset, "--model", args.model,
             "--epochs", args.epochs, "--batch-size", args.batch_size,
             "--learning-rate", args.learning_rate, "--validation-split", args.validation_split,
             "--seed", seed]
    if args.limit:
        words += ["--limit", args.limit]
    words += ["--out", out]
    return " ".join(shlex.quote(str(w)) for w in words)


def _as_worker(command, args) -> int:
    """A process other than 0 in a multi-process run: the same computation (every process must
    make the same collective calls, in the same order), its run folder in a temporary folder
    deleted afterwards and its output silenced, so that process 0 alone writes files and logs.

    It resumes from process 0's backups, copied into its scratch folder first: process 0 only
    adds or prunes a checkpoint after training steps, which wait for this process, so the
    committed checkpoints cannot change while they are copied."""
    import io
    import shutil
    import tempfile

    from kilnet import run_dir

    with tempfile.TemporaryDirectory(prefix="kilnet-worker-") as scratch, \
            contextlib.redirect_stdout(io.StringIO()):
        if args.out is not None and (Path(args.out) / run_dir.BACKUP).is_dir():
            shutil.copytree(Path(args.out) / run_dir.BACKUP, Path(scratch) / run_dir.BACKUP,
                            ignore=shutil.ignore_patterns(".*"))  # committed checkpoints only
        worker_args = argparse.Namespace(**{**vars(args), "out": Path(scratch),
                                            "coordinator": None, "num_processes": None,
                                            "process_id": None})
        return command(worker_args)


def cmd_evaluate(args) -> int:
    model = load_model(args.model)
    config = _run_config(args.model)
    spec = args.dataset or recorded_dataset(config) or "mnist"
    data = load_dataset(spec)
    x, y = data.test
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    _ensure_accuracy(model)
    logs = model.evaluate(scale_images(x), y, batch_size=args.batch_size, verbose=0,
                          return_dict=True)
    recorded = "the run's dataset" if args.dataset is None and config else "--dataset"
    print(f"{data.name}: {len(x):,} test samples ({data.source}; {recorded})")
    print(format_metrics(logs))
    return EXIT_OK


def _run_config(path) -> dict:
    """config.json of the run folder `path` (or of the folder holding a model file); {} when
    there is none."""
    from kilnet import run_dir

    path = Path(path).expanduser()
    folder = path if path.is_dir() else path.parent
    return run_dir.read_config(folder) or {}


def cmd_predict(args) -> int:
    import numpy as np

    from kilnet._digit_image import load_digit

    images = np.stack([load_digit(path) for path in args.images])  # fail before loading
    model = load_model(args.model)
    names = (_run_config(args.model).get("dataset") or {}).get("class_names") or []
    probabilities = np.asarray(model.predict(images, verbose=0))
    for path, p in zip(args.images, probabilities):
        label = int(np.argmax(p))
        name = names[label] if label < len(names) else str(label)
        print(f"{path}: {name} (probability {float(p[label]):.3f})")
    return EXIT_OK


def cmd_info(args) -> int:
    import platform

    import jax
    import numpy as np
    import optax

    import kilnet
    from kilnet import _runtime  # noqa: F401  (kilnet's JAX settings, shown below)
    from kilnet.datasets import cache_dir
    from kilnet._kernels import onednn  # builds oneDNN's kernels on first use

    xla_cache = jax.config.jax_compilation_cache_dir
    rows = [
        ("kilnet", kilnet.__version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("jax", jax.__version__),
        ("jaxlib", _version_of("jaxlib")),
        ("optax", optax.__version__),
        ("numpy", np.__version__),
        ("backend", jax.default_backend()),
        ("devices", ", ".join(f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices())),
        ("data cache", str(cache_dir())),
        ("KILNET_DATA", os.environ.get("KILNET_DATA") or "(not set)"),
        ("KILNET_OFFLINE", os.environ.get("KILNET_OFFLINE") or "(not set)"),
        ("XLA cache", xla_cache or "disabled (KILNET_COMPILATION_CACHE=0)"),
        ("oneDNN kernels", onednn.status()),
        ("oneDNN choices", _remembered_choices(onednn)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return EXIT_OK


def _remembered_choices(onednn) -> str:
    """Where the convolution implementations measured on this machine are kept, and how many."""
    path = onednn.choices_file()
    if path is None:
        return "(oneDNN not in use)"
    return f"{path} ({onednn.remembered_count()} convolution directions and shapes measured)"


def _version_of(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def cmd_report(args) -> int:
    from kilnet.run_dir import write_report

    folder = Path(args.run_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such run folder")
    print(f"Report: {write_report(folder)}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
