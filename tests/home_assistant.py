"""A real Home Assistant core for the tests: the one `scripts/install-home-assistant.sh` puts in a Debian 13 root
(Python 3.13; Home Assistant needs >= 3.12), started there on 127.0.0.1 with the host's network (it reaches the
tests' mosquitto), onboarded and given its MQTT integration through its own REST API, then asked over REST and
websocket.

Onboarding without a browser: `POST /api/onboarding/users` gives an `auth_code`, `POST /auth/token` a token
(https://developers.home-assistant.io/docs/auth_api/); the MQTT entry is a config flow:
`POST /api/config/config_entries/flow {"handler": "mqtt"}`, then its `broker` step.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from benchmarks.broker import free_port
from tests.conftest import REPO

ROOT = Path(os.environ.get("FER_EDGE_HA_ROOT", "/var/cache/fer-edge/ha-trixie"))
INSTALL = REPO / "scripts" / "install-home-assistant.sh"
CONFIGURATION = """\
homeassistant:
  name: fer-edge test
  unit_system: metric
  time_zone: UTC
  latitude: 0
  longitude: 0
  elevation: 0
  country: DE
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
onboarding:
config:
websocket_api:
logger:
  default: warning
"""


def install() -> str | None:
    """Install Home Assistant where it is missing (once per machine); None when ready, else why it is not."""
    if os.geteuid() != 0:
        return "Home Assistant runs in a Debian 13 chroot, which needs root"
    if shutil.which("unshare") is None or shutil.which("chroot") is None:
        return "unshare and chroot (util-linux, coreutils) are needed to start Home Assistant's root"
    result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=1500, check=False)
    if result.returncode != 0:
        return f"scripts/install-home-assistant.sh failed: {result.stderr.strip()[-600:]}"
    return None


class HomeAssistantCore:
    """One Home Assistant with its configuration in `config_dir` (a host folder, bound at /config in the root);
    `extra_config` is appended to its configuration.yaml."""

    def __init__(self, config_dir: Path, root: Path = ROOT, extra_config: str = "") -> None:
        self.root, self.config_dir = root, config_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token: str | None = None
        self.process: subprocess.Popen | None = None
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port) + extra_config)
        self.output = config_dir / "hass.out"

    def start(self, timeout_s: float = 120.0) -> None:
        """Start Home Assistant and wait until its HTTP API answers."""
        (self.root / "config").mkdir(exist_ok=True)
        # A private mount namespace: /proc, /dev and /config are mounted for this process alone and vanish with
        # it. The network is the host's, so 127.0.0.1 is the tests' broker. --skip-pip: nothing installed now.
        script = ('mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && mount --bind "$1" "$0/config" && '
                  'exec chroot "$0" env -i PATH=/opt/ha/bin:/usr/bin:/bin HOME=/root '
                  'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt /opt/ha/bin/hass -c /config --skip-pip')
        self.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                                         str(self.root), str(self.config_dir)],
                                        stdout=self.output.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Home Assistant exited ({self.process.returncode}): {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers (e.g. 401 after onboarding)
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"Home Assistant did not answer within {timeout_s:.0f} s: {self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        return self.output.read_text(errors="replace")[-chars:] if self.output.exists() else ""

    def errors(self, levels: tuple[str, ...] = ("ERROR", "CRITICAL")) -> list[str]:
        """The lines of these levels in Home Assistant's logs, oldest first (each start rotates the last run's
        home-assistant.log to home-assistant.log.1)."""
        lines = []
        for name in ("home-assistant.log.1", "home-assistant.log"):
            log = self.config_dir / name
            if log.exists():
                lines += [line for line in log.read_text(errors="replace").splitlines()
                          if any(f" {level} (" in line for level in levels)]
        return lines

    # --- REST
    def request(self, method: str, path: str, body: dict | None = None, form: dict | None = None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def onboard(self) -> None:
        """Create the owner and get a token (the `core_config` step is skipped: it adds integrations that reach
        the internet)."""
        client_id = f"{self.url}/"
        code = self.request("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "Test", "username": "test", "password": "fer-edge-test-password",
            "language": "en"})["auth_code"]
        self.token = self.request("POST", "/auth/token", form={
            "grant_type": "authorization_code", "code": code, "client_id": client_id})["access_token"]

    def login(self) -> None:
        """A token for the existing owner (after a restart)."""
        client_id = f"{self.url}/"
        flow = self.request("POST", "/auth/login_flow", {
            "client_id": client_id, "handler": ["homeassistant", None], "redirect_uri": client_id})
        result = self.request("POST", f"/auth/login_flow/{flow['flow_id']}", {
            "client_id": client_id, "username": "test", "password": "fer-edge-test-password"})
        self.token = self.request("POST", "/auth/token", form={
            "grant_type": "authorization_code", "code": result["result"], "client_id": client_id})["access_token"]

    def add_mqtt(self, port: int) -> dict:
        """Set up the MQTT integration against 127.0.0.1:`port`; returns the finished flow."""
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        assert flow.get("step_id") == "broker", flow
        result = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                              {"broker": "127.0.0.1", "port": port})
        assert result.get("type") == "create_entry", result
        return result

    def state(self, entity_id: str) -> dict | None:
        try:
            return self.request("GET", f"/api/states/{entity_id}")
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def call(self, domain: str, service: str, **data) -> None:
        self.request("POST", f"/api/services/{domain}/{service}", data)

    # --- websocket
    def ws(self, message_type: str, **payload):
        """One websocket command's result (https://developers.home-assistant.io/docs/api/websocket)."""
        return asyncio.run(self._ws(message_type, payload))

    async def _ws(self, message_type: str, payload: dict):
        import aiohttp

        async with aiohttp.ClientSession() as session, session.ws_connect(f"{self.url}/api/websocket") as ws:
            assert (await ws.receive_json())["type"] == "auth_required"
            await ws.send_json({"type": "auth", "access_token": self.token})
            assert (await ws.receive_json())["type"] == "auth_ok"
            await ws.send_json({"id": 1, "type": message_type, **payload})
            reply = await ws.receive_json()
            assert reply.get("success"), reply
            return reply["result"]

    def wait(self, predicate, timeout_s: float, what: str):
        """Poll `predicate()` until it returns something true; AssertionError naming `what` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(f"{what} not within {timeout_s} s (last: {last!r}); log: {self.errors()[-5:]}")
