"""The model contract: the one place that says what the classifier was trained on and expects.

`training/`, `convert/` and `device/` all import this module, so the label order, input size,
normalisation and face-crop rule used at training time are exactly the ones used on the device.

Label order is FER2013's (Goodfellow et al., "Challenges in Representation Learning", ICML 2013
workshop): 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral.
"""

from __future__ import annotations

import numpy as np

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(LABELS)

INPUT_SIZE = 48  # px; FER2013 images are 48x48 grayscale
INPUT_SHAPE: tuple[int, int, int] = (INPUT_SIZE, INPUT_SIZE, 1)

# Fraction of the detector's box size added on every side before the square crop. FER2013 faces
# were registered with some forehead and chin in view; OpenCV's frontal Haar box is tighter.
CROP_MARGIN = 0.10

PREPROCESSING = {
    "color": "grayscale (OpenCV BGR2GRAY weights)",
    "crop": f"square around the face box centre, side max(w, h) * (1 + 2 * {CROP_MARGIN}), "
    "edges replicated where the square leaves the frame",
    "resize": f"{INPUT_SIZE}x{INPUT_SIZE}, cv2.INTER_AREA",
    "normalisation": "float32 = uint8 / 255.0, range [0, 1]",
    "labels": list(LABELS),
}


def normalize(images: np.ndarray) -> np.ndarray:
    """Map uint8 pixels to the float model's input range.

    Args:
        images: `(..., 48, 48)` or `(..., 48, 48, 1)` uint8 grayscale faces.

    Returns:
        The same shape as float32 in [0, 1] (`pixel / 255`).

    Raises:
        TypeError: if `images` is not uint8 (a float array here is almost always a double
            normalisation bug).
    """
    if images.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {images.dtype}")
    return images.astype(np.float32) / np.float32(255.0)


def as_model_batch(faces: np.ndarray) -> np.ndarray:
    """Check face crops and give them the model's `(N, 48, 48, 1)` uint8 layout.

    Args:
        faces: `(N, 48, 48)` or `(N, 48, 48, 1)` uint8 face crops.

    Raises:
        ValueError: on any other shape or dtype.
    """
    faces = np.asarray(faces)
    if faces.dtype != np.uint8:
        raise ValueError(f"face crops must be uint8, got {faces.dtype}")
    if faces.ndim == 3:
        faces = faces[..., np.newaxis]
    if faces.ndim != 4 or faces.shape[1:] != INPUT_SHAPE:
        raise ValueError(f"face crops must be (N, 48, 48) or (N, 48, 48, 1), got {faces.shape}")
    return faces


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Convert an OpenCV frame to grayscale.

    Args:
        frame: `(H, W, 3)` uint8 BGR (OpenCV's order), `(H, W, 4)` BGRA, or `(H, W)` gray.

    Returns:
        `(H, W)` uint8 grayscale.
    """
    import cv2  # lazy: keeps the label/normalisation parts importable without OpenCV

    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[..., 0]
    raise ValueError(f"unsupported frame shape {frame.shape}")


def crop_square(box: tuple[int, int, int, int], margin: float = CROP_MARGIN) -> tuple[int, int, int]:
    """The square crop window for a face box: `(x0, y0, side)` in frame px (may leave the frame).

    Args:
        box: `(x, y, w, h)` face box in frame pixels, as OpenCV detectors return it.
        margin: fraction of the box size added on every side.

    Raises:
        ValueError: if the box has a non-positive width or height.
    """
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"face box must have positive size, got {box}")
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    side_px = max(1, int(round(side)))
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side_px


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float = CROP_MARGIN) -> np.ndarray:
    """Apply the crop rule: face box in a frame -> the model's `(48, 48)` uint8 input.

    Args:
        gray: `(H, W)` uint8 grayscale frame (see `to_gray`).
        box: `(x, y, w, h)` face box in frame pixels.
        margin: fraction of the box size added on every side (default `CROP_MARGIN`).

    Returns:
        `(48, 48)` uint8 face crop, resized with `cv2.INTER_AREA`.
    """
    import cv2

    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"crop_face expects a (H, W) uint8 gray frame, got {gray.shape} {gray.dtype}")
    x0, y0, side = crop_square(box, margin)
    height, width = gray.shape
    # Pad by edge replication where the square leaves the frame, so faces at the border keep
    # their aspect ratio instead of being stretched.
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + side - width), max(0, y0 + side - height)
    window = gray[max(0, y0) : min(height, y0 + side), max(0, x0) : min(width, x0 + side)]
    if pad_l or pad_t or pad_r or pad_b:
        window = cv2.copyMakeBorder(window, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if side >= INPUT_SIZE else cv2.INTER_LINEAR
    return cv2.resize(window, (INPUT_SIZE, INPUT_SIZE), interpolation=interpolation)
