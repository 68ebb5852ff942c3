"""The progress display where a newcomer meets it: a terminal of any width, a log file, and a
real Jupyter notebook executed with nbconvert (its stored outputs are what GitHub shows).
"""

from __future__ import annotations

import io
import json
import re
import sys

import numpy as np
import pytest

import kilnet
from kilnet import layers, progress

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def tiny_model():
    model = kilnet.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def tiny_data(n=64):
    x = np.random.default_rng(0).normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def live_lines(text: str) -> list[str]:
    """What a terminal shows as separate rewrites: the text between carriage returns and
    newlines, without ANSI codes."""
    return [ANSI.sub("", part) for part in re.split(r"[\r\n]", text) if ANSI.sub("", part)]


# -- terminal -----------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [40, 80, 200])
def test_live_line_fits_the_terminal(width):
    logs = {"loss": 0.793, "accuracy": 0.71234, "val_loss": 0.81, "val_accuracy": 0.7}
    for done in (0, 7, 93, 125):
        line = progress.fit_line("Epoch 12/100", done, 125, 3.0, logs, width)
        assert len(line) <= width - 1, line
        assert line.startswith("Epoch 12/100")
    wide = progress.fit_line("Epoch 12/100", 93, 125, 3.0, logs, 200)
    assert "93/125" in wide and "[" in wide and "ETA" in wide
    assert all(f"{name}: " in wide for name in logs)
    narrow = progress.fit_line("Epoch 12/100", 93, 125, 3.0, logs, 40)
    assert "93/125" in narrow and "val_accuracy" not in narrow  # fields dropped, not wrapped


def test_a_very_narrow_terminal_still_gets_one_row():
    line = progress.fit_line("Epoch 12/100", 93, 125, 3.0, {"loss": 0.5}, 8)
    assert len(line) <= 7 and line.endswith("…")


@pytest.mark.parametrize("width", [40, 80, 200])
def test_fit_on_a_terminal_never_draws_past_its_width(monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setattr(progress, "_MIN_UPDATE_SECONDS", 0.0)  # draw at every chunk
    screen = FakeTerminal()
    bar = progress.EpochProgress(1, 2, 125, stream=screen)
    assert bar.mode == "terminal" and bar.live
    logs = {"loss": 0.7930, "accuracy": 0.7123, "val_loss": 0.8, "val_accuracy": 0.7}
    for epoch in range(2):
        bar.epoch_begin(epoch)
        for step in (10, 60, 125):
            bar.update(step, logs)
        bar.epoch_end(epoch, logs)
    bar.close()
    text = screen.getvalue()
    finals = [line for line in text.split("\n") if line]
    assert len(finals) == 2  # one finished line per epoch, nothing left dangling
    for final in finals:
        rewrites = live_lines(final)
        for live in rewrites[:-1]:  # the live rewrites fit; the final line is written once
            assert len(live) <= width - 1, live
        assert rewrites[-1].startswith(("Epoch 1/2 - 125/125", "Epoch 2/2 - 125/125"))
        assert "val_accuracy: 0.7000" in rewrites[-1]
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_fit_to_a_log_file_writes_one_plain_line_per_epoch(capsys):
    x, y = tiny_data()
    tiny_model().fit(x, y, epochs=2, batch_size=16, verbose=1, seed=0)
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    epochs = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert [line[:14] for line in epochs] == ["Epoch 1/2 - 4/", "Epoch 2/2 - 4/"]
    assert all("loss: " in line and "accuracy: " in line for line in epochs)


def test_verbose_2_is_one_plain_line_per_epoch_even_on_a_terminal():
    screen = FakeTerminal()
    bar = progress.EpochProgress(2, 1, 4, stream=screen)
    bar.epoch_begin(0)
    bar.update(2, {"loss": 1.0})
    bar.epoch_end(0, {"loss": 0.5})
    assert not bar.live and "\r" not in screen.getvalue()
    assert screen.getvalue().startswith("Epoch 1/1 - 4/4 - ")


# -- a real notebook ----------------------------------------------------------------------------
NOTEBOOK_CODE = """\
import numpy as np
import kilnet
from kilnet import layers
x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = kilnet.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"),
                           layers.Dense(2, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x, y, epochs=2, batch_size=8, seed=0)
"""


def run_notebook(tmp_path, monkeypatch, code: str):
    """Executes a one-cell notebook in a kernel of this very Python; returns the cell."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    execute = pytest.importorskip("nbconvert.preprocessors")
    kernels = tmp_path / "jupyter" / "kernels" / "kilnet-test"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kilnet test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    processor = execute.ExecutePreprocessor(timeout=240, kernel_name="kilnet-test")
    processor.preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    return notebook.cells[0]


def test_notebook_stores_every_epoch_line_as_plain_text(tmp_path, monkeypatch):
    cell = run_notebook(tmp_path, monkeypatch, NOTEBOOK_CODE)
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    displays = [o for o in cell.outputs if o.output_type == "display_data"]
    assert len(displays) == 1, cell.outputs  # one live display per fit, updated in place
    text = displays[0].data["text/plain"]
    lines = text.splitlines()
    assert [line[:17] for line in lines] == ["Epoch 1/2 - 32/32", "Epoch 2/2 - 32/32"]
    assert all("loss: " in line and "accuracy: " in line for line in lines)
    assert "0/32" not in text.replace("32/32", "")  # no bar frozen at its start
    assert "Epoch 2/2 - 32/32" in displays[0].data["text/html"]
    stream = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert "Verdict:" in stream  # the summary after fit is printed text too
