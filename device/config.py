"""Daemon configuration: one TOML file plus command-line flags -> one validated, immutable `Settings`.

Every key of the TOML file is also a flag, `--<section>-<key>` (e.g. `[mqtt] port` is `--mqtt-port`),
and a few have short names (`--source`, `--model`, `--mqtt-host`, `--mqtt-port`, `--device-id`).
Validation uses pydantic (https://docs.pydantic.dev): unknown keys are rejected, and every error
names the file, the key and what is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import stat
import tomllib
import unicodedata
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from device.contract import LABELS

DEFAULT_CONFIG = Path("/etc/fer-edge/config.toml")
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "fer_int8.tflite"

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads `port = true` as 1; a boolean is only valid where the key is one.
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return value  # a section: its own keys are checked
        if "bool" not in str(annotation) and _holds_bool(value):
            raise ValueError("a boolean (true/false) is not valid here: give a number or text")
        return value


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    return isinstance(value, list | tuple) and any(_holds_bool(v) for v in value)


def topic_part_problem(value: str, *, levels: bool) -> str | None:
    """Why `value` cannot be (a part of) an MQTT topic name (MQTT 3.1.1 section 4.7), or None where it can.

    Rejected: empty, not encodable as UTF-8, longer than 200 bytes, control characters (NUL, newline, ...),
    the wildcards '+' and '#', a leading '$' (reserved for the broker, e.g. $SYS), and with `levels` a
    leading or trailing '/' or an empty level ('//'); without `levels` any '/' or space.
    """
    if not value:
        return "must not be empty"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8"
    if size > 200:
        return "must be at most 200 bytes"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in value):
        return "must not contain control characters (NUL, newline, tab, ...)"
    if "+" in value or "#" in value:
        return "must not contain the MQTT wildcards '+' or '#'"
    if value.startswith("$"):
        return "must not start with '$' (topics such as $SYS belong to the broker)"
    if levels and (value.startswith("/") or value.endswith("/") or "//" in value):
        return "must not start or end with '/' or contain an empty level ('//')"
    if not levels and ("/" in value or " " in value):
        return "must not contain '/' or spaces"
    return None


class SourceSettings(_Section):
    uri: str = Field("picamera2", description="picamera2, a camera index (0), a video/image file, a folder of "
                     "images, or an rtsp:// / http:// URL")
    width: int = Field(640, gt=0, description="requested camera width, px")
    height: int = Field(480, gt=0, description="requested camera height, px")
    fps: float = Field(15.0, gt=0, description="requested camera frame rate, Hz")
    realtime: bool = Field(False, description="pace a video file at its own frame rate (images at `fps`) "
                           "instead of as fast as possible")
    loop: bool = Field(False, description="start a file or folder again at its end instead of stopping")
    frame_timeout_s: float = Field(30.0, gt=0, description="exit with code 3 after this long without a frame, s")


class DetectorSettings(_Section):
    kind: Literal["yunet", "haar"] = Field("yunet", description="yunet: OpenCV Zoo's YuNet with five landmarks, "
                                           "faces aligned onto the FER2013 template; haar: OpenCV's Haar cascade "
                                           "(boxes only, the fallback)")
    model: Path | None = Field(None, description="YuNet .onnx (default: the YuNet 2023mar shipped in "
                               "device/models/); Haar uses OpenCV's own cascade")
    detect_width: int = Field(640, ge=64, description="frames wider than this are downscaled to it for detection, px")
    min_face_px: int = Field(40, ge=8, description="smallest face side in source-frame pixels")
    max_faces: int = Field(5, ge=1, description="most faces classified per frame (the largest first)")
    full_frame_every: int = Field(10, ge=1, description="frames between full-frame detections; in between, "
                                  "faces are searched near their last box (1: every frame in full)")
    score_threshold: float = Field(0.6, ge=0, le=1, description="YuNet only: lowest face score kept")


class ClassifierSettings(_Section):
    model: Path = Field(DEFAULT_MODEL, description="the .tflite emotion model")
    threads: int = Field(1, ge=1, le=64, description="CPU threads of the TFLite interpreter")
    edgetpu: bool | None = Field(None, description="force/forbid the Edge TPU delegate; unset: by file name")
    tta: Literal["none", "flip", "flip-shift"] = Field("flip", description="test-time augmentation: none (one "
                                                       "view), flip (face + mirror, 2x cost) or flip-shift (10 "
                                                       "views, 10x); accuracy and cost in the model card")
    labels: list[str] = Field(default_factory=lambda: list(LABELS), description="the emotions published, a subset "
                              "of the seven FER2013 labels (kept in their order); the model's seven probabilities "
                              "are renormalised over this set")
    prior: Literal["fer2013", "uniform"] = Field("fer2013", description="class prior of the published "
                                                 "probabilities: fer2013 (FER2013 Training's class frequencies, "
                                                 "as trained) or uniform (divided by them and renormalised, so "
                                                 "rare emotions such as disgust are not marked down); figures "
                                                 "of both in the model card")

    @field_validator("labels")
    @classmethod
    def _label_subset(cls, value: list[str]) -> list[str]:
        unknown = [label for label in value if label not in LABELS]
        if unknown:
            raise ValueError(f"unknown emotion(s) {unknown}; allowed: {', '.join(LABELS)}")
        if len(set(value)) < 2 or len(set(value)) != len(value):
            raise ValueError("give at least two different emotions, each once")
        return [label for label in LABELS if label in value]


class TrackingSettings(_Section):
    iou_threshold: float = Field(0.3, gt=0, lt=1, description="min IoU to match a face to a track")
    max_missed_s: float = Field(1.0, ge=0, description="a track survives this long without a matching face, s")
    smoothing_s: float = Field(0.5, ge=0, description="time constant of the exponential moving average of each "
                               "face's scores, s (0: no smoothing)")
    min_dwell_s: float = Field(0.5, ge=0, description="a new emotion must lead the shown one for this long "
                               "before it is shown, s")
    hysteresis: float = Field(0.1, ge=0, lt=1, description="a new emotion must lead the shown one by this margin")

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, values: Any) -> Any:
        # Per-frame keys gave different behaviour at different frame rates; their replacements are in seconds.
        replaced = {
            "smoothing": "'smoothing' (a per-frame weight) was replaced by 'smoothing_s' (a time constant in "
                         "seconds) and 'min_dwell_s'; 0.1 per frame at 10 fps is smoothing_s = 1.0",
            "max_missed": "'max_missed' (frames) was replaced by 'max_missed_s' (seconds); 10 frames at 10 fps "
                          "is max_missed_s = 1.0",
        }
        if isinstance(values, dict):
            for key, message in replaced.items():
                if key in values:
                    raise ValueError(message)
        return values


class MqttSettings(_Section):
    enabled: bool = Field(True, description="publish to an MQTT broker")
    host: str = Field("localhost", description="MQTT broker host")
    port: int = Field(1883, gt=0, lt=65536, description="MQTT broker port")
    client_id: str = Field("", description="MQTT client id (empty: fer-edge-<device_id>)")
    keepalive_s: int = Field(30, ge=5, description="MQTT keep-alive interval, s")
    username: str = Field("", description="broker user name (empty: anonymous)")
    password_file: Path | None = Field(None, description="file holding the password; or the credential "
                                       "'mqtt-password' in $CREDENTIALS_DIRECTORY (systemd LoadCredential=)")
    tls: bool = Field(False, description="connect with TLS (the system's CAs unless tls_ca is set)")
    tls_ca: Path | None = Field(None, description="CA certificate file (PEM) for the broker")
    tls_cert: Path | None = Field(None, description="client certificate file (PEM)")
    tls_key: Path | None = Field(None, description="client key file (PEM)")
    topic_root: str = Field("fer-edge", description="first level of every topic: <topic_root>/<device_id>/...")
    qos_status: Literal[0, 1, 2] = Field(1, description="QoS of `status`")
    qos_dominant: Literal[0, 1, 2] = Field(1, description="QoS of `dominant`")
    qos_emotions: Literal[0, 1, 2] = Field(0, description="QoS of `emotions`")
    emotions_max_hz: float = Field(5.0, gt=0, description="most `emotions` messages per second")
    stats_interval_s: float = Field(10.0, gt=0, description="time between `stats` messages, s")
    no_face_timeout_s: float = Field(3.0, ge=0, description="`dominant` becomes 'none' after this long, s")
    queue_size: int = Field(1000, ge=1, description="messages kept while the broker is away (oldest dropped)")
    home_assistant: bool = Field(True, description="publish Home Assistant MQTT discovery (retained)")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery topic prefix")
    detection_commands: bool = Field(True, description="take ON/OFF on <topic_root>/<device_id>/detection/set "
                                     "(Home Assistant's detection switch; limit who may publish there with the "
                                     "broker's ACL); false: the state is published, never set over MQTT")

    @field_validator("topic_root", "discovery_prefix")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        problem = topic_part_problem(value, levels=True)
        if problem:
            raise ValueError(problem)
        return value


class LedSettings(_Section):
    enabled: bool = Field(False, description="drive indicator LEDs with gpiozero")
    pins: dict[str, int] = Field(default_factory=dict, description="emotion -> GPIO pin (BCM) of its LED")
    rgb_pins: list[int] = Field(default_factory=list, description="[red, green, blue] GPIO pins of an RGBLED")
    colors: dict[str, tuple[float, float, float]] = Field(
        default_factory=lambda: {"angry": (1, 0, 0), "disgust": (0.5, 1, 0), "fear": (0.6, 0, 1),
                                 "happy": (1, 0.8, 0), "sad": (0, 0, 1), "surprise": (0, 1, 1),
                                 "neutral": (0.3, 0.3, 0.3)},
        description="emotion -> (r, g, b) in [0, 1] for the RGBLED")
    status_pin: int | None = Field(None, description="LED that blinks while running and is lit while a face is seen")
    mock: bool = Field(False, description="use gpiozero's MockFactory (no hardware)")

    @field_validator("pins", "colors")
    @classmethod
    def _known_emotions(cls, value: dict) -> dict:
        unknown = set(value) - set(LABELS)
        if unknown:
            raise ValueError(f"unknown emotion(s) {sorted(unknown)}; allowed: {', '.join(LABELS)}")
        return value

    @field_validator("rgb_pins")
    @classmethod
    def _three_pins(cls, value: list[int]) -> list[int]:
        if value and len(value) != 3:
            raise ValueError("give three pins: [red, green, blue]")
        return value


DEVICE_ID_ENV = "FER_EDGE_DEVICE_ID"


def default_device_id() -> str:
    """`$FER_EDGE_DEVICE_ID` where set (systemd/fer-edge@.service: `%l-%i`, e.g. `pi-kitchen`), else the short
    host name. Read when this module is imported (the sections' defaults are made then); `Settings` checks it
    like a configured `device_id`."""
    return os.environ.get(DEVICE_ID_ENV) or socket.gethostname().split(".")[0] or "fer-edge"


class ServiceSettings(_Section):
    device_id: str = Field(default_factory=default_device_id,
                           description="this device's name in the topics (default: $FER_EDGE_DEVICE_ID, which the "
                           "template unit fer-edge@.service sets to <hostname>-<instance>, else the host name)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    max_frames: int = Field(0, ge=0, description="stop after this many frames (0: no limit)")
    annotate: Path | None = Field(None, description="write an annotated video (file sources) to this path")
    debug_snapshots: Path | None = Field(None, description="save annotated frames here: faces leave the "
                                         "device's memory only when this is set")
    detection_default: bool = Field(True, description="detection on (camera used) where no switch state was kept "
                                    "yet; after the first ON/OFF the kept state wins")
    state_dir: Path | None = Field(None, description="where the detection switch's state is kept (unset: "
                                   "$STATE_DIRECTORY from systemd's StateDirectory=, else "
                                   "$XDG_STATE_HOME/fer-edge or ~/.local/state/fer-edge)")

    @field_validator("device_id")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        problem = topic_part_problem(value, levels=False)
        if problem:
            raise ValueError(problem)
        return value


def split_listen(value: str) -> tuple[str, int]:
    """`"host:port"` (IPv6 in brackets, `"[::1]:8080"`) as `(host, port)`.

    Raises:
        ValueError: no port, a port outside 1-65535, or an empty host.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("give host:port with a port in 1-65535, e.g. 127.0.0.1:8080 or [::1]:8080")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise ValueError("give the host before the port, e.g. 127.0.0.1:8080 (0.0.0.0:8080 for every address)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); host names other than localhost are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebSettings(_Section):
    enabled: bool = Field(False, description="serve the live view page (camera frames with the faces drawn, "
                          "the state and stats); off: nothing listens")
    listen: str = Field("127.0.0.1:8080", description="host:port the page listens on; any address but loopback "
                        "needs a password (password_file or the credential 'web-password')")
    max_fps: float = Field(5.0, gt=0, le=30, description="most frames per second sent to viewers, Hz")
    width: int = Field(640, ge=64, le=4096, description="frames wider than this are downscaled to it for the "
                       "page, px")
    max_clients: int = Field(4, ge=1, le=64, description="most viewers of the stream or snapshot at once; more "
                             "get HTTP 503")
    username: str = Field("fer-edge", description="user name of the page's HTTP basic authentication (used "
                          "only with a password)")
    password_file: Path | None = Field(None, description="file holding the page's password; or the credential "
                                       "'web-password' in $CREDENTIALS_DIRECTORY (systemd LoadCredential=)")
    send_timeout_s: float = Field(10.0, gt=0, description="a viewer that takes no frame for this long is "
                                  "disconnected, s")
    url: str = Field("", description="the page's address for Home Assistant's configuration_url (empty: "
                     "http://<listen host, or this host's name for 0.0.0.0/::>:<port>/)")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("give an http:// or https:// address, or leave it empty")
        return value


class Settings(_Section):
    """The whole validated configuration; each module takes only its own section."""

    source: SourceSettings = SourceSettings()
    detector: DetectorSettings = DetectorSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    tracking: TrackingSettings = TrackingSettings()
    mqtt: MqttSettings = MqttSettings()
    leds: LedSettings = LedSettings()
    service: ServiceSettings = ServiceSettings()
    web: WebSettings = WebSettings()

    @model_validator(mode="after")
    def _leds_follow_labels(self) -> Settings:
        unused = sorted(set(self.leds.pins) - set(self.classifier.labels))
        if unused:
            raise ValueError(f"leds.pins: {unused} not in classifier.labels {self.classifier.labels}")
        problem = topic_part_problem(self.service.device_id, levels=False)  # a default taken from the environment
        if problem:
            origin = f"${DEVICE_ID_ENV}" if os.environ.get(DEVICE_ID_ENV) else "the host name"
            raise ValueError(f"service.device_id: {self.service.device_id!r} (from {origin}) {problem}")
        return self


SHORT_FLAGS = {"source": ("source", "uri"), "model": ("classifier", "model"), "mqtt_host": ("mqtt", "host"),
               "mqtt_port": ("mqtt", "port"), "device_id": ("service", "device_id")}


def flag_names() -> list[tuple[str, str, str]]:
    """`(flag, section, key)` for every key, e.g. `("--mqtt-port", "mqtt", "port")`."""
    names = []
    for section, field in Settings.model_fields.items():
        for key in field.annotation.model_fields:
            names.append((f"--{section}-{key}".replace("_", "-"), section, key))
    return names


_UNITS = {"_s": "s", "_hz": "Hz", "_px": "px"}


def flag_help(section: str, key: str) -> tuple[str, str]:
    """`(metavar, help)` of the flag `--<section>-<key>`, from the field's description, type, default and unit.

    The unit comes from the key's suffix (`_s` seconds, `_hz`, `_px`) or the description's last `, <unit>`.
    """
    field = Settings.model_fields[section].annotation.model_fields[key]
    description = (field.description or key.replace("_", " ")).replace("%", "%%")
    type_name, metavar = _type_name(field.annotation)
    if field.default_factory is not None and key == "device_id":
        default = f"${DEVICE_ID_ENV} or the host name"
    else:
        value = field.get_default(call_default_factory=True)
        if value is None:
            default = "unset"
        elif isinstance(value, bool):
            default = str(value).lower()
        elif isinstance(value, dict | list):
            default = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, Path) and value == DEFAULT_MODEL:
            default = "the shipped model"
        else:
            default = repr(value) if isinstance(value, str) else str(value)
    unit = next((u for suffix, u in _UNITS.items() if key.endswith(suffix)), None)
    parts = [type_name, f"default {default}"]
    if unit and not description.endswith(f", {unit}"):
        parts.append(f"unit {unit}")
    return metavar, f"{description} ({'; '.join(parts)}) [config: {section}.{key}]"


def _type_name(annotation: Any) -> tuple[str, str]:
    """A field type in words and its flag metavar, e.g. `(int | None)` -> `("integer or unset", "INT")`."""
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    optional = len(args) < len(get_args(annotation))
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(map(str, args)), "{" + ",".join(map(str, args)) + "}"
    if get_origin(annotation) in (dict, list, tuple):
        return "JSON " + get_origin(annotation).__name__, "JSON"
    if optional and len(args) == 1:
        name, metavar = _type_name(args[0])
        return f"{name} or unset", metavar
    names = {int: ("integer", "INT"), float: ("number", "FLOAT"), bool: ("true/false", "BOOL"), str: ("text", "TEXT"),
             Path: ("path", "PATH")}
    return names.get(annotation, (str(annotation), "VALUE"))


def load_settings(path: Path | None, overrides: dict[tuple[str, str], Any] | None = None) -> Settings:
    """Read the TOML file (if any), apply flag overrides, validate.

    Args:
        path: TOML file; None for defaults alone. The default `/etc/fer-edge/config.toml` may be absent.
        overrides: `{(section, key): value}` from flags; strings are converted by the field's type, and
            dict/list fields take JSON.

    Raises:
        ConfigError: a file that is missing (other than the default), a folder, unreadable, not UTF-8 or not
            TOML (with line), an unknown section or key, or an invalid value; the message names the file and
            `section.key`.
    """
    raw: dict[str, Any] = {}
    origin = str(path) if path else "defaults"
    if path is not None:
        try:
            with Path(path).open("rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            if Path(path) != DEFAULT_CONFIG:
                raise ConfigError(f"{path}: config file not found") from None
            origin = "defaults"  # the default file may be absent: never name a file that is not there
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a folder, not a TOML config file") from None
        except OSError as err:  # e.g. permission denied
            raise ConfigError(f"{path}: cannot read the config file: {err.strerror or err}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); TOML files are UTF-8") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from None
    for (section, key), value in (overrides or {}).items():
        if isinstance(value, str) and _is_structured(section, key):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ConfigError(f"--{section}-{key}: expected JSON, {err}") from None
        elif isinstance(value, str):
            value = _literal_choice(section, key, value)
        raw.setdefault(section, {})[key] = value
    if overrides:
        origin = f"{origin} + flags"
    try:
        return Settings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, origin)) from None


