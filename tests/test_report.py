"""Tests for kilnet.plot_history (the PNG) and kilnet.report (the HTML run report), down to
rendering the report in headless Chromium.

The run folder is made by hand here, in the format kilnet/run_dir.py writes (see the
kilnet.report docstring): no training, so these tests take a second or two, plus Chromium.
Chromium must be installed (`apt-get install chromium`; .ci/run does it): the rendering test
fails, it does not install anything, when it is missing.
"""

import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

import kilnet
from kilnet import report
from kilnet.callbacks import History
from kilnet.plot import TRAIN_COLOR, VAL_COLOR
from kilnet.programs import CompileReport

HISTORY = {"epoch": [0, 1, 2, 3, 4],
           "loss": [0.55, 0.40, 0.35, 0.33, 0.32], "accuracy": [0.83, 0.85, 0.86, 0.864, 0.867],
           "val_loss": [0.50, 0.42, 0.38, 0.37, 0.365],
           "val_accuracy": [0.84, 0.855, 0.86, 0.862, 0.863]}
CLASSES = 3


# -- plot_history -------------------------------------------------------------------------------
def test_plot_history_writes_a_png_of_the_expected_size(tmp_path):
    path = kilnet.plot_history(HISTORY, tmp_path / "curves.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1000, 400)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    for color in (TRAIN_COLOR, VAL_COLOR):
        assert count_near(pixels, hex_rgb(color)) > 100  # both curves are drawn


def test_plot_history_marks_the_plateau(tmp_path):
    with_plateau = load_rgb(kilnet.plot_history(HISTORY, tmp_path / "a.png"))
    without = load_rgb(kilnet.plot_history(HISTORY, tmp_path / "b.png", plateau=False))
    assert with_plateau.shape == without.shape
    # the shaded band (grey at 25 % over white)
    shade = (231, 231, 231)
    assert count_near(with_plateau.reshape(-1, 3), shade, 3) > 5 * count_near(
        without.reshape(-1, 3), shade, 3) + 1000


def test_plot_history_inputs(tmp_path):
    history = History()
    history.on_train_begin()
    for epoch in range(3):
        history.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "learning_rate": 0.1})
    path = kilnet.plot_history(history, tmp_path / "loss.png")  # a loss-only History
    with Image.open(path) as image:
        assert image.size == (1000, 400)
    figure = kilnet.plot_history(HISTORY)  # no path: the matplotlib Figure
    assert [ax.get_title() for ax in figure.axes] == ["loss", "accuracy"]
    buffer = io.BytesIO()
    kilnet.plot_history(HISTORY, buffer)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one epoch"):
        kilnet.plot_history({}, tmp_path / "x.png")


# -- the report -----------------------------------------------------------------------------------
def synthetic_predictions(n=30, seed=0):
    """Labels, probabilities with a few known mistakes, and 8x8 images in [0, 1]."""
    rng = np.random.default_rng(seed)
    y_true = np.arange(n) % CLASSES
    y_pred = y_true.copy()
    y_pred[[1, 5, 7]] = [0, 0, 2]  # three mistakes: 1->0, 2->0, 1->2
    prob = np.full((n, CLASSES), 0.1, np.float32)
    prob[np.arange(n), y_pred] = 0.8
    prob[7, 2] = 0.9  # the most confident mistake
    images = rng.uniform(size=(n, 8, 8)).astype(np.float32)
    return y_true, prob, images


def make_run_dir(path, *, with_images=True, probabilities_key="y_prob"):
    """A run folder as kilnet/run_dir.py writes it."""
    path.mkdir(parents=True, exist_ok=True)
    history = dict(HISTORY, val_loss=HISTORY["val_loss"][:4] + [None])  # NaN saved as null
    (path / "history.json").write_text(json.dumps(history))
    config = {
        "command": "train", "status": "completed",
        "options": {"epochs": 5, "batch_size": 32, "model": "mlp", "seed": 7},
        "dataset": {"name": "tiny", "source": "https://example.org/tiny.npz", "samples": {
            "train": 90, "test": 30}},
        "model": {"kind": "mlp", "params": 123, "architecture": {
            "name": "mlp", "input_shape": [8, 8], "layers": [
                {"class_name": "Flatten", "config": {"name": "flatten"}},
                {"class_name": "Dense", "config": {"name": "dense", "units": 3,
                                                   "activation": "softmax"}}]}},
        "compile_report": {"params": 123, "flops_per_step": 2.5e6, "bytes_per_step": 1.2e6,
                           "batch_size": 32, "compile_seconds": 0.4, "programs": [
                               {"name": "train loop (90 samples, batch 32)", "seconds": 0.4,
                                "memory_bytes": 3_000_000}]},
        "results": {"test_loss": 0.41, "test_accuracy": 0.9},
    }
    (path / "config.json").write_text(json.dumps(config))
    y_true, prob, images = synthetic_predictions()
    if with_images:
        report.save_predictions(path, y_true=y_true, y_pred_probs=prob, x_test_images=images,
                                class_names=["zero", "one", "two"])
    else:
        np.savez(path / "predictions.npz", y_true=y_true, **{probabilities_key: prob})
    return path


class Page(HTMLParser):
    """The elements a test looks at: ids, images, table cells, figures, external links."""

    def __init__(self, text):
        super().__init__()
        self.ids, self.images, self.external, self.tags = set(), [], [], []
        self.figures = 0
        self._table = None
        self.tables = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table" and attrs.get("id"):
            self._table = attrs["id"]
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
        if tag == "figure":
            self.figures += 1
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for name in ("src", "href"):
            if attrs.get(name) and not attrs[name].startswith(("data:", "#")):
                self.external.append(attrs[name])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._table and self.tables[self._table] and data.strip():
            self.tables[self._table][-1].append(data.strip())


