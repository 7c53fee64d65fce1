"""The hand-off between the frame loop and the page (device/liveview.py), with the real pipeline on real frames
of the clip: nothing is handed over or encoded while no one looks, at most `max_fps` while someone does."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device.config import Settings
from device.liveview import DEMAND_S, LiveView, Snapshot, annotate
from device.pipeline import Pipeline
from device.recognition import build_stages
from device.topics import FaceResult
from tests.conftest import CLIP


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    capture = cv2.VideoCapture(str(CLIP))
    images = [capture.read()[1] for _ in range(30)]
    capture.release()
    return images


def run_pipeline(frames: list[np.ndarray], live: LiveView) -> Pipeline:
    settings = Settings.model_validate({"mqtt": {"enabled": False}})
    detector, classifier = build_stages(settings)
    pipeline = Pipeline(settings, None, detector, classifier, live=live)
    for index, image in enumerate(frames):
        pipeline.process(image, index, at=index / 30.0)
    return pipeline


def test_with_no_viewer_nothing_is_handed_over_or_encoded(frames, shipped_model):
    live = LiveView(max_fps=5, width=640)
    run_pipeline(frames, live)
    assert live.frames == len(frames) and live.last_frame_at is not None  # the health endpoint's frame age
    assert live.latest is None and live.jpeg() is None
    assert live.state()["frame"] is None and live.state()["faces"] == []


def test_with_a_viewer_at_most_max_fps_frames_are_handed_over_by_reference(frames, shipped_model):
    live = LiveView(max_fps=1000, width=320)
    offered = []
    live.on_offer = lambda: offered.append(live.latest)
    live.watch()
    run_pipeline(frames, live)
    assert len(offered) == len(frames)  # 1000 Hz: every frame
    assert offered[-1].image is frames[-1]  # a reference, not a copy
    seq, index, data = live.jpeg()
    assert (seq, index) == (len(frames), len(frames) - 1)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (180, 320, 3)  # 596 x 336 downscaled to 320 px wide
    assert live.jpeg()[2] is data  # encoded once per frame, whoever asks
    state = live.state()
    assert state["frame"] == len(frames) - 1 and state["faces"][0]["face_id"] == 1 and state["detection"] is None
    live.unwatch()
    slow = LiveView(max_fps=5, width=640)
    slow.watch()
    for at in np.arange(0, 2.0, 1 / 30):  # 2 s of a 30 fps camera
        if slow.wanted(at):
            slow.offer(frames[0], 0, [], None, at)
    assert slow.latest.seq == 10  # 5 Hz


def test_a_single_request_keeps_frames_coming_for_a_while():
    live = LiveView(max_fps=5, width=640)
    assert not live.wanted(100.0)
    live.demand(now=100.0)
    assert live.wanted(100.0) and live.wanted(100.0 + DEMAND_S - 0.01)
    assert not live.wanted(100.0 + DEMAND_S + 0.01)


def test_annotate_draws_boxes_on_a_downscaled_copy():
    image = np.full((400, 800, 3), 128, np.uint8)
    face = FaceResult(3, (200, 100, 200, 200), (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0), "happy", 0.9)
    out = annotate(Snapshot(1, 0, 0.0, image, (face,), "happy"), width=400)
    assert out.shape == (200, 400, 3) and (image == 128).all()  # the frame itself is untouched
    assert (out[50:150, 100] == (0, 255, 0)).all(axis=1).sum() > 90  # the box's left edge, scaled by 0.5


def test_detection_off_clears_what_the_page_holds(frames, shipped_model):
    import threading

    from device.control import DetectionSwitch

    live = LiveView(max_fps=1000, width=320)
    live.watch()
    pipeline = run_pipeline(frames, live)
    assert live.latest is not None and live.jpeg() is not None and live.state()["faces"]
    switch = DetectionSwitch(None, default=False)
    pipeline.detection, pipeline.source = switch, None
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    pipeline.run(stop)  # off: pauses until stopped
    assert live.latest is None and live.jpeg() is None and live.state()["faces"] == []
    assert pipeline.dominant == "none"
    live.unwatch()
