"""glibc heap thresholds restored during a real `fit` (training/heap.py), checked with glibc's own `mallinfo2`."""

import ctypes
import ctypes.util
import platform

import numpy as np
import pytest

from training.heap import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, HeapThresholds

BUFFER_BYTES = 4 * 1024 * 1024  # the size of a batch's activations


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (<malloc.h>, glibc >= 2.33)."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@pytest.fixture
def libc():
    if platform.system() != "Linux":
        pytest.skip("glibc's mallopt and mallinfo2 are Linux's")
    lib = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(lib, "mallinfo2"):
        pytest.skip("this C library has no mallinfo2 (glibc >= 2.33)")
    lib.mallinfo2.restype = MallInfo2
    lib.malloc.restype, lib.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    lib.free.argtypes = [ctypes.c_void_p]
    return lib


def is_mapped(libc, size: int) -> bool:
    """Whether glibc serves a `size`-byte allocation with its own mmap (what costs page faults per step)."""
    before = libc.mallinfo2().hblks
    pointer = libc.malloc(size)
    mapped = libc.mallinfo2().hblks > before
    libc.free(pointer)
    return mapped


def test_fit_restores_heap_thresholds_after_the_generator_setting(libc):
    import keras

    from training.model import build_model

    class TwoBatches(keras.utils.PyDataset):  # Keras feeds a PyDataset through tf.data's from_generator
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int):
            rng = np.random.default_rng(index)
            return rng.random((8, 40, 40, 1), dtype=np.float32), keras.utils.to_categorical(rng.integers(0, 7, 8), 7)

    # the state TensorFlow's GeneratorDatasetOp leaves: trim at 128 kB, so the mmap threshold stays at its
    # 128 kB start (set here too, in case an earlier test in this process raised it)
    libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)
    assert is_mapped(libc, BUFFER_BYTES), "with TensorFlow's setting a 4 MB buffer is mmapped"
    model = build_model((8, 16), input_size=None)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    thresholds = HeapThresholds()
    model.fit(TwoBatches(), epochs=1, verbose=0, callbacks=[thresholds])
    assert thresholds.restored
    assert not is_mapped(libc, BUFFER_BYTES), "after the first batch a 4 MB buffer comes from the heap"
