"""The run report: one self-contained HTML page about a training run.

    kilnet report RUN_DIR                         # the CLI: write_report(RUN_DIR)
    kilnet.report.report_from_run_dir(RUN_DIR)    # the same, from Python

The page needs no network to be viewed: images are inlined as base64 data URIs, the CSS is
inline and there is no JavaScript. It shows the verdict of kilnet.insight.analyze_plateau, the
training curves (kilnet.plot.plot_history), the final and test metrics, the per-epoch gains
(accuracy-like metrics as percentages throughout), a confusion matrix, the per-class accuracy, a gallery of misclassified test images with their
true and predicted labels, the compile report and the run's configuration.

Contract with `kilnet train` (kilnet/run_dir.py writes the folder; only history.json is
required, every other part of the page is left out when its file is missing):

    RUN_DIR/history.json      History.history, optionally with "epoch" (0-based indices):
                              {"epoch": [0, 1], "loss": [...], "accuracy": [...],
                              "val_loss": [...], ...}; null reads as NaN.
    RUN_DIR/config.json       a JSON object: the run's configuration, shown as tables. Read
                              specially: "status" and "resume" (a banner when the run is
                              not "completed"), "dataset": {"class_names": [...]} (when
                              predictions.npz has none),
                              "compile_report" (model.compile_report.as_dict()),
                              "results" (test metrics, keys "test_loss", "test_accuracy"...),
                              "model": {"architecture": model.get_config()} (a layer table).
    RUN_DIR/compile_report.json, RUN_DIR/metrics.json (test metrics without the "test_"
                              prefix), RUN_DIR/model_summary.txt: optional alternatives.
    RUN_DIR/predictions.npz   arrays (save_predictions(RUN_DIR, y_true=, y_pred_probs=,
                              x_test_images=) writes exactly this):
                                y_true       (n,) int   true class per test sample
                                y_prob       (n, classes) float: model.predict(x_test)
                                             ("probabilities" is read as the same; binary
                                             models: (n,) or (n, 1))
                                images       (m, H, W) or (m, H, W, C), uint8 (or floats in
                                             [0, 1]): test images for the gallery of
                                             mistakes; without them the gallery is omitted
                                image_index  (m,) int: the test-sample index of each image;
                                             omitted when images holds all n test images
                                class_names  (classes,) str, optional
                              save_predictions keeps only the misclassified images (64 at
                              most, most confident mistakes first), so the file stays small.
    RUN_DIR/report.html       what write_report(RUN_DIR) / report_from_run_dir(RUN_DIR) write.

The model file in the run directory is not needed for the report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from kilnet import _report_html as h
from kilnet import insight
from kilnet._report_html import misclassified, predicted_classes, to_uint8, true_classes

REPORT_NAME = "report.html"
PREDICTIONS_NAME = "predictions.npz"
GALLERY_SIZE = 36


def save_predictions(path, *, y_true, y_pred_probs, x_test_images, max_images: int = 64,
                     class_names=None) -> Path:
    """Write the predictions file of the run-directory contract (see the module docstring).
    `path` is the .npz file or the run directory. Only the misclassified images are kept."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / PREDICTIONS_NAME
    y_true, y_prob = np.asarray(y_true), np.asarray(y_pred_probs, np.float32)
    images = np.asarray(x_test_images)
    _check_lengths(y_true, y_prob, images, None)
    index = misclassified(y_true, y_prob)[:max_images]
    arrays = {"y_true": true_classes(y_true), "y_prob": y_prob,
              "images": to_uint8(images[index]), "image_index": index.astype(np.int64)}
    if class_names is not None:
        arrays["class_names"] = np.asarray([str(c) for c in class_names])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _check_lengths(y_true, y_prob, images, image_index):
    if len(y_true) != len(y_prob):
        raise ValueError("y_true and y_pred_probs must have one row per test sample. "
                         f"Received: {len(y_true)} labels and {len(y_prob)} predictions")
    if images is not None and image_index is None and len(images) != len(y_true):
        raise ValueError("x_test_images must hold one image per test sample, or pass "
                         "image_index= with the sample index of each image. Received: "
                         f"{len(images)} images for {len(y_true)} samples")


