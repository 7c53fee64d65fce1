"""Frame sources on real media: the clip as a file, as a 'live' stream that ends, and images."""

import time

import cv2
import numpy as np
import pytest

from device.config import SourceSettings
from device.sources import ImageSource, LiveSource, SourceError, SourceLost, _OpenCvCapture, open_source
from tests.conftest import CLIP


@pytest.fixture
def clip():
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    return CLIP


def test_file_source_gives_every_frame_then_ends(clip):
    source = open_source(SourceSettings(uri=str(clip)))
    frames = 0
    while (frame := source.read()) is not None:
        assert frame.image.shape == (336, 596, 3) and frame.index == frames
        frames += 1
    source.close()
    assert frames == 464 and source.dropped == 0


def test_file_source_loops_when_asked(clip):
    source = open_source(SourceSettings(uri=str(clip), loop=True))
    indices = [source.read().index for _ in range(470)]
    assert indices[-1] == 469  # past the clip's 464 frames
    source.close()


def test_live_source_keeps_only_the_newest_frame_and_gives_up_when_the_stream_is_gone(clip):
    opened = []

    def opener():
        if opened:  # the stream cannot be reopened once it has ended
            raise SourceError("test stream: gone")
        opened.append(1)
        return _OpenCvCapture(str(clip), SourceSettings())

    source = LiveSource(opener, SourceSettings(frame_timeout_s=1.5), name="test stream")
    first = source.read()
    time.sleep(0.3)  # a slow consumer: the capture thread replaces frames meanwhile
    second = source.read()
    assert first.image.shape == (336, 596, 3)
    assert source.dropped > 0 and second.index == 1
    with pytest.raises(SourceLost, match="test stream: no frame for"):
        while True:
            source.read()
    source.close()


def test_missing_camera_or_file_fails_at_once(tmp_path):
    with pytest.raises(SourceError, match="missing.mp4: video file not found"):
        open_source(SourceSettings(uri=str(tmp_path / "missing.mp4")))
    with pytest.raises(SourceError, match="no images"):
        open_source(SourceSettings(uri=str(tmp_path)))


def test_image_folder_skips_unreadable_files(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 20, 3), np.uint8))
    (tmp_path / "b.jpg").write_text("not an image")
    cv2.imwrite(str(tmp_path / "c.png"), np.ones((10, 20, 3), np.uint8))
    source = ImageSource(tmp_path)
    assert [source.read().image.max() for _ in range(2)] == [0, 1]
    assert source.read() is None


def test_a_stream_password_is_never_shown():
    from device.sources import redact_url

    assert redact_url("rtsp://admin:s3cr%40t@[fe80::1]:554/live?ch=1") == "rtsp://admin:***@[fe80::1]:554/live?ch=1"
    assert redact_url("rtsp://cam.local/stream") == "rtsp://cam.local/stream"
    assert redact_url("http://viewer@cam:8080/mjpg") == "http://viewer@cam:8080/mjpg"  # no password: unchanged
    assert redact_url("rtsp://admin:s3cret@[cam/x") == "rtsp://***"  # does not parse: all but the scheme hidden
    with pytest.raises(SourceError) as caught:  # nothing listens on port 9 (discard) of 127.0.0.1
        _OpenCvCapture("rtsp://admin:s3cret@127.0.0.1:9/x", SourceSettings())
    assert "s3cret" not in str(caught.value) and "admin:***@127.0.0.1:9" in str(caught.value)
