#!/usr/bin/env bash
# Install Home Assistant core (current release from PyPI) for the real-Home-Assistant test, once per machine.
#
# Home Assistant from 2024.4 on needs Python >= 3.12; Debian 12 (bookworm) has 3.11. So this builds a Debian 13
# (trixie) root with debootstrap (Python 3.13, gcc and python3.13-dev for lru-dict), makes a venv in it at /opt/ha
# and installs homeassistant, the packages it would otherwise install by itself at its first start (pyotp,
# PyQRCode) and the requirements of the integrations it always loads and those the test loads, so that the test
# runs offline (Home Assistant is started with --skip-pip).
#
#   scripts/install-home-assistant.sh            # build or reuse $FER_EDGE_HA_ROOT (default below)
#   FER_EDGE_HA_VERSION=2025.11.3 scripts/install-home-assistant.sh   # a chosen release instead of the newest
#
# The root is kept (like .venv) and rebuilt only when it lacks the stamp written at the end. Needs root
# (debootstrap, chroot) and the Debian mirror of apt's own sources; exits 3 with the reason where it cannot.
set -euo pipefail
root=${FER_EDGE_HA_ROOT:-/var/cache/fer-edge/ha-trixie}
version=${FER_EDGE_HA_VERSION:-}
stamp=$root/.fer-edge-ha-installed
recipe=2  # bump when the steps below change: an existing root is then completed, not rebuilt
want="homeassistant${version:+==$version} recipe $recipe"
if [[ -f $stamp && $(head -1 "$stamp") == "$want" ]]; then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "install-home-assistant: needs root (debootstrap and chroot); not installed" >&2
  exit 3
fi
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9  # one build at a time on this machine; a second caller waits, then finds it done
if [[ -f $stamp && $(head -1 "$stamp") == "$want" ]]; then
  exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap) >/dev/null || true
fi
command -v debootstrap >/dev/null 2>&1 || { echo "install-home-assistant: debootstrap not installable" >&2; exit 3; }
# The mirror apt already uses (sources.list or deb822 .sources), so no other host is needed.
mirror=${FER_EDGE_DEBIAN_MIRROR:-$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ \
  2>/dev/null | head -1 | tr -d ' ' || true)}
mirror=${mirror:-http://deb.debian.org/debian}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail() { tail -40 "$log" >&2; echo "install-home-assistant: $1" >&2; exit 3; }
build=$root.building
mkdir -p "$(dirname "$root")"
[[ -d $root && ! -d $build ]] && mv "$root" "$build"  # an older recipe's root: its debootstrap and venv are kept
if [[ ! -f $build/.debootstrap-done ]]; then  # a build cut short keeps its finished debootstrap
  rm -rf "$build"
  echo "install-home-assistant: debootstrap trixie from $mirror into $build (about a minute)" >&2
  debootstrap --variant=minbase --include=python3.13,python3.13-venv,python3.13-dev,gcc,libc6-dev,ca-certificates,tzdata \
    trixie "$build" "$mirror" >"$log" 2>&1 || fail "debootstrap failed"
  touch "$build/.debootstrap-done"
fi
cp /etc/resolv.conf "$build/etc/resolv.conf"
# The CAs this machine trusts (a network may re-sign TLS with its own CA): pip and Home Assistant use them.
cp -L /etc/ssl/certs/ca-certificates.crt "$build/etc/ssl/certs/ca-certificates.crt"
# Inside a private mount namespace: /proc and /dev vanish with the process, nothing stays mounted.
in_root() {
  unshare --mount --propagation private sh -c 'mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" &&
    shift && exec chroot "$0" env -i PATH=/opt/ha/bin:/usr/bin:/bin HOME=/root \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"' "$build" "$build" "$@"
}
echo "install-home-assistant: pip install $want in the trixie root (a few minutes)" >&2
in_root python3.13 -m venv /opt/ha >"$log" 2>&1 || fail "venv failed"
in_root pip install -q --upgrade pip wheel >"$log" 2>&1 || fail "pip upgrade failed"
# pyotp and PyQRCode: Home Assistant's auth MFA modules, otherwise installed by Home Assistant at its first start.
in_root pip install -q "homeassistant${version:+==$version}" pyotp PyQRCode >"$log" 2>&1 || fail "pip install $want failed"
# The requirements of the integrations Home Assistant always loads (its bootstrap's sets: the frontend must load,
# or it starts in recovery mode) and of those the test loads, with their dependencies, within its own pins; the
# test starts it with --skip-pip, so nothing is installed at run time.
in_root python - >"$log" 2>&1 <<'EOF' || fail "installing the integrations' requirements failed"
import json, pathlib, subprocess, sys
import homeassistant
from homeassistant import bootstrap
components = pathlib.Path(homeassistant.__file__).parent / "components"
todo = [*bootstrap.CORE_INTEGRATIONS, *bootstrap.LOGGING_AND_HTTP_DEPS_INTEGRATIONS, *bootstrap.FRONTEND_INTEGRATIONS,
        *bootstrap.DEFAULT_INTEGRATIONS, "mqtt", "onboarding", "api", "websocket_api", "config", "http", "auth"]
seen, requirements = set(), []
while todo:
    name = todo.pop()
    if name in seen or not (components / name / "manifest.json").is_file():
        continue
    seen.add(name)
    manifest = json.loads((components / name / "manifest.json").read_text())
    requirements += manifest.get("requirements", [])
    todo += manifest.get("dependencies", [])
constraints = pathlib.Path(homeassistant.__file__).parent / "package_constraints.txt"
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", str(constraints), *sorted(set(requirements))],
               check=True)
EOF
installed=$(in_root python -c 'import homeassistant.const as c; print(c.__version__)')
rm -rf "$root"
mv "$build" "$root"
printf '%s\n%s\n' "$want" "$installed" >"$stamp"
echo "install-home-assistant: Home Assistant $installed in $root" >&2
