#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs ruff and pytest.
#   scripts/test.sh                 # everything
#   scripts/test.sh -m "not slow"   # skip the tests that train or convert a model
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# System tools the tests use: a real MQTT broker, systemd-analyze for the unit, openssl for TLS certificates,
# headless Chromium for the live view page; debootstrap for Home Assistant's root.
missing=()
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto mosquitto-clients)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# IP cameras that drop (tests/test_streams.py): ffmpeg, and GStreamer's RTSP server for the system python3.
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1 ||
  missing+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
# debootstrap builds the Debian 13 root of the real Home Assistant check (scripts/install-home-assistant.sh).
command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}") >/dev/null
  else
    echo "note: not installed: ${missing[*]} (sudo apt-get install ${missing[*]}); tests that need them skip" >&2
  fi
fi
"$root/scripts/setup-venv.sh" dev
# Home Assistant core in a Debian 13 root, once per machine (a few minutes the first time); where it cannot be
# installed, the real Home Assistant check skips and says why.
"$root/scripts/install-home-assistant.sh" || echo "note: Home Assistant not installed: its check skips" >&2
export TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
