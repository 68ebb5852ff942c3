"""The HTML of the run report (kilnet.report): the stylesheet and one function per section.

Every section is a string of HTML with its values escaped; images are PNG data URIs, so the
page needs no network and no JavaScript.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

from kilnet import insight


# -- what the predictions say ---------------------------------------------------------------------
def predicted_classes(y_prob) -> np.ndarray:
    """Class per sample: argmax of the probabilities, or p > 0.5 for one-output models."""
    y_prob = np.asarray(y_prob)
    if y_prob.ndim == 1 or y_prob.shape[-1] == 1:
        return (y_prob.reshape(len(y_prob)) > 0.5).astype(np.int64)
    return np.argmax(y_prob, axis=-1)


def true_classes(y_true) -> np.ndarray:
    """Integer labels; one-hot rows become their argmax."""
    y_true = np.asarray(y_true)
    if y_true.ndim == 2 and y_true.shape[1] > 1:
        return np.argmax(y_true, axis=-1)
    return y_true.reshape(len(y_true)).astype(np.int64)


def misclassified(y_true, y_prob) -> np.ndarray:
    """Indices of the wrong predictions, most confident mistakes first."""
    truth, pred = true_classes(y_true), predicted_classes(y_prob)
    wrong = np.flatnonzero(truth != pred)
    y_prob = np.asarray(y_prob, np.float64)
    if y_prob.ndim == 1 or y_prob.shape[-1] == 1:
        p = y_prob.reshape(len(y_prob))
        confidence = np.maximum(p, 1 - p)[wrong]
    else:
        confidence = y_prob[wrong, pred[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")]


def to_uint8(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    images = images.astype(np.float64)
    finite = images[np.isfinite(images)]
    if finite.size and finite.max() <= 1.0 + 1e-6:
        images = images * 255.0  # [0, 1] floats, as after x / 255
    return np.clip(np.nan_to_num(images), 0, 255).round().astype(np.uint8)


# -- the page ----------------------------------------------------------------------------------
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1080px; color: #222; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; }
td.name, th.name { text-align: left; }
.verdict { padding: 10px 14px; border-left: 6px solid #888; background: #f7f7f7; }
.verdict.improving { border-color: #2e7d32; } .verdict.plateaued { border-color: #f9a825; }
.verdict.noisy, .verdict.overfitting { border-color: #ef6c00; }
.verdict.diverging { border-color: #c62828; }
img.curves { max-width: 100%; border: 1px solid #eee; }
table.confusion td { width: 2.6em; text-align: center; }
.bar { background: #e0e0e0; width: 200px; height: 12px; }
.bar div { background: #2e7d32; height: 12px; }
.gallery { display: flex; flex-wrap: wrap; gap: 8px; }
.gallery figure { margin: 0; padding: 4px; border: 1px solid #ddd; text-align: center;
                  font-size: 0.8em; width: 96px; }
.gallery img { width: 84px; height: 84px; image-rendering: pixelated; background: #000; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 0.85em; }
.note { color: #666; font-size: 0.9em; }
.banner { padding: 10px 14px; border-left: 6px solid #c62828; background: #fdecea; }
tr.summary th, tr.summary td { background: #f4f4f4; font-style: italic; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


escape = _e


def _num(value, digits=4) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return _e(value)
    return f"{value:.{digits}f}" if math.isfinite(value) else _e(value)


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def verdict_section(report) -> str:
    css = {"still improving": "improving"}.get(report.verdict, report.verdict.replace(" ", "-"))
    items = "".join(f"<li>{_e(s)}</li>" for s in report.suggestions)
    return (f'<section id="verdict"><h2>What the numbers say</h2>'
            f'<div class="verdict {_e(css)}"><p><strong>Verdict: {_e(report.verdict)}.</strong> '
            f'{_e(report.message)}</p>'
            + (f"<p>Suggestions:</p><ul>{items}</ul>" if items else "") + "</div></section>")


def curves_section(hist, report) -> str:
    from kilnet.plot import plot_history
    buffer = io.BytesIO()
    plot_history(hist, buffer, plateau=report)
    return (f'<section id="curves"><h2>Training curves</h2><img class="curves" id="curves-img" '
            f'alt="loss and accuracy per epoch" src="{_png_data_uri(buffer.getvalue())}">'
            "</section>")


def metrics_section(hist, test_metrics) -> str:
    names = [n for n in hist if not n.startswith("val_")]
    rows = []
    for name in names:
        train = hist[name][-1] if hist[name] else None
        val = hist.get("val_" + name, [None])[-1]
        test = (test_metrics or {}).get(name)
        rows.append(f'<tr><td class="name">{_e(name)}</td><td>{_fmt(name, train)}</td>'
                    f"<td>{_fmt(name, val)}</td><td>{_fmt(name, test)}</td></tr>")
    for name, value in (test_metrics or {}).items():
        if name not in names:
            rows.append(f'<tr><td class="name">{_e(name)}</td><td></td><td></td>'
                        f"<td>{_fmt(name, value)}</td></tr>")
    if not rows:
        return ""
    return ('<section id="metrics"><h2>Final metrics</h2><table><tr><th class="name">metric'
            "</th><th>training (last epoch)</th><th>validation</th><th>test</th></tr>"
            + "".join(rows) + "</table></section>")


def _fmt(name, value) -> str:
    """A metric's value as the whole page shows it: accuracy-like metrics as percentages (their
    gains are percentage points), everything else with four decimals."""
    if value is None:
        return ""
    if insight.is_accuracy_like(name) and isinstance(value, (int, float, np.floating)) \
            and math.isfinite(float(value)):
        return f"{100 * float(value):.2f} %"
    return _num(value)


def class_names(class_names, truth, pred, y_prob) -> list[str]:
    count = max(int(truth.max(initial=0)), int(pred.max(initial=0))) + 1
    if y_prob.ndim == 2 and y_prob.shape[1] > 1:
        count = max(count, y_prob.shape[1])
    if class_names is not None:
        names = [str(c) for c in class_names]
        return names + [str(i) for i in range(len(names), count)]
    return [str(i) for i in range(count)]


def confusion_section(truth, pred, names) -> str:
    k = len(names)
    matrix = np.zeros((k, k), np.int64)
    np.add.at(matrix, (truth, pred), 1)
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    rows = []
    for i in range(k):
        total = max(int(matrix[i].sum()), 1)
        cells = []
        for j in range(k):
            share = matrix[i, j] / total
            color = (46, 125, 50) if i == j else (198, 40, 40)
            alpha = 0.0 if matrix[i, j] == 0 else 0.12 + 0.88 * share
            text_color = "#fff" if alpha > 0.6 else "#222"
            cells.append(f'<td style="background: rgba({color[0]}, {color[1]}, {color[2]}, '
                         f'{alpha:.2f}); color: {text_color}">{matrix[i, j]}</td>')
        rows.append(f'<tr><th>{_e(names[i])}</th>{"".join(cells)}</tr>')
    return ('<section id="confusion"><h2>Confusion matrix</h2><p class="note">Rows: true '
            "class; columns: predicted class. The diagonal counts the correct predictions."
            f'</p><table class="confusion" id="confusion-matrix"><tr><th>true \\ predicted</th>'
            f"{head}</tr>" + "".join(rows) + "</table></section>")


def per_class_section(truth, pred, names) -> str:
    rows = []
    for i, name in enumerate(names):
        mask = truth == i
        count = int(mask.sum())
        correct = int((pred[mask] == i).sum())
        share = correct / count if count else float("nan")
        bar = (f'<div class="bar"><div style="width: {100 * share:.1f}%"></div></div>'
               if count else "")
        rows.append(f'<tr><td class="name">{_e(name)}</td><td>{count:,}</td>'
                    f"<td>{correct:,}</td><td>{_fmt('accuracy', share) if count else '-'}</td>"
                    f"<td>{bar}</td></tr>")
    return ('<section id="per-class"><h2>Accuracy per class</h2><table id="per-class-table">'
            '<tr><th class="name">class</th><th>samples</th><th>correct</th><th>accuracy</th>'
            "<th></th></tr>" + "".join(rows) + "</table></section>")


def gallery_section(truth, pred, y_prob, images, index, names, size) -> str:
    wrong = misclassified(truth, y_prob)
    total = len(wrong)
    head = f'<section id="misclassified"><h2>Misclassified test samples ({total:,})</h2>'
    if images is None:
        return head + '<p class="note">No test images were saved with this run.</p></section>'
    position = ({int(s): p for p, s in enumerate(index)} if index is not None
                else {int(s): int(s) for s in wrong})
    shown = [s for s in wrong if int(s) in position][:size]
    figures = []
    for sample in shown:
        png = _image_png(images[position[int(sample)]])
        if png is None:
            continue
        conf = _confidence(y_prob, sample, pred[sample])
        figures.append(
            f'<figure class="miss"><img alt="test sample {sample}" src="{_png_data_uri(png)}">'
            f"<figcaption>true <b>{_e(names[truth[sample]])}</b><br>predicted "
            f"<b>{_e(names[pred[sample]])}</b>{conf}<br>#{sample}</figcaption></figure>")
    note = (f'<p class="note">The {len(figures)} most confident mistakes, with the true and '
            "the predicted label.</p>") if figures else '<p class="note">None to show.</p>'
    return (head + note + '<div class="gallery" id="gallery">' + "".join(figures)
            + "</div></section>")


def _confidence(y_prob, sample, predicted) -> str:
    y_prob = np.asarray(y_prob)
    if y_prob.ndim == 2 and y_prob.shape[1] > 1:
        return f" ({100 * float(y_prob[sample, predicted]):.0f} %)"
    p = float(np.reshape(y_prob, -1)[sample])
    return f" ({100 * max(p, 1 - p):.0f} %)"


def _image_png(image) -> bytes | None:
    """One test image as PNG bytes: (H, W), (H, W, 1|3|4), or a flat square image."""
    from PIL import Image

    image = to_uint8(image)
    if image.ndim == 1:
        side = math.isqrt(image.size)
        if side * side != image.size:
            return None
        image = image.reshape(side, side)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        return None
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# A longer run shows its first epochs, one row summarising the middle, and its last epochs
# (where a plateau is), as the CLI's table does, rather than dozens of rows of +0.00.
EPOCH_ROWS, FIRST_EPOCHS = 12, 3


def epochs_section(report) -> str:
    names = [n for n in report.history]
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    n = report.epochs
    shown = list(range(n))
    if n > EPOCH_ROWS:
        last = EPOCH_ROWS - FIRST_EPOCHS - 1
        shown = shown[:FIRST_EPOCHS] + [(FIRST_EPOCHS, n - last)] + shown[n - last:]
    rows = [_epoch_row(report, names, i) if isinstance(i, int) else
            _epochs_summary_row(report, names, *i) for i in shown]
    return ('<section id="epochs"><h2>Epoch by epoch</h2><p class="note">In brackets: the '
            "change since the previous epoch (accuracy in percentage points), left out when it "
            "rounds to zero. Shaded rows: the plateau.</p><table id=\"epochs-table\"><tr><th>epoch</th>" + head + "</tr>"
            + "".join(rows) + "</table></section>")


def _epoch_row(report, names, i) -> str:
    cells = []
    for name in names:
        values, gains = report.history[name], report.gains.get(name, [])
        value = _fmt(name, values[i]) if i < len(values) else ""
        g = gains[i] if i < len(gains) else None
        label = None if g is None else insight.format_gain(name, g)
        extra = ("" if label is None or _is_zero(label) else
                 f' <span class="note">({label})</span>')
        cells.append(f"<td>{value}{extra}</td>")
    mark = ' style="background: #fff8e1"' if report.reached and report.epoch and \
        i + 1 >= report.epoch else ""
    return f"<tr{mark}><th>{i + 1}</th>{''.join(cells)}</tr>"


def _epochs_summary_row(report, names, start, stop) -> str:
    """Epochs start+1 .. stop (1-based) in one row: each metric's range and its gains' range."""
    cells = []
    for name in names:
        values = [v for v in report.history[name][start:stop] if _finite(v)]
        gains = [g for g in report.gains.get(name, [])[start:stop]
                 if g is not None and _finite(g)]
        text = (f"{_fmt(name, min(values))} to {_fmt(name, max(values))}" if values else "")
        if gains:
            text += (f' <span class="note">(gains {insight.format_gain(name, min(gains))} to '
                     f"{insight.format_gain(name, max(gains))})</span>")
        cells.append(f"<td>{text}</td>")
    return (f'<tr class="summary"><th>{start + 1}&ndash;{stop}</th>{"".join(cells)}</tr>')


def _is_zero(label: str) -> bool:
    """A gain that shows as +0.00 or -0.0000: left out, as it says nothing."""
    try:
        return float(label) == 0.0
    except ValueError:
        return False


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def compile_section(report: dict) -> str:
    rows = [("parameters", _num(report.get("params"))),
            ("batch size (of the training step below)", _plain(report.get("batch_size"))),
            ("FLOPs per training step", _si(report.get("flops_per_step"), "FLOP")),
            ("bytes accessed per training step", _si(report.get("bytes_per_step"), "B")),
            ("compile time", f"{float(report.get('compile_seconds') or 0):.2f} s")]
    table = "".join(f'<tr><td class="name">{_e(k)}</td><td>{v}</td></tr>' for k, v in rows)
    programs = "".join(
        f'<tr><td class="name">{_e(p.get("name", "?"))}</td><td>{float(p.get("seconds", 0)):.2f} s'
        f'</td><td>{_si(p.get("memory_bytes"), "B")}</td></tr>'
        for p in report.get("programs") or [] if isinstance(p, dict))
    if programs:
        programs = ('<table><tr><th class="name">XLA program</th><th>compile time</th>'
                    "<th>memory</th></tr>" + programs + "</table>")
    return ('<section id="compile"><h2>What compile() built</h2><table>' + table + "</table>"
            + programs + "</section>")


def _si(value, unit: str) -> str:
    if value is None:
        return NOT_SET
    value = float(value)
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def config_section(config: dict, model_summary) -> str:
    parts = ['<section id="config"><h2>Configuration</h2>']
    model = _find_model(config)
    rows = "".join(f'<tr><td class="name">{_e(k)}</td><td class="name">{_config_value(v)}</td>'
                   f"</tr>" for k, v in config.items() if k != "model" or model is None)
    if rows:
        parts.append(f'<table id="config-table">{rows}</table>')
    if model is not None:
        extra = {k: v for k, v in config["model"].items() if k != "architecture"} \
            if config["model"] is not model else {}
        parts.append(_model_table(model, extra))
    if model_summary:
        parts.append(f"<pre>{_e(model_summary)}</pre>")
    return "".join(parts) + "</section>"


def _config_value(value) -> str:
    """A configuration value as readable HTML: a dict as a key/value table (nested dicts as
    nested tables), a list of plain values as one comma-separated line, a value as text."""
    if isinstance(value, dict):
        rows = "".join(f'<tr><td class="name">{_e(k)}</td><td class="name">'
                       f"{_config_value(v)}</td></tr>" for k, v in value.items())
        return f'<table class="nested">{rows}</table>' if rows else NOT_SET
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list, tuple))
                                                for v in value):
        return _e(", ".join(_plain(v) for v in value)) if value else NOT_SET
    if isinstance(value, (list, tuple)):
        return "".join(f"<div>{_config_value(v)}</div>" for v in value)
    return _e(_plain(value))


NOT_SET = "not set"


def _plain(value) -> str:
    """A plain value as a reader expects it: no Python None/True/False.

    >>> [_plain(v) for v in (None, True, False, 0.001, 128, "adam")]
    ['not set', 'yes', 'no', '0.001', '128', 'adam']
    """
    if value is None:
        return NOT_SET
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _is_model(model) -> bool:
    return isinstance(model, dict) and isinstance(model.get("layers"), list)


def _find_model(config):
    """model.get_config() in config["model"] or config["model"]["architecture"]."""
    model = config.get("model") if isinstance(config, dict) else None
    if isinstance(model, dict) and _is_model(model.get("architecture")):
        return model["architecture"]
    return model if _is_model(model) else None


def _model_table(model: dict, extra: dict | None = None) -> str:
    rows = []
    for layer in model["layers"]:
        layer = layer if isinstance(layer, dict) else {"class_name": str(layer)}
        cfg = layer.get("config") or {}
        # Settings left at None are Keras's "none" defaults: listing them is noise.
        settings = ", ".join(f"{k}={_setting(v)}" for k, v in cfg.items()
                             if k != "name" and v is not None)
        rows.append(f'<tr><td class="name">{_e(cfg.get("name", ""))}</td><td class="name">'
                    f'{_e(layer.get("class_name", "?"))}</td><td class="name">{_e(settings)}'
                    "</td></tr>")
    shape = model.get("input_shape")
    shape = _setting(shape) if shape is not None else NOT_SET
    facts = "".join(f", {_e(k)} {_e(_num(v) if isinstance(v, int) else _plain(v))}"
                    for k, v in (extra or {}).items() if not isinstance(v, (dict, list)))
    return (f'<p>Model <b>{_e(model.get("name", ""))}</b>, input shape {_e(shape)}{facts}</p>'
            '<table><tr><th class="name">layer</th><th class="name">type</th>'
            '<th class="name">settings</th></tr>' + "".join(rows) + "</table>")


def _setting(value) -> str:
    """A layer setting as Keras code writes it: shapes as tuples, None as None (as an
    argument; the table leaves out settings that are None)."""
    if isinstance(value, list):
        inner = ", ".join("None" if v is None else _setting(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return str(value)


# -- how the run ended -------------------------------------------------------------------------
def banner_section(config: dict, epochs_done: int) -> str:
    """A banner for a run that did not complete: where it stopped, and how to go on."""
    status = str(config.get("status") or "")
    if not status or status == "completed":
        return ""
    planned = (config.get("options") or {}).get("epochs")
    where = (f"after epoch {epochs_done} of {planned}" if planned else
             f"after epoch {epochs_done}") if epochs_done else "before its first epoch ended"
    if status == "interrupted":
        how = config.get("resume") or _resume_hint(config)
        text = (f"This run was interrupted {where}. Its checkpoint is kept; to resume it, run: "
                f"<code>{_e(how)}</code>")
    elif status == "running":
        text = (f"This run had not finished when this report was written: it stopped {where} "
                "or is still training. The report shows the epochs finished so far.")
    else:
        error = config.get("error")
        text = (f"This run ended {where}: {_e(status)}."
                + (f" {_e(error)}" if error else ""))
    return f'<div class="banner" id="banner"><strong>Unfinished run.</strong> {text}</div>'


def _resume_hint(config: dict) -> str:
    out = (config.get("options") or {}).get("out")
    return (f"the same kilnet train command with --out {out}" if out
            else "the same kilnet train command again")


def page(title: str, body: list) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
