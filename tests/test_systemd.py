"""The systemd unit: `systemd-analyze verify` passes and the hardening rates at least 'OK'."""

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

UNIT = REPO / "systemd" / "fer-edge.service"
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed (apt-get install systemd)")


def test_unit_verifies(tmp_path):
    # Point ExecStart at this checkout's fer-edge (the unit names /opt/fer-edge, where a Pi install lives).
    executable = shutil.which("fer-edge", path=str(REPO / ".venv" / "bin")) or f"{sys.executable} -m device"
    unit = tmp_path / "fer-edge.service"
    unit.write_text(UNIT.read_text().replace("/opt/fer-edge/.venv/bin/fer-edge", executable))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    problems = [line for line in result.stderr.splitlines() if "fer-edge.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_security_exposure_is_low():
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True,
                            text=True, check=False)
    match = re.search(r"Overall exposure level for fer-edge.service: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0  # systemd rates <= 2.0 as 'OK'; camera and GPIO access need some
    assert "Type=notify" in UNIT.read_text() and "RestartPreventExitStatus=2" in UNIT.read_text()


TEMPLATE = REPO / "systemd" / "fer-edge@.service"


def hardening(text: str) -> list[str]:
    """The unit's lines from NoNewPrivileges= to ReadOnlyPaths=: the sandbox."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("NoNewPrivileges="))
    end = next(i for i, line in enumerate(lines) if line.startswith("ReadOnlyPaths="))
    return lines[start:end + 1]


def test_template_unit_verifies_for_an_instance(tmp_path):
    executable = shutil.which("fer-edge", path=str(REPO / ".venv" / "bin")) or f"{sys.executable} -m device"
    (tmp_path / TEMPLATE.name).write_text(TEMPLATE.read_text().replace("/opt/fer-edge/.venv/bin/fer-edge", executable))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "fer-edge@kitchen.service")],
                            capture_output=True, text=True, check=False)
    problems = [line for line in result.stderr.splitlines() if "fer-edge@" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_template_unit_is_hardened_as_the_single_unit_and_keeps_instances_apart(tmp_path):
    (tmp_path / TEMPLATE.name).write_text(TEMPLATE.read_text())
    instance = tmp_path / "fer-edge@kitchen.service"
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(instance)], capture_output=True,
                            text=True, check=False)
    match = re.search(r"Overall exposure level for fer-edge@kitchen.service: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0
    text = TEMPLATE.read_text()
    assert hardening(text) == hardening(UNIT.read_text())
    for line in ("ExecStart=/opt/fer-edge/.venv/bin/fer-edge run --config /etc/fer-edge/%i.toml",
                 "Environment=FER_EDGE_DEVICE_ID=%l-%i", "SyslogIdentifier=fer-edge-%i", "StateDirectory=fer-edge/%i",
                 "Type=notify", "RestartPreventExitStatus=2"):
        assert line in text.splitlines(), line


def test_the_unit_lets_the_daemon_listen_on_the_live_view_port_only():
    # The page is off by default; on, it binds [web] listen's port, the one port the unit allows.
    from device.config import WebSettings, split_listen

    text = UNIT.read_text()
    assert f"SocketBindAllow=tcp:{split_listen(WebSettings().listen)[1]}" in text
    assert "SocketBindDeny=any" in text
    assert "tcp:8080" in (REPO / "systemd" / "config.toml").read_text()
