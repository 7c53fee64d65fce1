"""Measure how FER2013 registered its faces, so the device can register faces the same way.

FER2013's 48x48 faces were cropped and registered by its authors (Goodfellow et al., 2013): eyes and mouth
sit at nearly fixed positions. This script runs the device's own detectors on FER2013 Training images (each
upscaled and padded so that a detector can see it) and writes `device/models/registration.json`:

- `landmarks`: the median position in the 48x48 frame of YuNet's five landmarks (right eye, left eye, nose
  tip, right and left mouth corner, as seen in the image), with their spread (interquartile range, px). The
  device maps a face's five landmarks onto this template with a similarity transform.
- `haar_box`: the Haar box -> FER2013 frame rule for the fallback detector: the 48x48 frame's side as a
  multiple of the box side and its centre offset in box sides (medians over the faces Haar found).
- `jitter`: how far the device's alignment of one face moves when the same face is detected again at another
  scale and position (rotation deg, scale ratio, shift px at 48x48; 95th percentiles). The training
  augmentation covers this range, so the model is trained on the variation the device produces.
- `fer2013_spread`: the similarity transform from each face's landmarks to the template (rotation, scale,
  shift; 5th-95th percentiles): how much FER2013's own registration varies.
- the counts of images each detector found, and the command that wrote the file.

    python training/registration.py                      # all 28,709 Training images, a few minutes
    python training/registration.py --limit 2000 --out /tmp/registration.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/registration.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from device import contract as reg  # noqa: E402
from device.faces import DEFAULT_YUNET, HaarFaceDetector, YuNetFaceDetector  # noqa: E402
from training import data  # noqa: E402

log = logging.getLogger("registration")

# Two views of every face, as a camera would give them: another scale and another position in the frame.
VIEWS = ({"upscale": 4.0, "pad": (48, 48)}, {"upscale": 3.0, "pad": (60, 84)})
FRAME = 288  # px, the side of each padded view


def place(image: np.ndarray, upscale: float, pad: tuple[int, int]) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Put a `(48, 48)` uint8 face into a `(288, 288, 3)` uint8 BGR frame, upscaled and padded.

    Returns:
        `(frame, scale, (left, top))`: frame px = face px * scale + offset.
    """
    side = int(round(image.shape[0] * upscale))
    big = cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)
    left, top = pad
    fill = int(image.mean())
    frame = cv2.copyMakeBorder(big, top, FRAME - side - top, left, FRAME - side - left, cv2.BORDER_CONSTANT,
                               value=fill)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), side / image.shape[0], (left, top)


def measure(images: np.ndarray, yunet: YuNetFaceDetector, haar: HaarFaceDetector) -> dict:
    """Landmarks, Haar boxes and pairs of landmarks (two views) for `(N, 48, 48, 1) uint8` faces (48x48 frame px)."""
    landmarks, view_pairs, haar_rules = [], [], []
    for image in images[..., 0]:
        views = []
        placed = [place(image, **view) for view in VIEWS]
        for frame, scale, (left, top) in placed:
            faces = yunet.detect_faces(frame)
            if faces:
                views.append((faces[0].landmarks - (left, top)) / scale)
        if views:
            landmarks.append(views[0])
        if len(views) == 2:
            view_pairs.append(views)
        frame, scale, (left, top) = placed[0]  # Haar sees the first view
        boxes = haar.detect(frame, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        if boxes:
            x, y, w, h = boxes[0].box
            side = max(w, h)
            # The 48x48 frame's side in box sides, and its centre's offset from the box centre in box sides.
            centre = np.array([left + 24 * scale, top + 24 * scale])
            box_centre = np.array([x + w / 2, y + h / 2])
            haar_rules.append([48 * scale / side, *((centre - box_centre) / side)])
    return {"landmarks": np.array(landmarks), "view_pairs": view_pairs, "haar": np.array(haar_rules)}


def realignment(first: np.ndarray, second: np.ndarray, template: np.ndarray) -> tuple[float, float, float, float]:
    """How the aligned 48x48 face moves between two detections of one face: the similarity parameters of
    `second`'s alignment after undoing `first`'s (identity when both found the same landmarks)."""
    a = reg.alignment_transform(first, template)
    b = reg.alignment_transform(second, template)
    relative = np.vstack([b, [0, 0, 1]]) @ np.vstack([cv2.invertAffineTransform(a), [0, 0, 1]])
    rotation, scale, dx, dy = reg.similarity_parameters(relative[:2])
    return rotation, np.log(scale), dx, dy


def summarise(found: dict, count: int, command: str) -> dict:
    """The `registration.json` content from `measure`'s arrays."""
    points = found["landmarks"]
    template = np.median(points, axis=0)
    q25, q75 = np.percentile(points, [25, 75], axis=0)
    spread = np.array([reg.similarity_parameters(reg.alignment_transform(p, template)) for p in points])
    jitter = np.abs(np.array([realignment(a, b, template) for a, b in found["view_pairs"]]))
    haar = found["haar"]
    return {
        "source": "FER2013 Training (Goodfellow et al., 2013), each face upscaled and padded into a 288x288 frame",
        "command": command,
        "images": count,
        "yunet": {"found": int(len(points)), "found_both_views": int(len(jitter)),
                  "model": reg.YUNET_FILE, "score_threshold": reg.MEASURE_SCORE_THRESHOLD},
        "landmarks": {
            "names": list(reg.LANDMARK_NAMES),
            "median_px": np.round(template, 3).tolist(),
            "iqr_px": np.round(q75 - q25, 3).tolist(),
        },
        "fer2013_spread": _percentiles(spread, (5, 95), ("rotation_deg", "scale", "shift_x_px", "shift_y_px")),
        "jitter": _percentiles(jitter, (50, 95), ("rotation_deg", "abs_log_scale", "shift_x_px", "shift_y_px")),
        "haar_box": {
            "found": int(len(haar)),
            "frame_side_in_box_sides": round(float(np.median(haar[:, 0])), 4),
            "centre_offset_in_box_sides": np.round(np.median(haar[:, 1:], axis=0), 4).tolist(),
            "frame_side_iqr": np.round(np.percentile(haar[:, 0], [25, 75]), 4).tolist(),
        },
    }


def _percentiles(values: np.ndarray, which: tuple[int, int], names: tuple[str, ...]) -> dict:
    table = np.percentile(values, which, axis=0)
    return {name: {f"p{p}": round(float(table[i, k]), 4) for i, p in enumerate(which)} for k, name in enumerate(names)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--data", default=None, help="FER2013 folder (default: $FER2013_DIR or ../shared/...)")
    parser.add_argument("--limit", type=int, default=None, help="a stratified sample of about N images")
    parser.add_argument("--out", default=str(reg.REGISTRATION_FILE), help="where to write registration.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = Path(args.data) if args.data else data.default_root()
    try:
        train = data.limit(data.load(root, "Training"), args.limit)
    except (OSError, ValueError) as err:
        log.error("%s", err)
        return 2
    yunet = YuNetFaceDetector(DEFAULT_YUNET, score_threshold=reg.MEASURE_SCORE_THRESHOLD, detect_width=FRAME)
    haar = HaarFaceDetector(detect_width=FRAME, min_face_px=48)
    started = time.monotonic()
    found = measure(train.images, yunet, haar)
    command = "python training/registration.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    result = summarise(found, len(train), command)
    result["seconds"] = round(time.monotonic() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    log.info("YuNet found %d of %d, Haar %d; wrote %s", result["yunet"]["found"], len(train),
             result["haar_box"]["found"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
