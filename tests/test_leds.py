"""LEDs follow the published `dominant`, on gpiozero's own MockFactory pins."""

import threading

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder
from device.config import LedSettings, load_settings
from device.contract import LABELS
from device.leds import EmotionLeds
from tests.conftest import CLIP

PINS = {label: pin for label, pin in zip(LABELS, (5, 6, 13, 17, 22, 23, 24), strict=True)}


@pytest.fixture
def factory():
    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()


def lit(factory) -> set[str]:
    return {label for label, pin in PINS.items() if factory.pin(pin).state}


def led_daemon_settings(broker: Mosquitto, model, overrides: dict[tuple[str, str], object]):
    """The daemon on the clip with MQTT to `broker` and the emotion and status LEDs on, and `overrides`
    (`(section, key): value`, as `load_settings` takes them)."""
    return load_settings(None, {
        ("source", "uri"): str(CLIP), ("classifier", "model"): str(model), ("mqtt", "port"): broker.port,
        ("mqtt", "host"): "127.0.0.1", ("service", "device_id"): "leds", ("leds", "enabled"): True,
        ("leds", "pins"): PINS, ("leds", "status_pin"): 26,
        **overrides})


def test_one_led_per_emotion_and_all_off_on_close(factory):
    leds = EmotionLeds(LedSettings(enabled=True, pins=PINS, rgb_pins=[12, 16, 19], status_pin=26),
                       pin_factory=factory)
    leds.show("happy")
    assert lit(factory) == {"happy"}
    assert leds.rgb.color == (1, 0.8, 0)
    leds.show("none")
    assert lit(factory) == set() and leds.rgb.color == (0, 0, 0)
    leds.face_seen(True)
    assert factory.pin(26).state == 1
    leds.close()
    assert lit(factory) == set() and factory.pin(26).state == 0 and factory.pin(12).state == 0


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")
def test_leds_show_the_published_dominant_emotion(tmp_path, factory, shipped_model, monkeypatch):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    from device import service

    broker = Mosquitto(tmp_path).start()
    settings = led_daemon_settings(broker, shipped_model, {("service", "max_frames"): 120})
    seen: list[tuple[str, set[str]]] = []
    original = EmotionLeds.show

    def spy(self, emotion):  # record what the pins show right after each change
        original(self, emotion)
        seen.append((emotion, lit(factory)))

    monkeypatch.setattr(EmotionLeds, "show", spy)
    try:
        with Recorder(broker.port) as recorder:
            assert service.run(settings, threading.Event(), pin_factory=factory) == 0
            recorder.wait_for("status", "offline")
    finally:
        broker.stop()
    published = [m.payload for m in recorder.on("/dominant")]
    assert published and [emotion for emotion, _ in seen] == published
    assert all(pins == {emotion} for emotion, pins in seen)
    assert lit(factory) == set()  # all off after the stop


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")
def test_detection_off_darkens_the_emotion_leds_and_the_status_led_says_paused(tmp_path, factory, shipped_model):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    import time

    from device import service
    from tests.test_control import publish

    broker = Mosquitto(tmp_path).start()
    settings = led_daemon_settings(broker, shipped_model, {
        ("source", "loop"): True, ("source", "realtime"): True, ("service", "state_dir"): str(tmp_path)})
    stop = threading.Event()
    result = []
    daemon = threading.Thread(target=lambda: result.append(service.run(settings, stop, pin_factory=factory)))
    try:
        with Recorder(broker.port) as recorder:
            daemon.start()
            recorder.wait_for("/dominant", timeout=30)
            deadline = time.monotonic() + 10
            while not lit(factory) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lit(factory), "no emotion LED lit while running"
            publish(broker.port, "fer-edge/leds/detection/set", "OFF")
            recorder.wait_for("/dominant", "none", timeout=2)
            time.sleep(0.3)
            assert lit(factory) == set()
            samples = []  # the status LED for 3.2 s: slow blinking, 1 s on and 1 s off
            end = time.monotonic() + 3.2
            while time.monotonic() < end:
                samples.append((time.monotonic(), factory.pin(26).state))
                time.sleep(0.02)
            changes = [t for (t, state), (_, before) in zip(samples[1:], samples, strict=False) if state != before]
            gaps = [b - a for a, b in zip(changes, changes[1:], strict=False)]
            assert gaps and all(0.8 < gap < 1.3 for gap in gaps), gaps
            assert lit(factory) == set()
    finally:
        stop.set()
        daemon.join(timeout=10)
        broker.stop()
    assert result == [0]
