"""Tests for the `kilnet` command (kilnet/cli.py) and the digit-image preprocessing.

Tiny data, one epoch: the commands run in-process through `kilnet.cli.main` (fast), and a few
through `python -m kilnet` in a subprocess to check the real exit statuses and streams. The
network is never used (KILNET_OFFLINE=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kilnet
from kilnet import cli
from kilnet._digit_image import load_digit, mnist_like

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("KILNET_OFFLINE", "1")
    monkeypatch.delenv("KILNET_DATA", raising=False)


def run(argv, capsys):
    """kilnet.cli.main in-process: (exit status, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own exits (usage errors, --help)
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def run_process(argv, cwd):
    env = {**os.environ, "KILNET_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("KILNET_DATA", None)
    return subprocess.run([sys.executable, "-m", "kilnet", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def tiny_npz(path, n_train=200, n_test=40, seed=0):
    """Learnable tiny data: each class is a bright bar at its own row."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 2 * label:4 + 2 * label, 4:24] = 250
        return x, y

    (x_train, y_train), (x_test, y_test) = split(n_train), split(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


# -- kilnet train ---------------------------------------------------------------------------------
def test_train_writes_the_run_folder(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "run"
    result = run_process(["train", "--dataset", data, "--epochs", 1, "--out", out,
                          "--validation-split", 0.1, "--seed", 3], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    stdout = result.stdout
    assert "Compiled" in stdout and "parameters" in stdout        # the compile report
    assert "Epoch 1/1" in stdout and "val_accuracy" in stdout     # progress
    assert "test loss:" in stdout and "test accuracy:" in stdout  # the final evaluation

    config = json.loads((out / "config.json").read_text())
    assert config["status"] == "completed"
    assert config["options"]["epochs"] == 1 and config["options"]["seed"] == 3
    assert config["options"]["batch_size"] == 32 and config["options"]["model"] == "mlp"
    assert config["dataset"]["source"] == str(data.resolve())
    assert config["dataset"]["samples"] == {"train_available": 200, "train": 200, "test": 40,
                                            "validation": 20}
    assert config["versions"]["jax"] and config["versions"]["kilnet"] == kilnet.__version__
    assert config["model"]["layers"][0]["class_name"] == "Flatten"

    history = json.loads((out / "history.json").read_text())
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 1 for values in history.values())
    csv_lines = (out / "history.csv").read_text().splitlines()
    assert csv_lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss" and len(csv_lines) == 2

    assert json.loads((out / "compile_report.json").read_text())["programs"]
    assert set(json.loads((out / "metrics.json").read_text())) == {"loss", "accuracy"}
    assert "dense" in (out / "model_summary.txt").read_text()
    with np.load(out / "predictions.npz") as predictions:
        assert predictions["y_prob"].shape == (40, 10)
        assert predictions["y_true"].shape == (40,)
        assert predictions["images"].dtype == np.uint8
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = out / "report.html"
    assert report.is_file() and f"Report: {report}" in stdout
    assert (out / "model.kilnet").is_file()

    report.unlink()                                      # kilnet report rewrites it
    again = run_process(["report", out], cwd=tmp_path)
    assert again.returncode == 0 and report.is_file(), again.stderr


def test_train_cnn_with_limit_in_process(tmp_path, capsys):
    data = tiny_npz(tmp_path / "tiny.npz")
    code, out, err = run(["train", "--dataset", data, "--model", "cnn", "--epochs", 1,
                          "--limit", 64, "--batch-size", 16, "--out", tmp_path / "cnn"], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "cnn" / "config.json").read_text())
    assert config["dataset"]["samples"]["train"] == 64
    assert [layer["class_name"] for layer in config["model"]["layers"]] == [
        "Reshape", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dropout",
        "Dense"]


def test_default_run_folder_is_named_after_dataset_and_model(tmp_path):
    from kilnet import run_dir

    first = run_dir.default_path("mnist", "mlp", root=tmp_path)
    assert first == tmp_path / "mnist-mlp"
    first.mkdir()
    (first / "config.json").write_text(json.dumps({"status": "completed"}))
    assert run_dir.default_path("mnist", "mlp", root=tmp_path) == tmp_path / "mnist-mlp-2"


def test_history_writer_state_survives_a_resume(tmp_path):
    from kilnet import run_dir

    first = run_dir.HistoryWriter(tmp_path)
    first.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.8})
    state = json.loads(json.dumps(first.get_state(), sort_keys=True))  # as a checkpoint keeps it
    resumed = run_dir.HistoryWriter(tmp_path)
    resumed.set_state(state)
    resumed.on_epoch_end(1, {"loss": 0.25, "accuracy": 0.9})
    assert json.loads((tmp_path / "history.json").read_text()) == {
        "loss": [0.5, 0.25], "accuracy": [0.8, 0.9]}
    assert (tmp_path / "history.csv").read_text().splitlines() == [
        "epoch,loss,accuracy", "0,0.5,0.8", "1,0.25,0.9"]


def test_an_interrupted_run_is_recorded_and_resumes_with_its_seed(tmp_path):
    from kilnet import run_dir
    from kilnet.errors import TrainingInterrupted

    args = cli.build_parser().parse_args(["train", "--out", str(tmp_path), "--seed", "7"])
    data = cli.Dataset("tiny", "test", (np.zeros((4, 28, 28), np.uint8), np.zeros(4)), None)
    run = run_dir.Run(tmp_path, args, data, cli.build_model("mlp"), seed=7, samples={})
    with pytest.raises(TrainingInterrupted):
        with run.recording():
            raise TrainingInterrupted(15, "stopped by SIGTERM")
    assert json.loads((tmp_path / "config.json").read_text())["status"] == "interrupted"
    assert run_dir.resumable_seed(tmp_path) is None          # no checkpoint: nothing to resume
    (tmp_path / run_dir.BACKUP / "ckpt-00000001").mkdir(parents=True)
    assert run_dir.resumable_seed(tmp_path) == 7
    command = cli.resume_command(args, tmp_path, 7)
    assert command.startswith("kilnet train --dataset mnist --model mlp --epochs 5")
    assert command.endswith(f"--seed 7 --out {tmp_path}")


# -- predict: images of real digits ---------------------------------------------------------------
@pytest.fixture(scope="module")
def digit_run(tmp_path_factory):
    """A model trained by `kilnet train` on MNIST (offline: the 4,000-digit subset)."""
    folder = tmp_path_factory.mktemp("digits")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KILNET_OFFLINE", "1")
        patch.delenv("KILNET_DATA", raising=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = cli.main(["train", "--epochs", "4", "--limit", "4000", "--seed", "0",
                             "--out", str(folder / "run")])
            assert code == 0
            _, (x_test, y_test) = kilnet.datasets.mnist.load_data()
    return folder, x_test[:200], y_test[:200]


def confident_digits(model, x, y, count=3):
    """Indices of test digits the model gets right with probability > 0.99, distinct labels."""
    probabilities = np.asarray(model.predict(x / np.float32(255), verbose=0))
    chosen = {}
    for i in np.argsort(-probabilities.max(axis=1)):
        if probabilities[i].argmax() == y[i] and probabilities[i].max() > 0.99:
            chosen.setdefault(int(y[i]), int(i))
        if len(chosen) == count:
            break
    assert len(chosen) == count
    return list(chosen.values())


def test_predict_reads_digit_images(digit_run, capsys):
    folder, x_test, y_test = digit_run
    from kilnet.models import load_model

    model = load_model(folder / "run" / "model.kilnet")
    paths, labels = [], []
    for i in confident_digits(model, x_test, y_test):
        small = folder / f"digit{i}.png"                 # as in MNIST: 28x28 white on black
        Image.fromarray(x_test[i]).save(small)
        large = folder / f"digit{i}-inverted.png"        # 100x100, black ink on white paper
        Image.fromarray(255 - x_test[i]).resize((100, 100), Image.BILINEAR).save(large)
        paths += [small, large]
        labels += [int(y_test[i])] * 2

    code, out, err = run(["predict", folder / "run", *paths], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == len(paths)
    for line, path, label in zip(lines, paths, labels):
        name, rest = line.rsplit(": ", 1)
        digit, probability = rest.split(" (probability ")
        assert name == str(path)
        assert int(digit) == label, line
        assert 0 < float(probability.rstrip(")")) <= 1


def test_evaluate_prints_test_metrics(digit_run, capsys, tmp_path):
    folder, _, _ = digit_run
    code, out, err = run(["evaluate", folder / "run" / "model.kilnet", "--limit", 100], capsys)
    assert code == 0, err
    assert "test loss:" in out and "test accuracy:" in out


# -- the preprocessing alone ----------------------------------------------------------------------
def mnist_digit():
    digit = np.zeros((28, 28), np.float32)
    digit[6:22, 12:16] = 255.0       # a "1": 16 rows of ink, 4 columns
    digit[6:9, 9:12] = 180.0
    return digit


def test_an_mnist_style_digit_comes_back_unchanged():
    digit = np.zeros((28, 28), np.float32)
    digit[4:24, 10:18] = 200.0       # 20 px tall, centered at (14, 14): already MNIST-shaped
    digit[4:24, 13:15] = 255.0
    out = mnist_like(digit)
    assert out.shape == (28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out, digit / 255.0, atol=1 / 255)


def test_dark_ink_on_large_light_paper_is_inverted_scaled_and_centered():
    paper = np.full((300, 200), 235.0, np.float32)       # off-white paper, dark-gray ink
    paper[40:200, 20:60] = 30.0                          # off-center, 160 px tall
    out = mnist_like(paper)
    assert out.max() == pytest.approx(1.0) and out[0, 0] == 0.0
    rows, cols = np.flatnonzero(out.max(axis=1) > 0.5), np.flatnonzero(out.max(axis=0) > 0.5)
    assert rows[-1] - rows[0] + 1 == 20                  # the longest side is 20 px
    weights = out / out.sum()
    assert np.sum(weights.sum(axis=1) * np.arange(28)) == pytest.approx(14, abs=0.6)
    assert np.sum(weights.sum(axis=0) * np.arange(28)) == pytest.approx(14, abs=0.6)


def test_transparent_png_and_color_jpeg(tmp_path):
    rgba = np.zeros((60, 60, 4), np.uint8)               # black ink on a transparent canvas
    rgba[10:50, 25:35, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ink.png")
    rgb = np.full((60, 60, 3), (250, 240, 230), np.uint8)  # blue ink on cream paper
    rgb[10:50, 25:35] = (20, 20, 120)
    Image.fromarray(rgb).save(tmp_path / "ink.jpg", quality=95)
    for name in ("ink.png", "ink.jpg"):
        out = load_digit(tmp_path / name)
        assert out.shape == (28, 28) and out[0, 0] < 0.05 and out.max() > 0.9, name


def test_blank_image_is_an_error(tmp_path):
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(ValueError, match="no digit"):
        load_digit(tmp_path / "blank.png")


# -- user mistakes: one line on stderr, exit status 2 ---------------------------------------------
@pytest.fixture
def mistakes(tmp_path):
    (tmp_path / "corrupt.npz").write_bytes(b"this is not a zip archive")
    np.savez(tmp_path / "wrongkeys.npz", images=np.zeros((2, 28, 28), np.uint8))
    (tmp_path / "notimage.png").write_text("hello")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "black.png")
    (tmp_path / "garbage.kilnet").write_bytes(b"\x00garbage" * 10)
    (tmp_path / "empty_run").mkdir()
    return tmp_path


MISTAKES = {
    "unknown dataset": ["train", "--dataset", "cifar10"],
    "missing dataset file": ["train", "--dataset", "{tmp}/missing.npz"],
    "corrupt dataset": ["train", "--dataset", "{tmp}/corrupt.npz"],
    "dataset without the arrays": ["train", "--dataset", "{tmp}/wrongkeys.npz"],
    "zero epochs": ["train", "--epochs", "0"],
    "text epochs": ["train", "--epochs", "five"],
    "negative learning rate": ["train", "--learning-rate", "-1"],
    "validation split of 1": ["train", "--validation-split", "1"],
    "unknown model": ["train", "--model", "rnn"],
    "unknown option": ["train", "--colour", "red"],
    "unknown command": ["fly"],
    "no command": [],
    "missing model": ["evaluate", "{tmp}/missing.kilnet"],
    "run folder without a model": ["evaluate", "{tmp}/empty_run"],
    "missing image": ["predict", "{tmp}/garbage.kilnet", "{tmp}/missing.png"],
    "unreadable image": ["predict", "{tmp}/garbage.kilnet", "{tmp}/notimage.png"],
    "blank image": ["predict", "{tmp}/garbage.kilnet", "{tmp}/black.png"],
    "corrupt model file": ["evaluate", "{tmp}/garbage.kilnet"],
    "missing run folder": ["report", "{tmp}/missing_run"],
    "folder that is not a run": ["report", "{tmp}/empty_run"],
}


@pytest.mark.parametrize("argv", MISTAKES.values(), ids=MISTAKES.keys())
def test_user_mistakes_exit_2_with_one_line(argv, mistakes, capsys):
    code, out, err = run([a.format(tmp=mistakes) for a in argv], capsys)
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kilnet: error: "), err


def test_a_real_process_exits_2_without_traceback(tmp_path):
    result = run_process(["train", "--dataset", tmp_path / "missing.npz"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"kilnet: error: --dataset {tmp_path / 'missing.npz'}: no such file or folder"]


def test_debug_shows_the_traceback(capsys):
    code, _, err = run(["train", "--dataset", "cifar10", "--debug"], capsys)
    assert code == 2
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("kilnet: error: ")


def test_numeric_fault_exits_1_with_its_message(tmp_path, capsys):
    data = tiny_npz(tmp_path / "tiny.npz")
    code, _, err = run(["train", "--dataset", data, "--epochs", 1, "--learning-rate", "1e38",
                        "--out", tmp_path / "nan"], capsys)
    assert code == 1
    assert "Traceback" not in err
    assert "kilnet: error: " in err and "not finite" in err
    config = json.loads((tmp_path / "nan" / "config.json").read_text())
    assert config["status"].startswith("stopped")


# -- info and report --------------------------------------------------------------------------------
def test_info(capsys):
    code, out, _ = run(["info"], capsys)
    assert code == 0
    for field in ("kilnet", "jax", "optax", "numpy", "devices", "data cache", "XLA cache"):
        assert field in out
    from kilnet._kernels.onednn import status

    assert f"oneDNN kernels  {status()}" in out
    from kilnet._kernels.onednn import choices_file

    path = choices_file()
    assert (f"oneDNN choices  {path} (" if path else "oneDNN choices  (oneDNN not in use)") in out
    assert str(kilnet.datasets.cache_dir()) in out


def test_help_and_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and kilnet.__version__ in out
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0 and "--validation-split" in out
