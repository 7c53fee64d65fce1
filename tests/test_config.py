import subprocess
import sys

import pytest

from device import config as cfg
from tests.conftest import REPO


def test_example_config_is_valid():
    settings = cfg.load_settings(REPO / "systemd" / "config.toml")
    assert settings.source.uri == "picamera2" and settings.mqtt.port == 1883


def test_defaults_need_no_file_and_the_default_path_may_be_absent():
    settings = cfg.load_settings(cfg.DEFAULT_CONFIG if not cfg.DEFAULT_CONFIG.exists() else None)
    assert settings.classifier.model == cfg.DEFAULT_MODEL


def test_flags_override_the_file_and_are_validated(tmp_path):
    (tmp_path / "c.toml").write_text("[mqtt]\nport = 1884\n")
    settings = cfg.load_settings(tmp_path / "c.toml", {("mqtt", "port"): "1885", ("leds", "pins"): '{"happy": 17}'})
    assert settings.mqtt.port == 1885 and settings.leds.pins == {"happy": 17}
    with pytest.raises(cfg.ConfigError, match="leds.pins: Value error, unknown emotion"):
        cfg.load_settings(None, {("leds", "pins"): '{"joy": 17}'})


def test_a_flag_names_a_numeric_choice_by_its_text():
    settings = cfg.load_settings(None, {("mqtt", "qos_status"): "2", ("classifier", "tta"): "none"})
    assert settings.mqtt.qos_status == 2 and settings.classifier.tta == "none"
    with pytest.raises(cfg.ConfigError, match=r"mqtt.qos_status: Input should be 0, 1 or 2 \(got '3'\)"):
        cfg.load_settings(None, {("mqtt", "qos_status"): "3"})


def test_settings_are_immutable():
    settings = cfg.load_settings(None)
    with pytest.raises(Exception, match="frozen"):
        settings.mqtt.port = 1


def test_bad_toml_names_the_file_and_line(tmp_path):
    (tmp_path / "c.toml").write_text("[mqtt]\nport = \n")
    with pytest.raises(cfg.ConfigError, match=r"c.toml: not valid TOML: .*line 2"):
        cfg.load_settings(tmp_path / "c.toml")


def test_unknown_section_is_named(tmp_path):
    (tmp_path / "c.toml").write_text("[camera]\nfps = 3\n")
    with pytest.raises(cfg.ConfigError, match="c.toml: camera: unknown key; allowed: source, detector"):
        cfg.load_settings(tmp_path / "c.toml")


def test_every_key_has_a_flag():
    help_text = subprocess.run([sys.executable, "-m", "device", "run", "--help"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout
    for flag, _, _ in cfg.flag_names():
        assert flag in help_text
    for flag in ("--source", "--model", "--mqtt-host", "--mqtt-port", "--device-id", "--config"):
        assert flag in help_text


def test_password_comes_from_a_file_or_systemd_credentials(tmp_path):
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    settings = cfg.MqttSettings(password_file=tmp_path / "mqtt-password")
    assert cfg.read_password(settings, None) == "s3cret"
    assert cfg.read_password(cfg.MqttSettings(), str(tmp_path)) == "s3cret"
    with pytest.raises(cfg.ConfigError, match="mqtt.password_file"):
        cfg.read_password(cfg.MqttSettings(password_file=tmp_path / "missing"), None)


def test_classifier_labels_are_a_subset_kept_in_the_contract_order_and_leds_follow_them():
    settings = cfg.load_settings(None, {("classifier", "labels"): '["neutral", "happy", "sad"]'})
    assert settings.classifier.labels == ["happy", "sad", "neutral"]
    assert cfg.load_settings(None).classifier.labels == ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                                         "neutral"]
    with pytest.raises(cfg.ConfigError, match=r"classifier.labels: Value error, unknown emotion\(s\) \['joy'\]"):
        cfg.load_settings(None, {("classifier", "labels"): '["happy", "joy"]'})
    with pytest.raises(cfg.ConfigError, match="at least two different emotions"):
        cfg.load_settings(None, {("classifier", "labels"): '["happy"]'})
    with pytest.raises(cfg.ConfigError, match=r"defaults \+ flags: leds.pins: \['angry'\] not in classifier.labels"):
        cfg.load_settings(None, {("classifier", "labels"): '["happy", "sad"]', ("leds", "pins"): '{"angry": 5}'})


def test_tta_choices_are_the_contracts_and_flip_is_the_default():
    from typing import get_args

    from device.config import ClassifierSettings
    from device.contract import TTA_MODES
    from training.evaluate import TTA_REPORTS

    assert get_args(ClassifierSettings.model_fields["tta"].annotation) == TTA_MODES == tuple(TTA_REPORTS)
    assert ClassifierSettings().tta == "flip"
