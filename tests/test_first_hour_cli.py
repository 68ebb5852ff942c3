"""`kilnet` as a newcomer uses it: commands that keep runs, use what the run recorded, resume an
interrupted run when the same command is run again, and hold out validation data by default.

Everything runs in-process on tiny learnable data (a few hundred 28x28 images).
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

import kilnet
from kilnet import cli, run_dir

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("KILNET_OFFLINE", "1")
    monkeypatch.delenv("KILNET_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # the default run folders go to tmp_path/runs


def tiny_split(n, seed):
    """Each class is a bright bar at its own row: learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 10).astype(np.uint8)
    x = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(y):
        x[i, 2 + 2 * label:4 + 2 * label, 4:24] = 250
    return x, y


@pytest.fixture
def fake_fashion(monkeypatch):
    """Fashion-MNIST's loader returns tiny data; MNIST's fails loudly if anything asks it."""
    data = (tiny_split(200, 0), tiny_split(40, 1))
    monkeypatch.setattr(kilnet.datasets.fashion_mnist, "load_data", lambda *a, **k: data)

    def no_mnist(*args, **kwargs):
        raise AssertionError("MNIST was loaded for a Fashion-MNIST run")

    monkeypatch.setattr(kilnet.datasets.mnist, "load_data", no_mnist)
    return data


def run(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


TRAIN = ["train", "--dataset", "fashion_mnist", "--epochs", 2, "--batch-size", 50, "--seed", 3]


def test_evaluate_and_predict_use_the_runs_dataset_and_class_names(fake_fashion, capsys,
                                                                    tmp_path):
    code, out, err = run(TRAIN, capsys)
    assert code == 0, err
    folder = tmp_path / "runs" / "fashion_mnist-mlp"
    config = json.loads((folder / "config.json").read_text())
    assert config["dataset"]["class_names"] == FASHION
    assert config["dataset"]["preprocessing"] == "x / 255 as float32"

    code, out, err = run(["evaluate", folder], capsys)
    assert code == 0, err
    assert out.startswith("fashion_mnist: 40 test samples")
    model = kilnet.models.load_model(folder / "model.kilnet")
    (_, _), (x_test, y_test) = fake_fashion
    expected = model.evaluate(x_test / np.float32(255), y_test, verbose=0, return_dict=True)
    assert f"test accuracy: {expected['accuracy']:.4f}" in out

    from PIL import Image
    image = tmp_path / "item.png"
    Image.fromarray(x_test[3]).save(image)
    code, out, err = run(["predict", folder, image], capsys)
    assert code == 0, err
    name = out.strip().rsplit(": ", 1)[1].split(" (probability")[0]
    assert name in FASHION


def test_out_on_a_finished_run_refuses_and_overwrite_forces(fake_fashion, capsys, tmp_path):
    out_dir = tmp_path / "mine"
    assert run(TRAIN + ["--out", out_dir], capsys)[0] == 0
    model_bytes = (out_dir / "model.kilnet").read_bytes()
    code, out, err = run(TRAIN + ["--out", out_dir, "--epochs", 3], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kilnet: error: --out ")
    assert "finished run" in lines[0] and "--overwrite" in lines[0]
    assert (out_dir / "model.kilnet").read_bytes() == model_bytes  # untouched
    assert "Epoch" not in out
    code, out, err = run(TRAIN + ["--out", out_dir, "--epochs", 3, "--overwrite"], capsys)
    assert code == 0, err
    assert len(json.loads((out_dir / "history.json").read_text())["loss"]) == 3


def test_a_finished_default_folder_gets_a_numbered_neighbour(fake_fashion, capsys, tmp_path):
    assert run(TRAIN, capsys)[0] == 0
    code, out, err = run(TRAIN, capsys)
    assert code == 0, err
    assert f"Run folder: {os.path.join('runs', 'fashion_mnist-mlp-2')}" in out
    assert run_dir.is_finished(tmp_path / "runs" / "fashion_mnist-mlp")


def interrupt_after_epoch(monkeypatch, stop_epoch):
    """Ctrl-C at the end of epoch `stop_epoch` (0-based), as a user would press it."""
    original = run_dir.RunProgress.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == stop_epoch:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(run_dir.RunProgress, "on_epoch_end", on_epoch_end)


def test_the_same_command_after_ctrl_c_resumes_the_run(fake_fashion, capsys, tmp_path,
                                                       monkeypatch):
    argv = ["train", "--dataset", "fashion_mnist", "--epochs", 4, "--batch-size", 50]
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, 1)
        code, out, err = run(argv, capsys)
    assert code == 130, err
    folder = tmp_path / "runs" / "fashion_mnist-mlp"
    assert json.loads((folder / "config.json").read_text())["status"] == "interrupted"

    code, out, err = run(argv, capsys)  # the same command, no --out
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["fashion_mnist-mlp"]
    assert "resuming" in out
    epochs = [line[:9] for line in out.splitlines() if line.startswith("Epoch ")]
    assert epochs == ["Epoch 3/4", "Epoch 4/4"]
    assert "(" in out.split("Epoch 3/4")[1].splitlines()[0]  # gains since epoch 2
    history = json.loads((folder / "history.json").read_text())
    assert len(history["loss"]) == 4
    table = out.split("What each epoch gained")[1].split("Verdict:")[0]
    rows = [line.split()[0] for line in table.splitlines()[2:] if line.strip()]
    assert rows == ["1", "2", "3", "4"]  # the whole run, not the two resumed epochs
    assert f"{history['loss'][3]:.4f}" in table


def test_the_cli_holds_out_validation_data_by_default(fake_fashion, capsys, tmp_path):
    code, out, err = run(TRAIN, capsys)
    assert code == 0, err
    assert "Validation: the last 20 training images (0.1) are held out" in out
    assert "--validation-split 0" in out
    history = json.loads((tmp_path / "runs" / "fashion_mnist-mlp" / "history.json").read_text())
    assert "val_loss" in history and "val_accuracy" in history
    code, out, err = run(TRAIN + ["--validation-split", 0, "--out", tmp_path / "noval"],
                         capsys)
    assert code == 0, err
    assert "Validation:" not in out
    assert "val_loss" not in json.loads((tmp_path / "noval" / "history.json").read_text())