# -- loading a run directory ----------------------------------------------------------------------
def report_from_run_dir(run_dir, output=None) -> Path:
    """Read what `kilnet train` wrote in `run_dir` (see the module docstring) and write the
    report, by default to run_dir/report.html. Returns the path written."""
    run_dir = Path(run_dir)
    history_file = run_dir / "history.json"
    if not history_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a kilnet run directory: it has no "
                                "history.json (written by `kilnet train`). "
                                f"Received: run_dir={str(run_dir)!r}")
    history = _read_json(history_file)
    if isinstance(history.get("history"), dict):  # a saved History object
        history = history["history"]
    config = _read_json(run_dir / "config.json") or {}
    compile_report = _read_json(run_dir / "compile_report.json")
    if isinstance(config.get("compile_report"), dict):
        compile_report = compile_report or config["compile_report"]
        config = {k: v for k, v in config.items() if k != "compile_report"}
    test_metrics = _read_json(run_dir / "metrics.json")
    if test_metrics is None and isinstance(config.get("results"), dict):
        test_metrics = {k[5:] if k.startswith("test_") else k: v
                        for k, v in config["results"].items()}
    summary_file = run_dir / "model_summary.txt"
    summary = summary_file.read_text(encoding="utf-8") if summary_file.is_file() else None
    pred = {}
    if (run_dir / PREDICTIONS_NAME).is_file():
        with np.load(run_dir / PREDICTIONS_NAME, allow_pickle=False) as data:
            pred = {key: data[key] for key in data.files}
    if pred.get("class_names") is None:  # runs that recorded them in config.json only
        pred["class_names"] = (config.get("dataset") or {}).get("class_names") or None
    return write_report(
        run_dir / REPORT_NAME if output is None else output,
        history=history, config=config, compile_report=compile_report,
        y_true=pred.get("y_true"),
        y_pred_probs=pred.get("y_prob", pred.get("probabilities")),
        x_test_images=pred.get("images"), image_index=pred.get("image_index"),
        class_names=pred.get("class_names"), test_metrics=test_metrics,
        model_summary=summary, title=f"kilnet run report: {run_dir.resolve().name}")


def _read_json(path: Path):
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# -- the page -------------------------------------------------------------------------------------
def write_report(path, *, history=None, config=None, compile_report=None, y_true=None,
                 y_pred_probs=None, x_test_images=None, image_index=None, test_metrics=None,
                 class_names=None, model_summary=None, title="kilnet run report",
                 gallery_size: int = GALLERY_SIZE) -> Path:
    """Write the HTML report to `path` (a file, or a directory to hold report.html).
    write_report(RUN_DIR) with no history reads the run folder: report_from_run_dir(RUN_DIR).

    history: History or its .history dict. config: the run's configuration (dict).
    compile_report: model.compile_report (or its as_dict()). test_metrics: dict of test values.
    y_true: test labels; y_pred_probs: model.predict(x_test); x_test_images: the test images
    (all of them, or those listed by image_index). class_names: labels for the classes.
    """
    if history is None:
        return report_from_run_dir(path)
    hist = getattr(history, "history", history) or {}
    hist = {k: [math.nan if v is None else float(v) for v in values]
            for k, values in dict(hist).items() if k != "epoch" and values}
    if hasattr(compile_report, "as_dict"):
        compile_report = compile_report.as_dict()
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_NAME
    plateau = insight.analyze_plateau(hist) if hist else None
    body = [f"<h1>{h.escape(title)}</h1>"]
    if config:  # an interrupted, failed or unfinished run says so first
        body.append(h.banner_section(config, max(map(len, hist.values()), default=0)))
    if plateau is not None:
        body.append(h.verdict_section(plateau))
        body.append(h.curves_section(hist, plateau))
    body.append(h.metrics_section(hist, test_metrics))
    if y_true is not None and y_pred_probs is not None:
        y_true_arr, y_prob = np.asarray(y_true), np.asarray(y_pred_probs)
        images = None if x_test_images is None else np.asarray(x_test_images)
        index = None if image_index is None else np.asarray(image_index, np.int64)
        _check_lengths(y_true_arr, y_prob, images, index)
        truth, pred = true_classes(y_true_arr), predicted_classes(y_prob)
        names = h.class_names(class_names, truth, pred, y_prob)
        body.append(h.confusion_section(truth, pred, names))
        body.append(h.per_class_section(truth, pred, names))
        body.append(h.gallery_section(truth, pred, y_prob, images, index, names, gallery_size))
    if plateau is not None:
        body.append(h.epochs_section(plateau))
    if compile_report:
        body.append(h.compile_section(compile_report))
    if config or model_summary:
        body.append(h.config_section(config or {}, model_summary))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(h.page(title, body), encoding="utf-8")
    return path
