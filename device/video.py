"""Annotated videos (`--annotate` / `[service] annotate`) in a format chosen by the file's extension.

    .webm  VP8 (OpenCV fourcc `VP80`): plays in every current browser; the safe choice
    .mp4   H.264 (`avc1`) where OpenCV's FFmpeg has an H.264 encoder, else MPEG-4 part 2 (`mp4v`), which
           browsers do not play (a warning says so). The opencv-python(-headless) wheels on PyPI have no
           software H.264 encoder; on a Pi, FFmpeg may use the V4L2 hardware encoder.
    .avi   Motion JPEG (`MJPG`): large, plays in VLC/ffplay, not in browsers
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2

from device.config import ConfigError
from device.native_log import stderr_to_log

log = logging.getLogger(__name__)

CODECS: dict[str, tuple[str, ...]] = {".webm": ("VP80",), ".mp4": ("avc1", "mp4v"), ".avi": ("MJPG",)}
BROWSER_CODECS = {"VP80", "avc1"}


def check_video_path(path: Path) -> None:
    """Fail at start, not at the first frame, on an extension without a codec.

    Raises:
        ConfigError: an unsupported extension (names the file and the allowed ones).
    """
    if path.suffix.lower() not in CODECS:
        raise ConfigError(f"service.annotate: {path}: unsupported video type {path.suffix!r}; "
                          f"use one of {', '.join(CODECS)} (.webm plays in every browser)")


def open_video_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """An opened `cv2.VideoWriter` for `path` with the codec its extension selects (module docstring).

    Args:
        path: the output file; its suffix picks the codec.
        fps: frames per second of the video.
        size: `(width, height)` of every frame, px.

    Raises:
        ConfigError: an unsupported extension, or no codec for it can be opened (names the file).
    """
    check_video_path(path)
    codecs = CODECS[path.suffix.lower()]
    for fourcc in codecs:
        # FFmpeg reports a missing encoder or a fallback tag on fd 2; isOpened() is what decides.
        with stderr_to_log(log, "opencv", level=logging.DEBUG):
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if writer.isOpened():
            if fourcc not in BROWSER_CODECS:
                log.warning("%s: written as %s, which browsers do not play; name it .webm for a browser", path,
                            fourcc)
            else:
                log.info("%s: annotated video, codec %s", path, fourcc)
            return writer
        writer.release()
    raise ConfigError(f"service.annotate: {path}: OpenCV cannot write {path.suffix} here (tried {', '.join(codecs)})")