def _is_structured(section: str, key: str) -> bool:
    annotation = str(Settings.model_fields[section].annotation.model_fields[key].annotation)
    return annotation.startswith(("dict", "list"))


def _literal_choice(section: str, key: str, value: str) -> Any:
    """A flag's text as the Literal choice it names (`--mqtt-qos-status 1` -> the int 1), else unchanged."""
    annotation = Settings.model_fields[section].annotation.model_fields[key].annotation
    if get_origin(annotation) is not Literal:
        return value
    return {str(choice): choice for choice in get_args(annotation)}.get(value, value)


def _describe(err: ValidationError, origin: str) -> str:
    lines = []
    for problem in err.errors():
        location = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(problem["loc"][:-1])
            lines.append(f"{origin}: {location}: unknown key; allowed: {allowed}")
        elif not problem["loc"]:  # a rule across sections (Settings' model validator) names its own keys
            lines.append(f"{origin}: {problem['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{origin}: {location}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)


def _allowed_keys(loc: tuple) -> str:
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return ", ".join(model.model_fields)


def read_password(settings: MqttSettings, credentials_dir: str | None) -> str | None:
    """The MQTT password: from `password_file`, else the systemd credential `mqtt-password`, else None.

    A `password_file` that every user may read is used, with a warning. A value that does not look like a path
    (no '/' and no such file: perhaps the password itself) is never repeated in a message.

    Raises:
        ConfigError: `password_file` is set but cannot be read or is not UTF-8 text; or the credential is not
            UTF-8 text.
    """
    return _password(settings.password_file, "mqtt", credentials_dir)


def read_web_password(settings: WebSettings, credentials_dir: str | None) -> str | None:
    """The live view page's password: from `[web] password_file`, else the systemd credential `web-password`,
    else None; read as `read_password` reads the MQTT one (same warnings and errors, key `web.password_file`).
    An empty password counts as none."""
    return _password(settings.password_file, "web", credentials_dir) or None


def _password(password_file: Path | None, section: str, credentials_dir: str | None) -> str | None:
    if password_file is not None:
        return _read_secret(password_file, f"{section}.password_file", warn_mode=True)
    if credentials_dir:
        credential = Path(credentials_dir) / f"{section}-password"
        if credential.is_file():
            return _read_secret(credential, f"credential {section}-password", warn_mode=False)
    return None


def _read_secret(path: Path, key: str, *, warn_mode: bool) -> str:
    # The name as given may be a password typed where a path belongs: show it only when it looks like a path.
    shown = str(path) if "/" in str(path) or path.exists() else "(the value is not shown: it is not an existing " \
        "file and has no '/'; the password itself is never a flag or a config value)"
    try:
        text = path.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise ConfigError(f"{key}: {shown}: not UTF-8 text (byte {err.start})") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL in the name
        raise ConfigError(f"{key}: cannot read {shown}: {getattr(err, 'strerror', None) or err}") from None
    mode = os.stat(path).st_mode
    if warn_mode and mode & stat.S_IROTH:
        log.warning("%s: %s is readable by every user (mode %03o): chmod 600 it, or use systemd's "
                    "LoadCredential=%s-password:...", key, path, stat.S_IMODE(mode), key.split(".")[0])
    return text
