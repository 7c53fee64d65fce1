"""Undo TensorFlow's heap setting that doubles a training step's time on a 2-core CPU.

TensorFlow's `GeneratorDatasetOp` (`tensorflow/core/kernels/data/generator_dataset_op.cc`, the op behind
`tf.data.Dataset.from_generator`, which Keras uses for a `PyDataset` such as `training.augment.AugmentedFaces`)
calls glibc's `mallopt(M_TRIM_THRESHOLD, 128 kB)` once per process, to bound memory growth. Setting any
threshold turns off glibc's dynamic mmap threshold (`man 3 mallopt`), so every buffer of 128 kB or more (a
batch's activations are several MB) is mapped and unmapped, its pages faulted in again, at every step. On the
2-core machine of 2026-12-07, train.py's first epoch took 1.9x what `training/throughput.py` predicts from bare
steps without this (757 s against 400 s, widths 48-384) and 1.15x with it (275 s against 238 s, the shipped
widths; the epoch includes validation and the checkpoint). The numbers a run computes are the same either way
(a 3-epoch run's history.csv was identical with and without it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import keras

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
# glibc's own ceilings for its dynamic thresholds on 64-bit hosts (DEFAULT_MMAP_THRESHOLD_MAX, and the trim
# threshold it keeps at twice the mmap threshold)
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES


def c_library() -> ctypes.CDLL:
    """The process's C library (glibc on Linux), loaded by name.

    Raises:
        OSError: it cannot be found or loaded.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        raise OSError("no C library found")
    return ctypes.CDLL(name)


def restore_heap_thresholds() -> bool:
    """Set glibc's mmap and trim thresholds to the ceilings its dynamic rule would reach.

    Returns:
        True where both were set; False where the C library is not glibc (no `mallopt`, e.g. macOS) or
        refused them: nothing changes there.
    """
    try:
        mallopt = c_library().mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


class HeapThresholds(keras.callbacks.Callback):
    """Restore glibc's heap thresholds (`restore_heap_thresholds`) after a run's first training batch, by
    which time the generator op has made its setting (it is made once per process, when the op first runs,
    after `on_train_begin`)."""

    def __init__(self) -> None:
        super().__init__()
        self.restored = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self.restored:
            self.restored = True
            if restore_heap_thresholds():
                log.info("glibc heap thresholds restored: mmap %d MiB, trim %d MiB",
                         MMAP_THRESHOLD_BYTES >> 20, TRIM_THRESHOLD_BYTES >> 20)
