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


def test_the_unit_lets_the_daemon_listen_on_the_live_view_port_only():
    # The page is off by default; on, it binds [web] listen's port, the one port the unit allows.
    from device.config import WebSettings, split_listen

    text = UNIT.read_text()
    assert f"SocketBindAllow=tcp:{split_listen(WebSettings().listen)[1]}" in text
    assert "SocketBindDeny=any" in text
    assert "tcp:8080" in (REPO / "systemd" / "config.toml").read_text()
