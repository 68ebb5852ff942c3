"""Benchmark kilnet against Keras 3 (JAX and TensorFlow backends) and PyTorch.

    python bench/bench.py                           # mlp + cnn, 3 repeats, all frameworks
    python bench/bench.py --workloads mlp --repeats 5
    python bench/bench.py --frameworks kilnet,keras-jax
    python bench/bench.py --scaling                 # kilnet MLP epochs at 60k/300k/600k samples
    python bench/bench.py --workloads lstm,transformer --samples 5000 --repeats 1   # quick
    python bench/bench.py --workloads mlp --check   # and the speed targets (bench/_targets.py)

Each measurement runs in its own process (bench/_runner.py) with the
interpreter that has the framework: kilnet with the repo's .venv (else this
interpreter), the peers with bench/.venv-peers (made by bench/setup_peers.sh).
A framework whose interpreter or package is missing is reported as skipped.
The order of frameworks rotates between repeats so that no framework always
runs first or last on a machine whose speed drifts. Tables show medians over
repeats and each peer's ratio to kilnet (peer / kilnet: above 1 means kilnet is
faster). Raw results go to bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import _targets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RUNNER = os.path.join(HERE, "_runner.py")
FLOOR = os.path.join(HERE, "_floor.py")
RESULTS_DIR = os.path.join(HERE, "results")
PEERS_PYTHON = os.path.join(HERE, ".venv-peers", "bin", "python")
RESULT_PREFIX = "BENCH_RESULT "

FRAMEWORKS = ("kilnet", "keras-jax", "keras-tensorflow", "torch")
WORKLOADS = ("mlp", "cnn", "resnet", "lstm", "transformer")
WORKLOAD_TITLES = {
    "mlp": "mlp: Flatten, Dense 128 relu, Dense 10 softmax; adam",
    "cnn": "cnn: Keras MNIST convnet (Conv 32, pool, Conv 64, pool, Dropout 0.5, Dense 10); adam",
    "resnet": "resnet: ResNet-8 on 32x32x3 (Conv-BN stem 16, three residual stages 16/32/64 with "
              "batch norm, global average pooling, Dense 10 softmax); adam",
    "lstm": "lstm: Embedding(20000, 64), LSTM(64), Dense 1 sigmoid on 200 tokens; adam",
    "transformer": "transformer: token + position embedding 64, one block (MultiHeadAttention 2 "
                   "heads x 32, Add + LayerNorm, Dense 64 relu, Dense 64, Add + LayerNorm), "
                   "GlobalAveragePooling1D, Dense 1 sigmoid on 200 tokens; adam",
}


def workload_title(workload: str, results: list[dict]) -> str:
    """The workload's description with the batch size, epochs and samples actually run."""
    r = next((r for r in results if r.get("workload") == workload and "epochs" in r), None)
    if r is None:
        return WORKLOAD_TITLES[workload]
    policy = r.get("dtype_policy", "float32")
    return (f"{WORKLOAD_TITLES[workload]}, batch {r['batch_size']}, {r['epochs']} epochs, "
            f"{r['n_train']:,} train / {r['n_test']:,} test samples of {r['data']}"
            + ("" if policy == "float32" else f", policy {policy}"))


# What must import for a framework to count as installed.
_IMPORT_CHECK = {
    "kilnet": "import kilnet; kilnet.Sequential; kilnet.callbacks.Callback",
    "keras-jax": "import importlib.util as u, sys; "
                 "sys.exit(0 if u.find_spec('keras') and u.find_spec('jax') else 1)",
    "keras-tensorflow": "import importlib.util as u, sys; "
                        "sys.exit(0 if u.find_spec('keras') and u.find_spec('tensorflow') else 1)",
    "torch": "import importlib.util as u, sys; sys.exit(0 if u.find_spec('torch') else 1)",
}


# ---------------------------------------------------------------- processes

def interpreter(framework: str) -> str:
    """The Python that runs a framework: the repo's .venv for kilnet and bench/.venv-peers for
    the peers, unless KILNET_BENCH_PYTHON / KILNET_BENCH_PEERS_PYTHON name others (bench/gpu.sh
    points them at its CUDA environments)."""
    if framework == "kilnet":
        venv = os.environ.get("KILNET_BENCH_PYTHON") or os.path.join(ROOT, ".venv", "bin", "python")
        return venv if os.path.exists(venv) else sys.executable
    return os.environ.get("KILNET_BENCH_PEERS_PYTHON") or PEERS_PYTHON


