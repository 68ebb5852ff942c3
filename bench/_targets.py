"""The speed targets the project has set itself, checked against one bench report.

    python bench/bench.py --workloads mlp --check          # run, then print the checks
    python bench/bench.py --report bench/results/X.json --check   # check a saved report

Each target is a ratio measured in one run (peer median epoch / kilnet median epoch, or the
whole fit's wall time): the figures of two runs on a shared machine are not comparable, their
ratios within one run are. A target whose peer did not run is reported as "not measured",
never as met.
"""

from __future__ import annotations

# (workload, what is compared, peer, at least): ratio = peer / kilnet, so "at least 3" means
# kilnet is 3x faster. "epoch" compares median epochs after the first; "wall" the whole fit
# call with empty compilation caches (compile included).
RATIO_TARGETS = (
    ("mlp", "epoch", "keras-jax", 3.0),
    ("mlp", "epoch", "keras-tensorflow", 10.0),
    ("mlp", "epoch", "torch", 5.0),
    ("mlp", "wall", "keras-jax", 2.0),
    ("cnn", "epoch", "keras-tensorflow", 1.0),
    ("cnn", "epoch", "keras-jax", 3.0),
    ("resnet", "epoch", "keras-tensorflow", 1.0),
    ("resnet", "epoch", "keras-jax", 3.0),
    ("lstm", "epoch", "keras-jax", 1.5),
    ("lstm", "epoch", "torch", 1.0),
    ("transformer", "epoch", "keras-jax", 1.5),
    ("transformer", "epoch", "torch", 1.0),
)
ACCURACY_POINTS = 0.5       # kilnet's test accuracy within this many points of the best peer
FLOOR_FACTOR = 2.5          # the MLP epoch within this factor of its matmul-bound floor

_KEYS = {"epoch": "median_epoch_after_first_s", "wall": "fit_wall_s"}


def _row(tables: dict, workload: str, framework: str) -> dict | None:
    row = next((r for r in tables.get(workload, []) if r["framework"] == framework), None)
    return row if row and row.get("runs") else None


def ratio_checks(tables: dict) -> list[dict]:
    """One entry per target whose workload is in the report: the ratio, or None."""
    checks = []
    for workload, what, peer, target in RATIO_TARGETS:
        if workload not in tables:
            continue
        ours, theirs = _row(tables, workload, "kilnet"), _row(tables, workload, peer)
        ratio = None
        if ours and theirs and ours.get(_KEYS[what]) and theirs.get(_KEYS[what]):
            ratio = theirs[_KEYS[what]] / ours[_KEYS[what]]
        checks.append({"target": f"{workload} {what}: {peer} / kilnet >= {target:g}",
                       "value": ratio, "met": None if ratio is None else ratio >= target})
    return checks


def accuracy_checks(tables: dict) -> list[dict]:
    """kilnet's test accuracy against the best peer's, per workload: each a median over the
    repeats, which bench.py runs with a seed each unless --same-seed."""
    checks = []
    for workload, rows in tables.items():
        ours = _row(tables, workload, "kilnet")
        peers = [r["test_acc"] for r in rows
                 if r["framework"] != "kilnet" and r.get("runs") and r.get("test_acc") is not None]
        if not ours or ours.get("test_acc") is None or not peers:
            continue
        gap = 100 * (max(peers) - ours["test_acc"])
        checks.append({"target": f"{workload} accuracy: within {ACCURACY_POINTS:g} point of the "
                                 "best peer (points behind)",
                       "value": gap, "met": gap <= ACCURACY_POINTS})
    return checks


def floor_check(tables: dict, floor: dict | None, train_samples: int | None) -> list[dict]:
    """The MLP's median epoch against the matmul-bound floor measured in the same run, scaled
    to the run's training set (the floor is measured for 60,000 samples)."""
    ours = _row(tables, "mlp", "kilnet")
    if not floor or not ours or not ours.get(_KEYS["epoch"]) or not train_samples:
        return []
    floor_s = floor["floor_s"] * train_samples / floor["samples"]
    factor = ours[_KEYS["epoch"]] / floor_s
    return [{"target": f"mlp epoch / matmul floor ({floor_s:.3f} s) <= {FLOOR_FACTOR:g}",
             "value": factor, "met": factor <= FLOOR_FACTOR}]


def _train_samples(report: dict, workload: str) -> int | None:
    return next((r["n_train"] for r in report.get("results", [])
                 if r.get("workload") == workload and r.get("framework") == "kilnet"
                 and r.get("n_train")), None)


def check_lines(report: dict) -> list[str]:
    """The checks as printable lines, the worst news first."""
    tables = report.get("tables", {})
    checks = (ratio_checks(tables) + accuracy_checks(tables)
              + floor_check(tables, report.get("floor"), _train_samples(report, "mlp")))
    order = {False: 0, None: 1, True: 2}
    lines = []
    for c in sorted(checks, key=lambda c: order[c["met"]]):
        verdict = {True: "met", False: "MISSED", None: "not measured"}[c["met"]]
        value = "-" if c["value"] is None else f"{c['value']:.2f}"
        lines.append(f"  {verdict:12s} {value:>7s}  {c['target']}")
    return lines
