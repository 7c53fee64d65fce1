"""The detection switch: whether the camera is used at all, kept across restarts.

Off means privacy: the frame source is closed (the camera released) and no frame is read, `dominant` goes to
`none`, the emotion LEDs go dark and the status LED shows paused; only `status`, `stats` and the switch's own
state are published. The pipeline acts on it (`device.pipeline.Pipeline`); MQTT commands on
`<base>/detection/set` (`ON` / `OFF`, Home Assistant's switch) flip it, and `<base>/detection/state` (retained)
says what it is.

What it last was is kept in the file `detection` of the state directory: `service.state_dir` where set, else
`$STATE_DIRECTORY` (systemd's `StateDirectory=`, /var/lib/fer-edge in the unit), else
`$XDG_STATE_HOME/fer-edge` (default `~/.local/state/fer-edge`). Where nothing was kept yet,
`service.detection_default` decides.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from device.topics import OFF, ON

log = logging.getLogger(__name__)

STATE_FILE = "detection"


def state_directory(configured: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    """Where the daemon keeps its state: `configured`, else `$STATE_DIRECTORY` (its first entry, systemd may
    list several separated by ':'), else `$XDG_STATE_HOME/fer-edge` or `~/.local/state/fer-edge`."""
    if configured is not None:
        return configured
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "fer-edge"


class DetectionSwitch:
    """Detection on or off; thread-safe (MQTT commands arrive on paho's thread, the frame loop reads it).

    Args:
        path: the file that keeps the state (`<state dir>/detection`, holding `ON` or `OFF`); None: not kept.
        default: the state where `path` holds none yet.

    A file that cannot be read or holds something else is logged and `default` used; one that cannot be
    written is logged (the switch still works, but a restart falls back to what the file or default says).
    """

    def __init__(self, path: Path | None, default: bool = True) -> None:
        self.path = path
        self._on = self._load(default)
        self._lock = threading.Lock()
        self.changed = threading.Event()  # set on every change; the frame loop waits on it while off
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def is_on(self) -> bool:
        return self._on

    @property
    def payload(self) -> str:
        """`ON` or `OFF`, as published on `detection/state`."""
        return ON if self._on else OFF

    def add_listener(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(is_on)` after every change (on the thread that made it)."""
        self._listeners.append(listener)

    def set(self, on: bool, why: str = "") -> bool:
        """Turn detection on or off, keep the state; returns whether it changed."""
        with self._lock:
            if on == self._on:
                return False
            self._on = on
            self._save()
        log.info("detection turned %s%s", "on" if on else "off", f" ({why})" if why else "")
        self.changed.set()
        for listener in self._listeners:
            listener(on)
        return True

    def command(self, payload: str) -> None:
        """Apply an MQTT command: `ON` or `OFF` (Home Assistant's payloads); anything else is logged and ignored."""
        text = payload.strip()
        if text not in (ON, OFF):
            log.warning("detection/set: ignored %r (expected %s or %s)", text[:40], ON, OFF)
            return
        self.set(text == ON, "MQTT command")

    def _load(self, default: bool) -> bool:
        if self.path is None:
            return default
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return default
        except (OSError, UnicodeDecodeError) as err:
            log.warning("%s: cannot read the detection state (%s); using service.detection_default = %s",
                        self.path, err, str(default).lower())
            return default
        if text not in (ON, OFF):
            log.warning("%s: holds %r, not %s or %s; using service.detection_default = %s", self.path, text[:40],
                        ON, OFF, str(default).lower())
            return default
        log.info("detection %s (kept in %s)", "on" if text == ON else "off", self.path)
        return text == ON

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(self.payload + "\n")
            os.replace(temporary, self.path)  # atomic: a crash never leaves half a file
        except OSError as err:
            log.error("%s: cannot keep the detection state (%s); it holds until the daemon restarts",
                      self.path, err.strerror or err)


def switch_from_settings(service, env: Mapping[str, str] = os.environ) -> DetectionSwitch:
    """The switch for a `device.config.ServiceSettings` (`state_dir`, `detection_default`)."""
    return DetectionSwitch(state_directory(service.state_dir, env) / STATE_FILE, service.detection_default)


def publish_switch(switch: DetectionSwitch, publisher, topics, commands: bool) -> None:
    """Publish the switch's state on `detection/state` (retained, QoS 1) now and after every change, and with
    `commands` take `ON`/`OFF` from `detection/set` (`publisher`: an `MqttPublisher`; `topics`: `Topics`).
    A retained command is ignored (logged): it would come back on every reconnect and undo later commands."""

    def publish(_on: bool = True) -> None:
        publisher.publish(topics.detection_state, switch.payload, qos=1, retain=True)

    def on_command(payload: str, retained: bool) -> None:
        if retained:  # it would flip the switch again on every reconnect, also after a later command
            log.warning("detection/set: ignored a retained %r; publish commands without the retain flag (and "
                        "clear this one: mosquitto_pub -r -n -t %s)", payload.strip()[:40], topics.detection_set)
            return
        switch.command(payload)

    publish()
    switch.add_listener(publish)
    if commands:
        publisher.subscribe(topics.detection_set, on_command, qos=1)
