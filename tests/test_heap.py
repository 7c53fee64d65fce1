"""glibc heap thresholds restored during a real `fit` on a `PyDataset` (training/heap.py), checked with glibc's
own `mallinfo2` in a fresh process, whose heap no earlier test has grown or fragmented."""

import ctypes
import platform

import numpy as np
import pytest

from tests.conftest import run_script
from training.heap import c_library

BUFFER_BYTES = 4 * 1024 * 1024  # the size of a batch's activations


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (<malloc.h>, glibc >= 2.33)."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def glibc():
    lib = c_library()
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


def fit_and_report(restore: bool) -> None:
    """In a fresh process: fit a tiny net on a two-batch `PyDataset` (fed by TensorFlow's from_generator, which
    sets M_TRIM_THRESHOLD) with or without `HeapThresholds`, then print whether a 4 MB buffer is mmapped."""
    import keras

    from training.heap import HeapThresholds
    from training.model import build_model

    class TwoBatches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int):
            rng = np.random.default_rng(index)
            return rng.random((8, 40, 40, 1), dtype=np.float32), keras.utils.to_categorical(rng.integers(0, 7, 8), 7)

    model = build_model((8, 16), input_size=None)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.fit(TwoBatches(), epochs=2, verbose=0, callbacks=[HeapThresholds()] if restore else [])
    print("mapped" if is_mapped(glibc(), BUFFER_BYTES) else "heap")


def fit_in_fresh_process(restore: bool) -> str:
    result = run_script("-c", f"from tests.test_heap import fit_and_report; fit_and_report({restore})", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def linux_glibc():
    if platform.system() != "Linux":
        pytest.skip("glibc's mallopt and mallinfo2 are Linux's")
    try:
        glibc()
    except (OSError, AttributeError):
        pytest.skip("this C library has no mallinfo2 (glibc >= 2.33)")


def test_generator_setting_maps_batch_buffers_and_the_callback_undoes_it(linux_glibc):
    assert fit_in_fresh_process(restore=False) == "mapped", "TensorFlow's setting maps a 4 MB buffer"
    assert fit_in_fresh_process(restore=True) == "heap", "with HeapThresholds it comes from the heap"