def test_report_from_run_dir_is_self_contained(tmp_path):
    run = make_run_dir(tmp_path / "run")
    path = report.report_from_run_dir(run)
    assert path == run / "report.html"
    text = path.read_text()
    page = Page(text)
    assert {"verdict", "curves", "curves-img", "metrics", "confusion-matrix", "per-class",
            "gallery", "epochs", "compile", "config"} <= page.ids
    assert page.external == [] and "script" not in page.tags and "link" not in page.tags
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert len(page.images) == 1 + 3  # the curves and the three mistakes
    assert "Verdict: plateaued." in text
    # confusion matrix: rows are true classes, columns predicted (header row first)
    matrix = page.tables["confusion-matrix"]
    assert matrix[0] == ["true \\ predicted", "zero", "one", "two"]
    assert matrix[1:] == [["zero", "10", "0", "0"], ["one", "1", "8", "1"],
                          ["two", "1", "0", "9"]]
    per_class = page.tables["per-class-table"]
    assert per_class[2][:4] == ["one", "10", "8", "80.00 %"]
    # the gallery, most confident mistake first, with true and predicted labels
    assert page.figures == 3
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", text)
    assert "true <b>one</b><br>predicted <b>two</b> (90 %)" in captions[0]
    # test metrics from config["results"], the compile report, the layer table
    assert "90.00 %" in text and "2.50 M" in text and "train loop (90 samples, batch 32)" in text
    assert "units=3" in text and "https://example.org/tiny.npz" in text


def test_write_report_on_a_run_dir_and_without_images(tmp_path):
    run = make_run_dir(tmp_path / "run", with_images=False, probabilities_key="probabilities")
    path = report.write_report(run)  # what `kilnet report RUN_DIR` calls
    page = Page(path.read_text())
    assert "confusion-matrix" in page.ids and page.figures == 0
    assert "No test images were saved" in path.read_text()


def test_write_report_from_arrays(tmp_path):
    y_true, prob, images = synthetic_predictions()
    compiled = CompileReport(params=10, programs=[{"name": "predict loop", "seconds": 0.1}])
    path = report.write_report(
        tmp_path / "r.html", history=HISTORY, config={"epochs": 5}, y_true=y_true,
        y_pred_probs=prob, x_test_images=images, test_metrics={"accuracy": 0.9},
        compile_report=compiled)  # the object or its as_dict()
    assert Page(path.read_text()).figures == 3 and "predict loop" in path.read_text()
    # binary classifier: one probability per sample; images flattened
    binary = np.array([0.9, 0.2, 0.7, 0.4], np.float32)
    path = report.write_report(tmp_path / "b.html", history={"loss": [0.6, 0.5]},
                               y_true=[1, 0, 0, 1], y_pred_probs=binary,
                               x_test_images=np.zeros((4, 16)))
    page = Page(path.read_text())
    assert page.tables["confusion-matrix"][1:] == [["0", "1", "1"], ["1", "1", "1"]]
    assert page.figures == 2
    with pytest.raises(ValueError, match="one row per test sample"):
        report.write_report(tmp_path / "c.html", history=HISTORY, y_true=[0, 1],
                            y_pred_probs=prob)
    with pytest.raises(FileNotFoundError, match="history.json"):
        report.report_from_run_dir(tmp_path)


def test_save_predictions_keeps_the_mistakes(tmp_path):
    y_true, prob, images = synthetic_predictions()
    path = report.save_predictions(tmp_path / "p.npz", y_true=y_true, y_pred_probs=prob,
                                   x_test_images=images, max_images=2)
    with np.load(path) as data:
        assert list(data["image_index"]) == [7, 1]  # most confident first
        assert data["images"].dtype == np.uint8 and data["images"].shape == (2, 8, 8)
        np.testing.assert_array_equal(data["images"][0], np.round(images[7] * 255))
        assert data["y_prob"].shape == (30, CLASSES)


# -- rendering in Chromium -----------------------------------------------------------------------
def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is needed to render the HTML report: apt-get install chromium "
                "(.ci/run installs it).")


def run_chromium(tmp_path, *args):
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_headless_chromium(tmp_path):
    run = make_run_dir(tmp_path / "run")
    url = report.report_from_run_dir(run).resolve().as_uri()
    shot = tmp_path / "report.png"
    # one launch: the DOM as Chromium parsed it on stdout, and a screenshot
    dom = run_chromium(tmp_path, "--dump-dom", f"--screenshot={shot}",
                       "--window-size=1100,2600", url).stdout
    page = Page(dom)
    assert {"curves-img", "confusion-matrix", "gallery"} <= page.ids
    assert len(page.tables["confusion-matrix"]) == 1 + CLASSES and page.figures == 3
    with Image.open(shot) as image:
        assert image.size == (1100, 2600)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    rgb = pixels.astype(np.int32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    assert len(np.unique(packed)) > 200  # not blank: text, curves, cells, digits
    assert count_near(pixels, hex_rgb(TRAIN_COLOR), 30) > 100  # the curves image is drawn
    assert count_near(pixels, (46, 125, 50), 30) > 500  # the confusion matrix's diagonal


# -- helpers ----------------------------------------------------------------------------------------
def hex_rgb(color):
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def count_near(pixels, rgb, tolerance=12):
    return int((np.abs(pixels.astype(int) - np.array(rgb)).max(axis=1) <= tolerance).sum())


def load_rgb(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