# How kilnet's persistent XLA compilation cache is set for its child processes
# (kilnet enables one in ~/.cache/kilnet/xla by default; Keras on JAX has none):
#   cold: a fresh empty cache per process, so every run compiles, like the peers
#   warm: one cache shared by all kilnet runs of this bench, so repeats after the
#         first load their programs from it (what a user's second run sees)
#   user: leave KILNET_COMPILATION_CACHE as it is (kilnet's default cache)
KILNET_CACHE_MODE = "cold"
_shared_cache_dir: str | None = None


def kilnet_cache_dir() -> str | None:
    global _shared_cache_dir
    if KILNET_CACHE_MODE == "cold":
        return tempfile.mkdtemp(prefix="kilnet-bench-cache-")
    if KILNET_CACHE_MODE == "warm":
        if _shared_cache_dir is None:
            _shared_cache_dir = tempfile.mkdtemp(prefix="kilnet-bench-cache-")
            atexit.register(shutil.rmtree, _shared_cache_dir, True)
        return _shared_cache_dir
    return None


def child_env(framework: str, cache_dir: str | None = None) -> dict:
    env = dict(os.environ)
    if cache_dir is not None:
        env["KILNET_COMPILATION_CACHE"] = cache_dir
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow; no effect on speed
    env.pop("KERAS_BACKEND", None)  # the runner sets it per framework
    if framework == "kilnet":  # import the working tree's kilnet, installed or not
        env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def availability(framework: str) -> str | None:
    """None when the framework can run, else why it is skipped."""
    python = interpreter(framework)
    if not os.path.exists(python):
        return "skipped (not installed: no bench/.venv-peers, run bench/setup_peers.sh)"
    proc = subprocess.run([python, "-c", _IMPORT_CHECK[framework]], env=child_env(framework),
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"skipped (not installed: {last[:120]})"
    return None


def machine_cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds all processes of the machine have run, CPU seconds the hypervisor gave
    to others: steal) since boot, from Linux's /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (0 where Python has no `resource`:
    `machine_cpu_seconds` is None there too, so no neighbour figures are made)."""
    try:
        import resource   # Unix only
    except ImportError:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def neighbours(before, after, child_cpu: float, wall: float) -> dict:
    """What others took of the CPU while one child ran: cores' worth of other processes
    (the machine's busy time less the child's own) and of steal (a neighbour on the host).
    A busy core beside the seed MLP doubles kilnet's epoch (its two threads wait for each
    other) where Keras on JAX's grows about 1.2x, so the ratios of such a run mislead."""
    if before is None or after is None or wall <= 0:
        return {}
    busy, steal = after[0] - before[0], after[1] - before[1]
    return {"others_cores": max(busy - child_cpu, 0.0) / wall, "steal_cores": steal / wall}


def run_child(framework: str, workload: str, extra: list[str], timeout: float) -> dict:
    cmd = [interpreter(framework), RUNNER, "--framework", framework, "--workload", workload, *extra]
    cache_dir = kilnet_cache_dir() if framework == "kilnet" else None
    t0 = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cpu_before, children_before = machine_cpu_seconds(), children_cpu_seconds()
    try:
        proc = subprocess.run(cmd, env=child_env(framework, cache_dir), cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"framework": framework, "workload": workload, "error": f"timed out after {timeout:.0f} s"}
    finally:
        if cache_dir is not None and KILNET_CACHE_MODE == "cold":
            shutil.rmtree(cache_dir, ignore_errors=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
            result["loadavg_1m_before"] = load
            result["child_wall_s"] = time.perf_counter() - t0
            result.update(neighbours(cpu_before, machine_cpu_seconds(),
                                     children_cpu_seconds() - children_before,
                                     result["child_wall_s"]))
            if framework == "kilnet":
                result["kilnet_cache"] = KILNET_CACHE_MODE
            return result
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    return {"framework": framework, "workload": workload,
            "error": f"exit code {proc.returncode}, no result line", "stderr_tail": tail}


def rotated(items: list[str], shift: int) -> list[str]:
    shift %= max(1, len(items))
    return items[shift:] + items[:shift]


# ---------------------------------------------------------------- machine

# The vector and matrix extensions that decide which CPU kernels XLA, oneDNN and PyTorch use.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile",
             "avx_vnni")


