"""`fer-edge classify IMAGE...`: detect and classify the faces of still images, one JSON object per line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from device.classifier import EmotionClassifier, ModelError
from device.config import Settings
from device.contract import crop_face, to_gray
from device.exit_codes import EXIT_CONFIG, EXIT_OK, EXIT_SOURCE
from device.faces import DetectorError, build_detector
from device.pipeline import draw

log = logging.getLogger(__name__)


def classify_image(image: np.ndarray, detector, classifier: EmotionClassifier) -> list[dict]:
    """Faces of one `(H, W, 3)` uint8 BGR image: `bbox` `[x, y, w, h]` px, `emotion`, `confidence`, `scores`."""
    gray = to_gray(image)
    boxes = detector.detect(image, gray)
    if not boxes:
        return []
    probabilities = classifier.predict(np.stack([crop_face(gray, box) for box in boxes]))
    faces = []
    for box, probs in zip(boxes, probabilities, strict=True):
        best = int(np.argmax(probs))
        faces.append({"bbox": [int(v) for v in box], "emotion": classifier.labels[best],
                      "confidence": round(float(probs[best]), 4),
                      "scores": {label: round(float(p), 4) for label, p in zip(classifier.labels, probs, strict=True)}})
    return faces


def classify_images(settings: Settings, images: list[Path], annotate_dir: Path | None) -> int:
    """Print `{"image": ..., "faces": [...]}` per image; exit code 0, 2 (model/detector) or 3 (unreadable image)."""
    try:
        classifier = EmotionClassifier(settings.classifier.model, num_threads=settings.classifier.threads,
                                       use_edgetpu=settings.classifier.edgetpu, labels=settings.classifier.labels)
        detector = build_detector(settings.detector)
    except (ModelError, DetectorError) as err:
        log.error("%s", err)
        return EXIT_CONFIG
    status = EXIT_OK
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            log.error("%s: not a readable image", path)
            status = EXIT_SOURCE
            continue
        faces = classify_image(image, detector, classifier)
        for face in faces:  # only the chosen labels ([classifier] labels), already renormalised
            face["scores"] = {k: v for k, v in face["scores"].items() if k in classifier.active_labels}
        print(json.dumps({"image": str(path), "faces": faces}), flush=True)
        if annotate_dir is not None:
            annotate_dir.mkdir(parents=True, exist_ok=True)
            labels = [f"{f['emotion']} {f['confidence']:.0%}" for f in faces]
            cv2.imwrite(str(annotate_dir / path.name), draw(image, [tuple(f["bbox"]) for f in faces], labels))
    return status
