"""LEDs follow the published `dominant`, on gpiozero's own MockFactory pins."""

import threading

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder
from device.config import LedSettings, load_settings
from device.contract import LABELS
from device.leds import EmotionLeds
from tests.test_daemon import CLIP

PINS = {label: pin for label, pin in zip(LABELS, (5, 6, 13, 17, 22, 23, 24), strict=True)}


@pytest.fixture
def factory():
    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()


def lit(factory) -> set[str]:
    return {label for label, pin in PINS.items() if factory.pin(pin).state}


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
def test_leds_show_the_published_dominant_emotion(tmp_path, factory, shipped_model):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    from device import service

    broker = Mosquitto(tmp_path).start()
    settings = load_settings(None, {
        ("source", "uri"): str(CLIP), ("classifier", "model"): str(shipped_model), ("mqtt", "port"): broker.port,
        ("mqtt", "host"): "127.0.0.1", ("service", "device_id"): "leds", ("service", "max_frames"): 120,
        ("leds", "enabled"): True, ("leds", "pins"): PINS, ("leds", "status_pin"): 26})
    seen: list[tuple[str, set[str]]] = []
    original = EmotionLeds.show

    def spy(self, emotion):  # record what the pins show right after each change
        original(self, emotion)
        seen.append((emotion, lit(factory)))

    try:
        with Recorder(broker.port) as recorder:
            EmotionLeds.show = spy
            assert service.run(settings, threading.Event(), pin_factory=factory) == 0
            recorder.wait_for("status", "offline")
    finally:
        EmotionLeds.show = original
        broker.stop()
    published = [m.payload for m in recorder.on("/dominant")]
    assert published and [emotion for emotion, _ in seen] == published
    assert all(pins == {emotion} for emotion, pins in seen)
    assert lit(factory) == set()  # all off after the stop
