"""timeseries_dataset_from_array: sliding windows over a series, read on demand.

The windows are not copied out up front (they overlap, so that could take
sequence_length times the series' memory): a `Windows` source gathers the rows of the
windows a batch asks for.
"""

from __future__ import annotations

import numpy as np

from kilnet.utils._dataset import ArrayDataset


class Windows:
    """Window i is `data[start + positions[i] + sampling_rate * k]` for k < length."""

    def __init__(self, data, positions, start, length, sampling_rate):
        self.data, self.positions = data, positions
        self.steps = start + np.arange(length) * sampling_rate

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, rows):
        return np.asarray(self.data[self.positions[rows][:, None] + self.steps[None, :]])


class Targets:
    """The target of window i: `targets[start + positions[i]]`."""

    def __init__(self, targets, positions, start):
        self.targets, self.positions, self.start = targets, positions, start

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, rows):
        return np.asarray(self.targets[self.start + self.positions[rows]])


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1,
                                  sampling_rate=1, batch_size=128, shuffle=False, seed=None,
                                  start_index=None, end_index=None):
    """Batches of windows over `data`, as keras.utils.timeseries_dataset_from_array.

    Window i holds `sequence_length` steps of `data`, `sampling_rate` apart, starting at
    `start_index + i * sequence_stride`; windows end before `end_index` (exclusive). Its
    target is `targets[start_index + i * sequence_stride]` (None: no targets). With `shuffle`,
    the windows are put in the order NumPy's RandomState(seed) shuffles their starts into, as
    Keras does; Keras's extra tf.data shuffle buffer is not reproduced (the dataset's order
    stays that one on every pass). Returns an ArrayDataset.

    Example:
        >>> import numpy as np, kilnet
        >>> data = np.arange(10)
        >>> ds = kilnet.utils.timeseries_dataset_from_array(data[:-3], data[3:], 3,
        ...                                                 batch_size=4)
        >>> x, y = ds[0]
        >>> x.tolist(), y.tolist()
        ([[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]], [3, 4, 5, 6])
    """
    data = _as_series(data, "data")
    targets = None if targets is None else _as_series(targets, "targets")
    start, end = _check_range(start_index, end_index, len(data))
    for name, value in (("sequence_length", sequence_length),
                        ("sampling_rate", sampling_rate), ("sequence_stride", sequence_stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"timeseries_dataset_from_array: {name} must be a positive "
                             f"integer. Received: {name}={value!r}")
    for name, value in (("sampling_rate", sampling_rate), ("sequence_stride", sequence_stride)):
        if value >= len(data):
            raise ValueError(f"timeseries_dataset_from_array: {name} must be lower than the "
                             f"length of data ({len(data)}). Received: {name}={value}")
    count = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        count = min(count, len(targets))
    positions = np.arange(0, max(count, 0), sequence_stride, dtype=np.int64)
    if shuffle:
        seed = np.random.randint(1e6) if seed is None else seed
        np.random.RandomState(seed).shuffle(positions)
    x = Windows(data, positions, start, sequence_length, sampling_rate)
    y = None if targets is None else Targets(targets, positions, start)
    return ArrayDataset(x, y, batch_size=batch_size)


def _as_series(values, name):
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        raise TypeError(f"timeseries_dataset_from_array: {name} must be an array with time "
                        f"on its first axis. Received: {name} of type {type(values).__name__}")
    return values if isinstance(values, np.ndarray) else np.asarray(values)


def _check_range(start_index, end_index, length):
    """Keras's checks on start_index and end_index; returns the [start, end) range."""
    start = start_index or 0
    if start_index is not None and not 0 <= start_index < length:
        raise ValueError("timeseries_dataset_from_array: start_index must be 0 or greater and "
                         f"lower than the length of data ({length}). "
                         f"Received: start_index={start_index}")
    if end_index is None:
        return start, length
    if not start < end_index < length:
        raise ValueError("timeseries_dataset_from_array: end_index must be higher than "
                         f"start_index ({start}) and lower than the length of data ({length}). "
                         f"Received: end_index={end_index}")
    return start, int(end_index)
