"""fer-edge device side: the model contract, the int8 emotion classifier and the daemon (no TensorFlow)."""

import os

MAX_IMAGE_PIXELS = 50_000_000
"""Largest still image decoded (width x height, px): 50 MP is about 150 MB as BGR. Bigger ones are refused with
a clear error (exit code 3) before decoding; see `device.sources.read_image`."""

# OpenCV reads this once, when cv2 is first imported: it bounds the memory of decoding any format, also those
# whose header `read_image` does not parse itself. An operator's own value is kept.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
