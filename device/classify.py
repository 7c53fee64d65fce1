"""`fer-edge classify IMAGE...`: detect and classify the faces of still images, one JSON object per line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from device.classifier import EmotionClassifier, ModelError
from device.config import Settings
from device.contract import INPUT_SIZE, to_gray
from device.exit_codes import EXIT_CONFIG, EXIT_OK, EXIT_SOURCE
from device.faces import DetectorError, Face
from device.pipeline import draw
from device.recognition import FaceLimit, build_stages, recognise
from device.sources import SourceError, read_image

log = logging.getLogger(__name__)


def classify_image(image: np.ndarray, detector, classifier: EmotionClassifier, limit: FaceLimit) -> list[dict]:
    """Faces of one `(H, W, 3)` uint8 BGR image: `bbox` `[x, y, w, h]` px, `emotion`, `confidence`, `scores`.

    With `detector` None, the whole image is one face already framed like FER2013 (`fer-edge classify --face`).
    """
    gray = to_gray(image)
    if detector is None:
        height, width = gray.shape
        found = [Face((0, 0, width, height))]
        face = cv2.resize(gray, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        probabilities = classifier.predict(face[np.newaxis])
    else:
        found, probabilities = recognise(image, gray, detector, classifier, limit)
    faces = []
    for box, probs in zip((face.box for face in found), probabilities, strict=True):
        best = int(np.argmax(probs))
        faces.append({"bbox": [int(v) for v in box], "emotion": classifier.labels[best],
                      "confidence": round(float(probs[best]), 4),
                      "scores": {label: round(float(p), 4) for label, p in zip(classifier.labels, probs, strict=True)}})
    return faces


def classify_images(settings: Settings, images: list[Path], annotate_dir: Path | None, whole_face: bool = False) -> int:
    """Print `{"image": ..., "faces": [...]}` per image; exit code 0, 2 (model/detector) or 3 (an image that is
    unreadable or larger than `device.MAX_IMAGE_PIXELS`; the others are still classified).

    With `whole_face`, every image is one face crop framed like FER2013: no detection.
    """
    try:
        detector, classifier = build_stages(settings)
        detector = None if whole_face else detector
        limit = FaceLimit(settings.detector.max_faces)
    except (ModelError, DetectorError) as err:
        log.error("%s", err)
        return EXIT_CONFIG
    status = EXIT_OK
    for path in images:
        try:
            image = read_image(path)
        except SourceError as err:  # unreadable, or above device.MAX_IMAGE_PIXELS
            log.error("%s", err)
            status = EXIT_SOURCE
            continue
        faces = classify_image(image, detector, classifier, limit)
        for face in faces:  # only the chosen labels ([classifier] labels), already renormalised
            face["scores"] = {k: v for k, v in face["scores"].items() if k in classifier.active_labels}
        print(json.dumps({"image": str(path), "faces": faces}), flush=True)
        if annotate_dir is not None:
            annotate_dir.mkdir(parents=True, exist_ok=True)
            labels = [f"{f['emotion']} {f['confidence']:.0%}" for f in faces]
            cv2.imwrite(str(annotate_dir / path.name), draw(image, [tuple(f["bbox"]) for f in faces], labels))
    return status
