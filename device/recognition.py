"""The one detect -> register -> classify step that the daemon (`pipeline.py`) and `fer-edge classify` share.

Registration follows the model contract (`device.contract`): a face with landmarks (YuNet) is aligned onto
the FER2013 landmark template; a face with a box only (Haar) is cropped by the box rule measured on FER2013.
"""

from __future__ import annotations

import logging

import numpy as np

from device.classifier import EmotionClassifier
from device.contract import NUM_CLASSES, align_face, crop_face
from device.faces import Face, FaceDetector, build_detector

log = logging.getLogger(__name__)


class FaceLimit:
    """Keeps the `max_faces` largest faces of a frame (detectors return them largest first), counts the
    ones dropped, and says so in the log once."""

    def __init__(self, max_faces: int) -> None:
        self.max_faces = max_faces
        self.dropped = 0

    def __call__(self, faces: list[Face]) -> list[Face]:
        if len(faces) <= self.max_faces:
            return faces
        if not self.dropped:
            log.warning("%d faces in one frame: only the %d largest are classified (detector.max_faces); "
                        "the number dropped is counted in stats", len(faces), self.max_faces)
        self.dropped += len(faces) - self.max_faces
        return faces[: self.max_faces]


def register_face(gray: np.ndarray, face: Face) -> np.ndarray:
    """The model's `(48, 48) uint8` input for one face of a `(H, W) uint8` gray frame."""
    if face.landmarks is not None:
        return align_face(gray, face.landmarks)
    return crop_face(gray, face.box)


def classify_faces(gray: np.ndarray, faces: list[Face], classifier: EmotionClassifier) -> np.ndarray:
    """`(len(faces), 7) float32` probabilities (`(0, 7)` for no face), in `device.contract.LABELS` order."""
    if not faces:
        return np.zeros((0, NUM_CLASSES), np.float32)
    return classifier.predict(np.stack([register_face(gray, face) for face in faces]))


def recognise(image: np.ndarray, gray: np.ndarray, detector: FaceDetector, classifier: EmotionClassifier,
              limit: FaceLimit) -> tuple[list[Face], np.ndarray]:
    """Faces of one `(H, W, 3)` uint8 BGR frame (gray: its `(H, W)` uint8 version), at most `limit.max_faces`,
    and their `(N, 7) float32` probabilities."""
    faces = limit(detector.detect(image, gray))
    return faces, classify_faces(gray, faces, classifier)


def build_stages(settings) -> tuple[FaceDetector, EmotionClassifier]:
    """The detector and the classifier a `device.config.Settings` asks for.

    Raises:
        device.faces.DetectorError: the face detector cannot be loaded.
        device.classifier.ModelError: the emotion model cannot be loaded.
    """
    classifier = EmotionClassifier(settings.classifier.model, num_threads=settings.classifier.threads,
                                   use_edgetpu=settings.classifier.edgetpu, labels=settings.classifier.labels,
                                   tta=settings.classifier.tta, prior=settings.classifier.prior)
    return build_detector(settings.detector), classifier
