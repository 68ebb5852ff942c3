"""A training run for tests/test_checkpoint.py to kill, interrupt and resume.

    python tests/_resume_worker.py OUT.npz [--backup DIR] [--epochs N] [--save-freq K]
                                           [--pause SECONDS]
    python tests/_resume_worker.py --serve

--serve imports kilnet once, then for each JSON line on stdin (train()'s arguments) forks a
child process that trains (printing "child PID", then the child's lines, then "exit PID CODE",
CODE negative for a signal). The kill test kills those children: each is a real process, and
forking after the import (JAX's backend is not started yet) saves a second or two per run.

Trains a tiny model (Dense, Dropout, BatchNormalization, Dense; Adam; shuffled data; validation
data; EarlyStopping, whose state a checkpoint must carry) and writes the final weights to
OUT.npz. With --backup, a BackupAndRestore(DIR) callback is first in the list. Prints one line
"ready EPOCH STEP" when the first epoch begins (the position it resumed from), so the test knows
when the process is training. --pause sleeps at each chunk end so that kills land mid-training;
KILNET_TEST_WRITE_PAUSE makes checkpoint writers pause between files.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import time
import traceback

import numpy as np

import kilnet
from kilnet import layers

SAMPLES, FEATURES, CLASSES, BATCH = 60, 6, 3, 6


def data():
    rs = np.random.RandomState(0)
    x = rs.randn(SAMPLES + 12, FEATURES).astype(np.float32)
    y = (np.argmax(x[:, :CLASSES] + 0.5 * rs.randn(SAMPLES + 12, CLASSES), axis=1)).astype(np.int32)
    return (x[:SAMPLES], y[:SAMPLES]), (x[SAMPLES:], y[SAMPLES:])


def build(units=12, optimizer="adam"):
    kilnet.utils.set_random_seed(7)
    model = kilnet.Sequential([
        layers.Dense(units, activation="relu"),   # built by fit: no step costing at compile
        layers.Dropout(0.3),
        layers.BatchNormalization(),
        layers.Dense(CLASSES, activation="softmax"),
    ])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class Ready(kilnet.callbacks.Callback):
    def __init__(self, pause):
        super().__init__()
        self.pause = pause

    def on_train_begin(self, logs=None):
        self.point = self.model.compiled.resume_point or (0, 0)

    def on_epoch_begin(self, epoch, logs=None):
        if self.point is not None:   # fit's signal handlers are installed by now
            print(f"ready {self.point[0]} {self.point[1]}", flush=True)
            self.point = None

    def on_train_batch_end(self, batch, logs=None):
        if self.pause:
            time.sleep(self.pause)


def train(out, backup=None, epochs=4, save_freq=3, pause=0.0, keep=2, write_pause=None):
    if write_pause is not None:   # seconds checkpoint writers pause between files
        os.environ["KILNET_TEST_WRITE_PAUSE"] = str(write_pause)
    (x, y), val = data()
    model = build()
    callbacks = [kilnet.callbacks.EarlyStopping(monitor="val_loss", patience=50), Ready(pause)]
    if backup:
        callbacks.insert(0, kilnet.callbacks.BackupAndRestore(backup, save_freq=save_freq,
                                                              keep=keep))
    model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_data=val, shuffle=True,
              verbose=0, callbacks=callbacks)
    tmp = out + ".tmp.npz"
    np.savez(tmp, *model.get_weights())
    os.replace(tmp, out)
    return model


def serve():
    print("serving", flush=True)
    for line in sys.stdin:
        kwargs = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:   # the child: train, then leave without running the parent's cleanup
            faulthandler.dump_traceback_later(40, exit=True)   # a hung child shows where
            code = 0
            try:
                train(**kwargs)
                print("done", flush=True)
            except SystemExit as error:   # TrainingInterrupted: 130 / 143
                code = error.code if isinstance(error.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        print(f"child {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


def main(argv=None):
    if argv is None and sys.argv[1:] == ["--serve"]:
        return serve()
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--backup")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--save-freq", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args(argv)
    train(args.out, args.backup, args.epochs, args.save_freq, args.pause)
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
