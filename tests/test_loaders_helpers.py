"""A PyDataset for the process-pool test of test_loaders.py: in a module of its own, light to
import, since each spawned worker imports it to unpickle the dataset. It holds no tests."""

import numpy as np

from kilnet.loaders import PyDataset

BATCH = 8


class Picklable(PyDataset):
    """Batches of BATCH rows of (x, y); picklable, defined at module level."""

    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = np.asarray(x), np.asarray(y)

    def __len__(self):
        return -(-len(self.x) // BATCH)

    def __getitem__(self, i):
        return self.x[i * BATCH:(i + 1) * BATCH], self.y[i * BATCH:(i + 1) * BATCH]
