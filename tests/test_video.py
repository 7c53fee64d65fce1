"""Annotated videos: a browser format chosen by the extension, and frames of other sizes resized, not dropped."""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np
import pytest

from device.classifier import EmotionClassifier
from device.config import ConfigError, Settings
from device.faces import build_detector
from device.pipeline import Pipeline
from device.sources import ImageSource
from device.video import open_video_writer


def fourcc_of(path) -> tuple[str, int]:
    """The codec (fourcc) of a video file as OpenCV reads it, and its frame count."""
    capture = cv2.VideoCapture(str(path))
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).upper(), frames


def write(path, frames: int = 5):
    writer = open_video_writer(path, 10.0, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()


def test_webm_is_vp8_which_browsers_play(tmp_path):
    write(tmp_path / "out.webm")
    assert fourcc_of(tmp_path / "out.webm") == ("VP80", 5)


def test_mp4_is_h264_where_opencv_can_encode_it_else_mp4v_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="device.video"):
        write(tmp_path / "out.mp4")
    codec, frames = fourcc_of(tmp_path / "out.mp4")
    assert frames == 5 and codec in ("AVC1", "H264", "FMP4")  # FFmpeg reads mp4v back as FMP4
    if codec == "FMP4":  # the PyPI wheels have no H.264 encoder
        assert "which browsers do not play; name it .webm" in caplog.text


def test_an_unknown_video_type_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"out.gif: unsupported video type '.gif'; use one of .webm, .mp4, .avi"):
        open_video_writer(tmp_path / "out.gif", 10.0, (64, 48))


def test_the_daemon_refuses_an_unknown_video_type_before_it_starts(tmp_path, shipped_model):
    from device import service

    settings = Settings.model_validate({"mqtt": {"enabled": False}, "source": {"uri": str(tmp_path / "none.png")},
                                        "service": {"annotate": tmp_path / "out.mov"}})
    assert service.run(settings, threading.Event()) == 2  # not 3: the source is never opened


def test_a_folder_of_images_of_different_sizes_is_resized_to_the_first_frame(tmp_path, shipped_model, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, (h, w) in {"a.png": (120, 160), "b.png": (240, 320), "c.png": (120, 160)}.items():
        cv2.imwrite(str(folder / name), np.full((h, w, 3), 90, np.uint8))
    settings = Settings.model_validate({"mqtt": {"enabled": False}, "service": {"annotate": tmp_path / "a.webm"}})
    pipeline = Pipeline(settings, ImageSource(folder), build_detector(settings.detector),
                        EmotionClassifier(shipped_model))
    with caplog.at_level(logging.INFO, logger="device.pipeline"):
        pipeline.run(threading.Event())
    assert fourcc_of(tmp_path / "a.webm") == ("VP80", 3)  # none dropped
    assert caplog.text.count("resizing such frames") == 1


def test_images_are_paced_at_source_fps_with_realtime(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 20, 3), np.uint8))
    source = ImageSource(tmp_path / "a.png", loop=True, fps=20.0)
    started = time.monotonic()
    for _ in range(7):
        source.read()
    elapsed = time.monotonic() - started
    assert 0.28 <= elapsed < 2.0  # 6 intervals of 50 ms after the first frame
