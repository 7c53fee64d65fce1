"""Measure training throughput (images/s of a full training step) for candidate architectures.

Picks the architecture by expected accuracy per CPU-hour: a training step (forward, backward, optimizer
update) on random `(batch, size, size, 1)` inputs, timed after warm-up, on whatever Keras backend is
selected (`KERAS_BACKEND`). Results are appended to `--out` as JSON lines.

    python training/throughput.py --widths 32,64,128,256 --size 48 --out runs/throughput.jsonl
    KERAS_BACKEND=torch python training/throughput.py --widths 32,64,128,256 --size 40
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def measure(widths: tuple[int, ...], convs_per_block: int, size: int, batch: int, steps: int) -> dict:
    """Images per second of `steps` training steps after 3 warm-up steps.

    Returns:
        `{"backend", "widths", "convs_per_block", "size", "batch", "parameters", "images_per_s",
        "s_per_fer2013_epoch"}` (28,709 Training images per epoch). The epoch figure is training steps
        alone: a real epoch adds augmentation, PublicTest validation and, where a recipe asks for it, the
        EMA's BatchNormalization recalibration (a run's `checkpoint.json` records its whole epochs).
    """
    import keras

    from training.model import build_model

    model = build_model(widths, convs_per_block, input_size=size)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    rng = np.random.default_rng(0)
    x = rng.random((batch * (steps + 3), size, size, 1), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 7, len(x)), 7)
    for step in range(3):  # warm-up: tracing, allocation
        model.train_on_batch(x[step * batch : (step + 1) * batch], y[step * batch : (step + 1) * batch])
    started = time.perf_counter()
    for step in range(3, steps + 3):
        model.train_on_batch(x[step * batch : (step + 1) * batch], y[step * batch : (step + 1) * batch])
    rate = batch * steps / (time.perf_counter() - started)
    return {"backend": keras.backend.backend(), "widths": list(widths), "convs_per_block": convs_per_block,
            "size": size, "batch": batch, "parameters": int(model.count_params()),
            "images_per_s": round(rate, 1), "s_per_fer2013_epoch": round(28709 / rate, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--widths", default="32,64,128,256", help="channels per block (comma-separated)")
    parser.add_argument("--convs-per-block", type=int, default=2)
    parser.add_argument("--size", type=int, default=48, help="training input side, px")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default=None, help="append the result as one JSON line to this file")
    args = parser.parse_args(argv)
    widths = tuple(int(v) for v in args.widths.split(","))
    result = measure(widths, args.convs_per_block, args.size, args.batch, args.steps)
    line = json.dumps(result)
    print(line)
    if args.out:
        with Path(args.out).open("a") as handle:
            handle.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
