"""Indicator LEDs with gpiozero: one LED per emotion and/or an RGBLED colour, plus a status LED.

The LEDs follow `dominant`. The status LED blinks briefly (0.1 s of every 1 s) while the daemon runs, stays lit
while a face is seen, and blinks slowly (1 s on, 1 s off) while detection is switched off (`device.control`).
The emotion LEDs and the status LED are one gpiozero `LEDBoard` with named LEDs (`board.happy`, `board.status`).
Off a Pi (or with `mock = true`) gpiozero's MockFactory drives simulated pins
(https://gpiozero.readthedocs.io/en/stable/api_pins.html#mock-pins). All LEDs go off on `close`.
With `[classifier] labels` a subset, `[leds] pins` may name only those labels (checked in `device.config`).
"""

from __future__ import annotations

import logging

from device.config import LedSettings

log = logging.getLogger(__name__)


class EmotionLeds:
    """LEDs for the dominant emotion.

    Args:
        settings: the `[leds]` section.
        pin_factory: a gpiozero pin factory; None for gpiozero's default (MockFactory when `settings.mock`).

    Raises:
        gpiozero.GPIOZeroError: a pin is in use or does not exist.
    """

    def __init__(self, settings: LedSettings, pin_factory=None) -> None:
        from gpiozero import RGBLED, LEDBoard

        if pin_factory is None and settings.mock:
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            pin_factory = MockFactory(pin_class=MockPWMPin)
        self.settings = settings
        named = dict(settings.pins)
        if settings.status_pin is not None:
            named["status"] = settings.status_pin  # "status" is not an emotion: no clash with pins' keys
        self.board = LEDBoard(**named, pin_factory=pin_factory) if named else None
        self.rgb = RGBLED(*settings.rgb_pins, pin_factory=pin_factory) if settings.rgb_pins else None
        self.status = self.board.status if settings.status_pin is not None else None
        self._face_seen: bool | None = None
        self.face_seen(False)

    def show(self, emotion: str | None) -> None:
        """Light the LED (and RGB colour) of `emotion`; all off for None or 'none'."""
        for name in self.settings.pins:
            getattr(self.board, name).value = name == emotion
        if self.rgb is not None:
            self.rgb.color = self.settings.colors.get(emotion, (0, 0, 0)) if emotion else (0, 0, 0)

    def face_seen(self, seen: bool) -> None:
        """Status LED: lit while a face is seen, blinking (0.1 s on, 0.9 s off) otherwise."""
        if self.status is None or seen == self._face_seen:
            return
        self._face_seen = seen
        if seen:
            self.status.on()
        else:
            self.status.blink(on_time=0.1, off_time=0.9)

    def pause(self) -> None:
        """Detection off: emotion LEDs dark, the status LED blinks slowly (1 s on, 1 s off) until `face_seen`."""
        self.show(None)
        if self.status is not None:
            self.status.blink(on_time=1.0, off_time=1.0)
        self._face_seen = None  # the next face_seen() sets the running pattern again

    def close(self) -> None:
        """All LEDs off, pins released."""
        for device in (self.board, self.rgb):
            if device is not None:
                device.off()
                device.close()
