"""The order Keras gives logs in. Keras hands every logs dict through its `pythonify_logs`,
which walks the keys sorted by name and puts the entries of a value that is itself a dict
(a step's `{"compile_metrics": {"mae": ...}}`, a metric whose result is a dict) in that
key's place, themselves sorted. So a JAX-form train_step returning
`{"loss": ..., "compile_metrics": {"mae": ...}}` logs `mae` before `loss` ("compile_metrics"
sorts first), while a flat `{"loss": ..., "mae": ...}` logs `loss` first.

kilnet keeps the flat names the programs carry, and for each the path of keys that led to it
in the step's logs (`("compile_metrics", "mae")`); sorting by those paths puts the names where
Keras puts them, also among names without a path (fit's `val_` logs, a callback's entry).
"""

from __future__ import annotations


def flat_paths(logs: dict) -> dict:
    """Flat log name -> its path of keys in `logs`, in Keras's order: keys sorted at each
    level, a nested dict's entries in its key's place. A name met twice keeps its first
    place (its value is the last one met, see `flat_values`), as Keras's dict update does.

    Example:
        >>> flat_paths({"loss": 1.0, "compile_metrics": {"mae": 2.0, "acc": 3.0}})
        {'acc': ('compile_metrics', 'acc'), 'mae': ('compile_metrics', 'mae'), 'loss': ('loss',)}
    """
    paths = {}
    for path, _ in _walk(logs, ()):
        paths.setdefault(path[-1], path)
    return paths


def flat_values(logs: dict) -> dict:
    """Flat log name -> value, as Keras flattens `logs` (see `flat_paths`): a name met twice
    holds the last value met.

    Example:
        >>> flat_values({"b": 1.0, "a": {"x": 2.0}})
        {'x': 2.0, 'b': 1.0}
    """
    values = {}
    for path, value in _walk(logs, ()):
        values[path[-1]] = value
    return values


def _walk(logs: dict, prefix: tuple):
    for key in sorted(logs):
        value = logs[key]
        if isinstance(value, dict):
            yield from _walk(value, prefix + (key,))
        else:
            yield prefix + (key,), value


class PathedLogs(dict):
    """A flat logs dict that remembers the step's path of each name (`paths`), so that
    `keras_sorted` places the names as Keras does. Other names sort by themselves.

    Example:
        >>> logs = PathedLogs({"loss": 1.0, "mae": 2.0},
        ...                   {"loss": ("loss",), "mae": ("compile_metrics", "mae")})
        >>> logs["val_loss"] = 0.5
        >>> list(keras_sorted(logs))
        ['mae', 'loss', 'val_loss']
    """

    def __init__(self, values: dict, paths: dict):
        super().__init__(values)
        self.paths = dict(paths)


def keras_sorted(logs: dict) -> dict:
    """`logs` in Keras's order: by each name's path in the step's logs (PathedLogs), else by
    the name itself.

    Example:
        >>> list(keras_sorted({"loss": 1.0, "accuracy": 0.5}))
        ['accuracy', 'loss']
    """
    paths = getattr(logs, "paths", {})
    return dict(sorted(logs.items(), key=lambda item: paths.get(item[0], (item[0],))))