def machine_info() -> dict:
    cpu, flags = platform.processor() or "?", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("?", platform.processor()):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    flags = [flag for flag in CPU_FLAGS if flag in present]
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "gpus": nvidia_gpus(),
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "XLA_FLAGS", "OMP_NUM_THREADS",
                                           "JAX_ENABLE_X64", "GLIBC_TUNABLES") if k in os.environ},
    }


def nvidia_gpus() -> list[str]:
    """Name, driver and memory of each NVIDIA GPU nvidia-smi lists; [] where there is none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def versions_seen(results: list[dict]) -> dict:
    out: dict[str, str] = {}
    for r in results:
        for k, v in (r.get("versions") or {}).items():
            out.setdefault(k, v)
    return out


def print_machine(info: dict, versions: dict) -> None:
    print(f"machine: {info['cpu']}, {info['cores']} cores ({info['cores_usable']} usable), "
          f"{info['memory_gib']} GiB, {info['platform']}")
    for gpu in info.get("gpus") or []:
        print(f"gpu: {gpu}")
    if info.get("cpu_flags") is not None:
        print("cpu flags: " + (" ".join(info["cpu_flags"]) or "none of " + " ".join(CPU_FLAGS)))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    if info.get("env"):
        print("env: " + ", ".join(f"{k}={v}" for k, v in info["env"].items()))
    if info.get("loadavg_at_start"):
        print("load average at start: " + " ".join(f"{x:.2f}" for x in info["loadavg_at_start"]))


# ---------------------------------------------------------------- tables

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(results: list[dict], frameworks: list[str], workload: str, baseline: str) -> list[dict]:
    rows = []
    for fw in frameworks:
        runs = [r for r in results if r["framework"] == fw and r["workload"] == workload]
        ok = [r for r in runs if "error" not in r and "skipped" not in r]
        row = {"framework": fw, "runs": len(ok)}
        if not ok:
            note = next((r.get("skipped") or r.get("error") for r in runs), "not run")
            row["note"] = note
            rows.append(row)
            continue
        for key in ("first_epoch_s", "median_epoch_after_first_s", "fit_wall_s", "test_acc",
                    "peak_rss_mb", "build_s", "compile_call_s"):
            row[key] = _median(r.get(key) for r in ok)
        epochs = [r["median_epoch_after_first_s"] for r in ok if r.get("median_epoch_after_first_s")]
        row["epoch_min"], row["epoch_max"] = (min(epochs), max(epochs)) if epochs else (None, None)
        # The fastest single epoch after the first, over all repeats: less sensitive than
        # the median to other processes competing for the CPU.
        later = [t for r in ok for t in r.get("epoch_times", [])[1:]]
        row["best_epoch_s"] = min(later) if later else None
        # CPU seconds per wall second of the fit: on 2 cores a framework near 1 ran on one
        # (TensorFlow's epochs here are bimodal: 20-22 s at 0.94-0.97, 10-12 s at 1.7).
        row["cpu_per_wall"] = _median(r["fit_cpu_s"] / r["fit_wall_s"] for r in ok
                                      if r.get("fit_cpu_s") and r.get("fit_wall_s"))
        failed = [r for r in runs if "error" in r]
        if failed:
            row["note"] = f"{len(failed)} run(s) failed: {failed[0]['error']}"
        rows.append(row)
    base = next((r for r in rows if r["framework"] == baseline and r["runs"]), None)
    for row in rows:
        for key, out in (("median_epoch_after_first_s", "epoch_ratio"), ("fit_wall_s", "wall_ratio")):
            if base and row.get(key) and base.get(key):
                row[out] = row[key] / base[key]
    return rows


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


TABLE_COLUMNS = [
    # header, row key, format
    ("framework", "framework", "s"),
    ("first epoch s", "first_epoch_s", ".2f"),
    ("median epoch s", "median_epoch_after_first_s", ".3f"),
    ("best epoch s", "best_epoch_s", ".3f"),
    ("fit wall s", "fit_wall_s", ".2f"),
    ("test acc", "test_acc", ".4f"),
    ("peak MB", "peak_rss_mb", ".0f"),
    ("cpu/wall", "cpu_per_wall", ".2f"),
    ("epoch ratio", "epoch_ratio", ".2f"),
    ("wall ratio", "wall_ratio", ".2f"),
]


def table_lines(rows: list[dict], baseline: str, markdown: bool) -> list[str]:
    headers = [h.format(b=baseline) for h, _, _ in TABLE_COLUMNS]
    body = []
    for row in rows:
        if row.get("runs"):
            cells = [_f(row.get(k), fmt) for _, k, fmt in TABLE_COLUMNS]
        else:
            cells = [row["framework"], row.get("note", "")] + [""] * (len(TABLE_COLUMNS) - 2)
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
        lines += ["| " + " | ".join(c for c in cells) + " |" for cells in body]
        return lines
    widths = [max(len(headers[i]), *(len(c) for c in [b[i] for b in body if b[1] and b[2]] or [""]))
              for i in range(len(headers))]
    fmt_row = lambda cells: "  ".join(  # noqa: E731
        c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells))
    lines = [fmt_row(headers), fmt_row(["-" * w for w in widths])]
    for cells in body:
        if cells[2] == "" and cells[1]:  # skipped / failed: one free-text cell
            lines.append(cells[0].ljust(widths[0]) + "  " + cells[1])
        else:
            lines.append(fmt_row(cells))
    return lines


# ---------------------------------------------------------------- modes

def run_comparison(args, frameworks: list[str], workloads: list[str]) -> dict:
    skipped = {}
    for fw in frameworks:
        why = availability(fw)
        if why:
            skipped[fw] = why
            print(f"{fw}: {why}", flush=True)
    runnable = [fw for fw in frameworks if fw not in skipped]
    extra = ["--data", args.data, "--dtype-policy", args.dtype_policy]
    if args.epochs:
        extra += ["--epochs", str(args.epochs)]
    if args.train_samples:
        extra += ["--train-samples", str(args.train_samples)]

    results = [{"framework": fw, "workload": w, "skipped": why}
               for fw, why in skipped.items() for w in workloads]
    for rep in range(args.repeats):
        seed = repeat_seed(args, rep)
        for w in workloads:
            for fw in rotated(runnable, rep):
                r = run_child(fw, w, extra + ["--seed", str(seed)], args.timeout)
                r["repeat"] = rep
                results.append(r)
                if "error" in r:
                    print(f"  [{rep + 1}/{args.repeats}] {w:3s} {fw:16s} FAILED: {r['error']}\n"
                          + "\n".join("      " + s for s in r.get("stderr_tail", "").splitlines()),
                          flush=True)
                else:
                    print(f"  [{rep + 1}/{args.repeats}] {w:3s} {fw:16s} "
                          f"epochs {' '.join(f'{t:.3f}' for t in r['epoch_times'])} s, "
                          f"fit wall {r['fit_wall_s']:.2f} s, acc {r['test_acc']:.4f}"
                          + (f", cpu/wall {r['fit_cpu_s'] / r['fit_wall_s']:.2f}" if r.get("fit_cpu_s") else "")
                          + (f", load {r['loadavg_1m_before']:.1f}" if r.get("loadavg_1m_before") is not None else "")
                          + (f", others {r['others_cores']:.2f} + steal {r['steal_cores']:.2f} cores"
                             if "others_cores" in r else ""),
                          flush=True)
    return {"results": results,
            "tables": {w: summarize(results, frameworks, w, args.baseline) for w in workloads}}


def repeat_seed(args, rep: int) -> int:
    """The seed of repeat `rep`: --seed + rep, so that the median test accuracy over the
    repeats is a median over initial weights and batch orders (one seed's accuracy moves by
    about half a point: the seed MLP's on Fashion-MNIST, seeds 0-3, kilnet 0.8677-0.8754,
    PyTorch 0.8716-0.8783); --same-seed keeps --seed for every repeat."""
    return args.seed if args.same_seed else args.seed + rep


def load_note(results: list[dict], workload: str) -> str | None:
    """A warning line when other processes competed for the CPU during the runs."""
    loads = [r["loadavg_1m_before"] for r in results
             if r.get("workload") == workload and r.get("loadavg_1m_before") is not None]
    if not loads:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    line = (f"load average (1 min) before the runs: min {min(loads):.1f}, "
            f"median {statistics.median(loads):.1f}, max {max(loads):.1f}")
    # The bench's own previous run leaves up to `cores` in the 1-minute average.
    if max(loads) > cores + 1:
        line += f" -- well above {cores} cores: other processes competed, figures are noisy"
    return line


def neighbour_note(results: list[dict], workload: str) -> str | None:
    """A line on what other processes and the hypervisor took of the CPU during the runs
    (`neighbours`), with a warning when a neighbour took a third of a core or more."""
    others = [r["others_cores"] + r["steal_cores"] for r in results
              if r.get("workload") == workload and "others_cores" in r]
    if not others:
        return None
    line = (f"other processes and steal during the runs, in cores: median "
            f"{statistics.median(others):.2f}, max {max(others):.2f}")
    if max(others) > 0.3:
        line += " -- a neighbour took CPU from some runs: their ratios are not the quiet machine's"
    return line


def device_note(results: list[dict], workload: str) -> str | None:
    """Which device each framework trained on, when any was not the CPU (a GPU run)."""
    seen: dict[str, str] = {}
    for r in results:
        if r.get("workload") == workload and r.get("device"):
            seen.setdefault(r["framework"], r["device"])
    if all(d.lower() == "cpu" for d in seen.values()):
        return None
    return "devices: " + ", ".join(f"{fw} on {d}" for fw, d in seen.items())


def print_comparison(report: dict, workloads: list[str], baseline: str, data_name: str) -> None:
    for w in workloads:
        print()
        print(f"== {workload_title(w, report['results'])} | medians of {report['repeats']} repeats"
              f" | ratio = framework / {baseline} (above 1: {baseline} is faster)")
        for line in table_lines(report["tables"][w], baseline, markdown=False):
            print(line)
        for note in (load_note(report["results"], w), neighbour_note(report["results"], w),
                     device_note(report["results"], w)):
            if note:
                print(note)
    print()
    print("Markdown (for the README):")
    print()
    for w in workloads:
        print(f"**{workload_title(w, report['results'])}** (medians of {report['repeats']} repeats; "
              f"ratio = framework / {baseline}, above 1 means {baseline} is faster)")
        print()
        for line in table_lines(report["tables"][w], baseline, markdown=True):
            print(line)
        print()


def scaling_rows(results: list[dict], sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        ok = [r for r in results if r.get("n_train") == n and "error" not in r]
        if not ok:
            rows.append({"samples": n, "note": "failed"})
            continue
        row = {"samples": n, "runs": len(ok),
               "dataset_mb": ok[0]["dataset_bytes"] / 2**20,
               "median_epoch_s": _median(r["median_epoch_after_first_s"] for r in ok),
               "first_epoch_s": _median(r["first_epoch_s"] for r in ok),
               "compiles_after_first_epoch": max((r["compiles"] or {}).get("after_first_epoch", 0)
                                                 if r.get("compiles") else -1 for r in ok),
               "rss_before_fit_mb": _median(r["rss_before_fit_mb"] for r in ok),
               "peak_rss_mb": _median(r["peak_rss_mb"] for r in ok)}
        later = [t for r in ok for t in r.get("epoch_times", [])[1:]]
        row["best_epoch_s"] = min(later) if later else None
        row["s_per_60k"] = row["median_epoch_s"] * 60_000 / n
        row["best_per_60k"] = row["best_epoch_s"] * 60_000 / n if later else None
        row["rss_growth_mb"] = row["peak_rss_mb"] - row["rss_before_fit_mb"]
        row["growth_per_dataset"] = row["rss_growth_mb"] / row["dataset_mb"]
        rows.append(row)
    measured = [r for r in rows if r.get("runs")]
    base = min(measured, key=lambda r: r["samples"]) if measured else None  # the smallest size
    for r in rows:
        if base and r.get("runs"):
            r["per_60k_ratio"] = r["s_per_60k"] / base["s_per_60k"]
            if r.get("best_per_60k") and base.get("best_per_60k"):
                r["best_per_60k_ratio"] = r["best_per_60k"] / base["best_per_60k"]
    return rows


def run_scaling(args) -> dict:
    fw = "kilnet" if args.frameworks is None else args.frameworks.split(",")[0]
    why = availability(fw)
    if why:
        print(f"{fw}: {why}")
        return {"results": [], "rows": [], "framework": fw, "skipped": why}
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for rep in range(args.repeats):
        for n in (sizes if rep % 2 == 0 else sizes[::-1]):
            extra = ["--data", "synthetic", "--train-samples", str(n),
                     "--epochs", str(args.scaling_epochs), "--seed", str(args.seed)]
            r = run_child(fw, "mlp", extra, args.timeout)
            r["repeat"] = rep
            results.append(r)
            if "error" in r:
                print(f"  {n:>8d} samples FAILED: {r['error']}\n" + r.get("stderr_tail", ""), flush=True)
            else:
                print(f"  {n:>8d} samples: epochs {' '.join(f'{t:.3f}' for t in r['epoch_times'])} s",
                      flush=True)
    rows = scaling_rows(results, sizes)
    return {"results": results, "rows": rows, "framework": fw}


SCALING_COLUMNS = [
    ("samples", "samples", "d"),
    ("data MB", "dataset_mb", ".0f"),
    ("first epoch s", "first_epoch_s", ".2f"),
    ("median epoch s", "median_epoch_s", ".3f"),
    ("s per 60k", "s_per_60k", ".3f"),
    ("x 60k figure", "per_60k_ratio", ".2f"),
    ("best epoch s", "best_epoch_s", ".3f"),
    ("best x 60k", "best_per_60k_ratio", ".2f"),
    ("compiles after 1st epoch", "compiles_after_first_epoch", "d"),
    ("RSS before fit MB", "rss_before_fit_mb", ".0f"),
    ("peak RSS MB", "peak_rss_mb", ".0f"),
    ("growth MB", "rss_growth_mb", ".0f"),
    ("growth / data", "growth_per_dataset", ".2f"),
]


def print_scaling(report: dict, epochs: int) -> None:
    print()
    print(f"== scaling: {report['framework']} mlp, synthetic data, {epochs} epochs per size, "
          f"medians of {report['repeats']} repeat(s)")
    headers = [h for h, _, _ in SCALING_COLUMNS]
    body = [[_f(r.get(k), fmt) if r.get("runs") else (str(r.get(k, "")) if k == "samples" else "")
             for _, k, fmt in SCALING_COLUMNS] for r in report["rows"]]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)] if body else []
    print("  ".join(h.rjust(widths[i]) for i, h in enumerate(headers)))
    for b in body:
        print("  ".join(c.rjust(widths[i]) for i, c in enumerate(b)))
    print()
    print("Markdown (for the README):")
    print()
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---:" for _ in headers) + "|")
    for b in body:
        print("| " + " | ".join(b) + " |")


def measure_floor(timeout: float) -> dict | None:
    """The seed MLP's matmul-bound floor on this machine (bench/_floor.py), or None."""
    proc = subprocess.run([interpreter("kilnet"), FLOOR], env=child_env("kilnet"), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    print("matmul floor: not measured: " + (proc.stderr.strip().splitlines() or ["?"])[-1])
    return None


def print_checks(report: dict) -> None:
    floor = report.get("floor")
    if floor:
        print(f"matmul-bound floor of the mlp epoch: {floor['floor_s']:.3f} s "
              f"({floor['gflop']:.1f} GFLOP at {floor['gflops_per_s']:.0f} GFLOP/s, XLA options: "
              f"{floor['floor_options']})")
    print("targets (bench/_targets.py; ratio = peer / kilnet):")
    for line in _targets.check_lines(report) or ["  none of the run's workloads has a target"]:
        print(line)


def write_results(report: dict, tag: str) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(RESULTS_DIR, f"{stamp}{tag}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    return path


def reprint(path: str, check: bool = False) -> int:
    """Recompute and print the tables of a saved run (e.g. after adding a column)."""
    with open(path) as f:
        report = json.load(f)
    print_machine(report["machine"], report["versions"])
    print(f"kilnet compilation cache: {report.get('kilnet_cache', '?')}")
    if report["mode"] == "scaling":
        sizes = sorted({r["n_train"] for r in report["results"] if "n_train" in r})
        report["rows"] = scaling_rows(report["results"], sizes)
        epochs = next((r["epochs"] for r in report["results"] if "epochs" in r), "?")
        print_scaling(report, epochs)
        return 0
    workloads = [w for w in WORKLOADS if any(r.get("workload") == w for r in report["results"])]
    frameworks = [fw for fw in FRAMEWORKS if any(r.get("framework") == fw for r in report["results"])]
    baseline = report.get("baseline", "kilnet")
    report["tables"] = {w: summarize(report["results"], frameworks, w, baseline) for w in workloads}
    print_comparison(report, workloads, baseline, report.get("data", "?"))
    if check:
        print_checks(report)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=None,
                   help="runs per framework and workload (default 3; 1 with --scaling)")
    p.add_argument("--workloads", default="mlp,cnn",
                   help="comma-separated: mlp,cnn,resnet,lstm,transformer (default mlp,cnn)")
    p.add_argument("--frameworks", default=None,
                   help=f"comma-separated, default all: {','.join(FRAMEWORKS)} (kilnet with --scaling)")
    p.add_argument("--baseline", default="kilnet", choices=FRAMEWORKS,
                   help="the framework the ratio columns divide by")
    p.add_argument("--data", default="auto", choices=("auto", "fashion-mnist", "synthetic"),
                   help="auto: Fashion-MNIST when /usr/share/datasets/fashion-mnist has it, else synthetic")
    p.add_argument("--epochs", type=int, default=None, help="override the workloads' epochs (quick checks)")
    p.add_argument("--train-samples", "--samples", type=int, default=None,
                   help="synthetic training set of this size instead (quick checks; for lstm "
                        "and transformer the test set is a fifth of it, 1,000 to 5,000)")
    p.add_argument("--seed", type=int, default=0,
                   help="the first repeat's seed; repeat r runs with seed + r (default 0)")
    p.add_argument("--same-seed", action="store_true",
                   help="run every repeat with --seed (the accuracy column is then one seed's)")
    p.add_argument("--dtype-policy", default="float32",
                   choices=("float32", "mixed_bfloat16", "mixed_float16"),
                   help="run every framework under this mixed-precision policy (Keras's "
                        "set_global_policy; torch.autocast for PyTorch, bfloat16 only)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per child process")
    p.add_argument("--scaling", action="store_true",
                   help="time kilnet MLP epochs at several synthetic dataset sizes instead")
    p.add_argument("--sizes", default="60000,300000,600000", help="training set sizes for --scaling")
    p.add_argument("--scaling-epochs", type=int, default=3)
    p.add_argument("--kilnet-cache", default="cold", choices=("cold", "warm", "user"),
                   help="kilnet's persistent compilation cache: cold = fresh per run (default, "
                        "compiles every time like the peers), warm = shared across this bench's "
                        "runs, user = kilnet's own default cache")
    p.add_argument("--report", metavar="JSON", default=None,
                   help="print the tables of a saved bench/results/*.json again, run nothing")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/*.json")
    p.add_argument("--check", action="store_true",
                   help="print the speed targets met and missed (bench/_targets.py); with mlp, "
                        "also measure its matmul-bound floor (bench/_floor.py)")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.scaling else 3
    global KILNET_CACHE_MODE
    KILNET_CACHE_MODE = args.kilnet_cache

    if args.report:
        return reprint(args.report, args.check)
    info = machine_info()
    t0 = time.perf_counter()
    if args.scaling:
        report = run_scaling(args)
        report.update(mode="scaling", repeats=args.repeats, machine=info, kilnet_cache=args.kilnet_cache,
                      versions=versions_seen(report["results"]), argv=sys.argv[1:],
                      total_s=time.perf_counter() - t0)
        print()
        print_machine(info, report["versions"])
        print(f"kilnet compilation cache: {args.kilnet_cache} (see --kilnet-cache)")
        if report["rows"]:
            print_scaling(report, args.scaling_epochs)
        tag = "-scaling"
    else:
        frameworks = (args.frameworks or ",".join(FRAMEWORKS)).split(",")
        workloads = args.workloads.split(",")
        for name, given, allowed in (("frameworks", frameworks, FRAMEWORKS),
                                     ("workloads", workloads, WORKLOADS)):
            bad = [g for g in given if g not in allowed]
            if bad:
                p.error(f"--{name} must be among {','.join(allowed)}. Received: {','.join(bad)}")
        report = run_comparison(args, frameworks, workloads)
        if args.check and "mlp" in workloads:
            report["floor"] = measure_floor(args.timeout)
        data_names = sorted({r["data"] for r in report["results"] if "data" in r}) or [args.data]
        report.update(mode="comparison", repeats=args.repeats, machine=info, kilnet_cache=args.kilnet_cache,
                      versions=versions_seen(report["results"]), baseline=args.baseline,
                      data=",".join(data_names), argv=sys.argv[1:], total_s=time.perf_counter() - t0)
        print()
        print_machine(info, report["versions"])
        print(f"kilnet compilation cache: {args.kilnet_cache} (see --kilnet-cache)")
        print_comparison(report, workloads, args.baseline, report["data"])
        if args.check:
            print_checks(report)
        tag = ""
    if not args.no_save:
        print(f"raw results: {os.path.relpath(write_results(report, tag), ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
