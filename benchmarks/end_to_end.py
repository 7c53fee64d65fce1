"""The accuracy a user gets: FER2013 faces through the device's real path (detector -> registration -> int8).

Each PublicTest/PrivateTest face is upscaled 2-4x (cubic) and placed at a random position in a 640x480
frame of blurred grey noise; the frame goes through `device.faces` (YuNet, or Haar as the fallback) and
`device.recognition.register_face` to the int8 classifier, exactly as in the daemon. A face counts as found
when a detection overlaps the placed face (IoU >= 0.3; YuNet also needs its score >= the threshold).
Accuracy on the faces found is compared with classifying the same faces' original 48x48 images directly.

`jitter_robustness` measures how much the model loses when the registration moves as much as the device's
alignment was measured to move (`device/models/registration.json`, `jitter`: the 95th percentiles taken as
1.96 sigma of a normal distribution).

    python benchmarks/end_to_end.py --limit 700     # prints the JSON; benchmarks/run.py puts it in its report
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/end_to_end.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from device import contract  # noqa: E402
from device.classifier import EmotionClassifier  # noqa: E402
from device.config import DEFAULT_MODEL, DetectorSettings  # noqa: E402
from device.faces import build_detector, iou  # noqa: E402
from device.recognition import register_face  # noqa: E402
from training import data  # noqa: E402

FRAME = (640, 480)  # px, width x height
SCORE_THRESHOLDS = (0.5, 0.6, 0.7)
MATCH_IOU = 0.3


def place(face: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A `(480, 640, 3) uint8` BGR frame holding the `(48, 48) uint8` face upscaled 2-4x, and its box."""
    side = int(round(48 * rng.uniform(2.0, 4.0)))
    noise = rng.normal(float(face.mean()), 25.0, (FRAME[1], FRAME[0])).astype(np.float32)
    frame = np.clip(cv2.GaussianBlur(noise, (0, 0), 8.0), 0, 255).astype(np.uint8)
    x, y = int(rng.integers(0, FRAME[0] - side)), int(rng.integers(0, FRAME[1] - side))
    frame[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), (x, y, side, side)


def end_to_end(classifier: EmotionClassifier, split: data.Split, kind: str, seed: int = 0) -> dict:
    """Found rate and accuracy of the device path against direct classification, for one detector kind.

    Returns:
        `{"detector", "faces", "thresholds": {t: {"found", "found_rate", "accuracy_found",
        "direct_accuracy_found", "loss_points"}}, "direct_accuracy_all"}` (YuNet: one entry per score
        threshold; Haar: one entry, key "-").
    """
    settings = DetectorSettings(kind=kind, full_frame_every=1, score_threshold=min(SCORE_THRESHOLDS))
    detector = build_detector(settings)
    rng = np.random.default_rng(seed)
    scores = np.full(len(split), -1.0)  # the best-matching detection's score, -1 where none matched
    registered = np.zeros((len(split), 48, 48), np.uint8)
    for i, face in enumerate(split.images[..., 0]):
        frame, truth = place(face, rng)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        matches = [f for f in detector.detect(frame, gray) if iou(f.box, truth) >= MATCH_IOU]
        if matches:
            best = max(matches, key=lambda f: iou(f.box, truth))
            scores[i] = best.score
            registered[i] = register_face(gray, best)
    direct = np.argmax(classifier.predict(split.images), axis=1) == split.labels
    through = np.argmax(classifier.predict(registered), axis=1) == split.labels
    thresholds = SCORE_THRESHOLDS if kind == "yunet" else ("-",)
    table = {}
    for threshold in thresholds:
        found = scores >= (threshold if threshold != "-" else 0.0)
        count = int(found.sum())
        table[str(threshold)] = {
            "found": count, "found_rate": round(count / len(split), 4),
            "accuracy_found": round(float(through[found].mean()), 4) if count else None,
            "direct_accuracy_found": round(float(direct[found].mean()), 4) if count else None,
            "loss_points": round(100 * float(direct[found].mean() - through[found].mean()), 2) if count else None,
        }
    return {"detector": kind, "faces": len(split), "thresholds": table,
            "direct_accuracy_all": round(float(direct.mean()), 4)}


def jitter_robustness(classifier: EmotionClassifier, split: data.Split, seed: int = 0) -> dict:
    """Accuracy on clean faces and on faces moved by the device's measured alignment jitter.

    Returns:
        `{"faces", "jitter_sigma", "clean_accuracy", "jittered_accuracy", "loss_points"}`.
    """
    jitter = contract.registration()["jitter"]
    sigma = {k: v["p95"] / 1.96 for k, v in jitter.items()}
    rng = np.random.default_rng(seed)
    moved = np.empty_like(split.images[..., 0])
    for i, face in enumerate(split.images[..., 0]):
        centre = (24.0 + rng.normal(0, sigma["shift_x_px"]), 24.0 + rng.normal(0, sigma["shift_y_px"]))
        matrix = contract.view_matrix(rng.normal(0, sigma["rotation_deg"]), rng.normal(0, sigma["abs_log_scale"]),
                                      centre, 48)
        moved[i] = cv2.warpAffine(face, matrix, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    clean = float((np.argmax(classifier.predict(split.images), axis=1) == split.labels).mean())
    jittered = float((np.argmax(classifier.predict(moved), axis=1) == split.labels).mean())
    return {"faces": len(split), "jitter_sigma": {k: round(v, 4) for k, v in sigma.items()},
            "clean_accuracy": round(clean, 4), "jittered_accuracy": round(jittered, 4),
            "loss_points": round(100 * (clean - jittered), 2)}


def measure(model: Path, root: Path, limit: int | None) -> dict:
    """Both detectors on PublicTest and PrivateTest, and the jitter robustness on PublicTest."""
    classifier = EmotionClassifier(model)
    report: dict = {"model": str(model), "frame_px": list(FRAME), "match_iou": MATCH_IOU}
    for split_name in ("PublicTest", "PrivateTest"):
        split = data.limit(data.load(root, split_name), limit)
        report[split_name] = {kind: end_to_end(classifier, split, kind) for kind in ("yunet", "haar")}
    report["jitter_PublicTest"] = jitter_robustness(classifier, data.limit(data.load(root, "PublicTest"), limit))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=None, help="FER2013 folder (default $FER2013_DIR or ../shared)")
    parser.add_argument("--limit", type=int, default=None, help="faces per split (stratified); default all")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.data or data.default_root(), args.limit), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
