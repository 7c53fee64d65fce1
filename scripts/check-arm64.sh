#!/usr/bin/env bash
# Proof that fer-edge installs and runs on Raspberry Pi OS (arm64), without a Pi: builds a Debian Bookworm
# arm64 root (Raspberry Pi OS Bookworm 64-bit is Debian Bookworm arm64 plus Raspberry Pi's own packages) with
# debootstrap, runs it through qemu-user-static (binfmt_misc), installs the project there as the README's
# "Install on a Raspberry Pi" section says (a Python 3.11 venv with --system-site-packages, then
# `pip install -e '.[device]'`), runs `fer-edge run` on a clip against a mosquitto on this host and checks the
# messages that arrive (status online/offline, emotions JSON, dominant, Home Assistant discovery).
#
#   sudo scripts/check-arm64.sh            # root: debootstrap, chroot, mount
#   ARM64_ROOT=/var/tmp/x scripts/check-arm64.sh   # where the arm64 root is built (kept and reused)
#   ARM64_CLIP=clip.mp4 ...                # the clip (default ../shared/media/woman2.mp4)
#
# Where it cannot run (not root, no binfmt_misc, no qemu, no network to Debian or PyPI, no clip) it prints
# one `skipped: <why>` line and exits 0. It exits 1 when the install or the run fails. Emulated timings say
# nothing about a Pi's speed. Not from the README's list: python3-picamera2 (Raspberry Pi's apt repository,
# not Debian's) and git (the tree is copied in).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${ARM64_ROOT:-/var/tmp/fer-edge-arm64}
clip=${ARM64_CLIP:-$root/../shared/media/woman2.mp4}
mirror=${ARM64_MIRROR:-http://deb.debian.org/debian}
started=$(date +%s)
skip() { echo "skipped: $*"; exit 0; }
fail() { echo "arm64 check FAILED: $*" >&2; exit 1; }
stage() { echo "== $(($(date +%s) - started)) s: $*"; }

[[ $(id -u) == 0 ]] || skip "needs root (debootstrap, chroot and mounts); run: sudo $0"
[[ -f $clip ]] || skip "no clip at $clip (set ARM64_CLIP=<a video with a face>)"
if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
    || skip "binfmt_misc is not mounted and cannot be (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
fi
curl -fsS -o /dev/null --max-time 15 "$mirror/dists/bookworm/Release" \
  || skip "no network to the Debian archive ($mirror)"
curl -fsS -o /dev/null --max-time 15 https://pypi.org/simple/pip/ || skip "no network to PyPI (https://pypi.org)"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
[[ -x /usr/bin/qemu-aarch64-static ]] || missing+=(qemu-user-static binfmt-support)
command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
if ((${#missing[@]})); then
  stage "apt-get install ${missing[*]}"
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}") >/dev/null \
    || skip "cannot install ${missing[*]} with apt-get"
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  update-binfmts --enable qemu-aarch64 2>/dev/null \
    || grep -h '^:qemu-aarch64:' /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register 2>/dev/null \
    || skip "cannot register qemu-aarch64 with binfmt_misc"
fi

mounted=()
broker_pid=""
sub_pid=""
cleanup() {
  for pid in $sub_pid $broker_pid; do kill "$pid" 2>/dev/null || true; done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT

# 1. The arm64 root: built once, reused while $target/.fer-edge-root exists.
if [[ ! -f $target/.fer-edge-root ]]; then
  stage "debootstrap --arch=arm64 bookworm $target (emulated second stage: minutes)"
  rm -rf "$target"
  timeout 1500 debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$target" "$mirror" > "$target.debootstrap.log" 2>&1 \
    || fail "debootstrap (log: $target.debootstrap.log)"
  touch "$target/.fer-edge-root"
fi
cp /etc/resolv.conf "$target/etc/resolv.conf"
# The host's CA bundle: Debian's plus any local CA (e.g. a TLS-inspecting proxy's) that pip needs to reach PyPI.
[[ -f /etc/ssl/certs/ca-certificates.crt ]] && cp /etc/ssl/certs/ca-certificates.crt "$target/etc/ssl/certs/"
# A clean environment: the host's PIP_* settings (find-links to host folders...) do not belong in the Pi.
in_root=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL; do
  [[ -n ${!var:-} ]] && in_root+=("$var=${!var}")
done
in_root+=(chroot "$target")
for fs in proc sys dev; do
  mount --bind "/$fs" "$target/$fs" && mounted+=("$target/$fs")
done
[[ $("${in_root[@]}" uname -m) == aarch64 ]] || fail "the chroot does not run as aarch64"
python_version=$("${in_root[@]}" python3 -c 'import platform; print(platform.python_version(), platform.machine())')
stage "arm64 root ready: Python $python_version"

# 2. The project, installed as the README's Raspberry Pi section says (the tree copied to /opt/fer-edge).
app=$target/opt/fer-edge
rm -rf "$app" && mkdir -p "$app"
git -C "$root" ls-files -z --cached --others --exclude-standard | (cd "$root" && xargs -0 tar -cf - --) \
  | tar -xf - -C "$app"
stage "python3 -m venv --system-site-packages .venv && .venv/bin/pip install -e '.[device]'"
pip_started=$(date +%s)
"${in_root[@]}" /bin/sh -c "cd /opt/fer-edge && python3 -m venv --system-site-packages .venv \
  && timeout 1200 .venv/bin/pip install -q --disable-pip-version-check -e '.[device]'" > "$target.pip.log" 2>&1 \
  || { tail -20 "$target.pip.log" >&2; fail "pip install -e '.[device]' (log: $target.pip.log)"; }
pip_s=$(($(date +%s) - pip_started))
# Does the installed interpreter run here? ai-edge-litert 2.x segfaults while creating the interpreter under
# Debian Bookworm's qemu-user 7.2 (also with QEMU_CPU=cortex-a72); 1.x runs. That says nothing about a real
# Pi, so the check notes it and goes on with ARM64_LITERT (default 'ai-edge-litert<2'; empty: stop instead).
litert_note=""
smoke="from device.classifier import make_interpreter; make_interpreter('device/models/fer_int8.tflite')"
if ! "${in_root[@]}" /bin/sh -c "cd /opt/fer-edge && .venv/bin/python -c \"$smoke\"" > /dev/null 2>&1; then
  installed=$("${in_root[@]}" /opt/fer-edge/.venv/bin/python -c \
    'from importlib.metadata import version; print(version("ai-edge-litert"))')
  replacement=${ARM64_LITERT-ai-edge-litert<2}
  [[ -n $replacement ]] || fail "ai-edge-litert $installed crashes creating the interpreter under qemu-user"
  echo "note: ai-edge-litert $installed crashes creating the interpreter under qemu-user; retrying with '$replacement'"
  "${in_root[@]}" /opt/fer-edge/.venv/bin/pip install -q --disable-pip-version-check "$replacement" \
    >> "$target.pip.log" 2>&1 || fail "pip install '$replacement'"
  "${in_root[@]}" /bin/sh -c "cd /opt/fer-edge && .venv/bin/python -c \"$smoke\"" > /dev/null 2>&1 \
    || fail "the interpreter crashes with '$replacement' too"
  litert_note=" (ai-edge-litert $installed, the version pip chose, crashes under qemu-user; ran with '$replacement')"
fi
"${in_root[@]}" /opt/fer-edge/.venv/bin/fer-edge check-config > /dev/null 2>&1 || fail "fer-edge check-config"

# 3. The daemon on the clip, publishing to a mosquitto on this host (the chroot shares the host's network).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n' "$port" > "$work/mosquitto.conf"
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$work/mosquitto.conf" > "$work/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
timeout 600 mosquitto_sub -h 127.0.0.1 -p "$port" -v -t 'fer-edge/#' -t 'homeassistant/#' > "$work/messages" &
sub_pid=$!
sleep 1
cp "$clip" "$target/tmp/clip.mp4"
stage "fer-edge run --source clip.mp4 (60 frames) -> mosquitto 127.0.0.1:$port"
run_started=$(date +%s)
"${in_root[@]}" /opt/fer-edge/.venv/bin/fer-edge run --source /tmp/clip.mp4 \
  --service-max-frames 60 --mqtt-host 127.0.0.1 --mqtt-port "$port" --device-id arm64 \
  --mqtt-emotions-max-hz 1000 --mqtt-stats-interval-s 1 > "$work/daemon.log" 2>&1 \
  || { rc=$?; cat "$work/daemon.log" >&2; fail "fer-edge run exited $rc"; }
run_s=$(($(date +%s) - run_started))
sleep 1
kill "$sub_pid" 2>/dev/null || true
python3 - "$work/messages" <<'EOF' || { cat "$work/daemon.log" >&2; fail "the messages (above: the daemon's log)"; }
import json, sys
lines = open(sys.argv[1]).read().splitlines()
topics = [line.split(" ", 1)[0] for line in lines]
payload = {t: [line.split(" ", 1)[1] for line in lines if line.startswith(t + " ")] for t in set(topics)}
status = payload.get("fer-edge/arm64/status", [])
emotions = [json.loads(p) for p in payload.get("fer-edge/arm64/emotions", [])]
assert status[:1] == ["online"] and status[-1:] == ["offline"], f"status {status}"
assert len(emotions) >= 30, f"only {len(emotions)} emotions messages"
faces = [face for e in emotions for face in e["faces"]]
assert all(abs(sum(f["scores"].values()) - 1) < 0.02 for f in faces), "scores do not sum to 1"
assert payload.get("fer-edge/arm64/dominant"), "no dominant"
assert json.loads(payload["homeassistant/sensor/arm64/emotion/config"][0])["state_topic"] == "fer-edge/arm64/dominant"
counts = ", ".join(f"{'discovery' if t.endswith('/config') else t.rsplit('/', 1)[-1]} {topics.count(t)}"
                   for t in sorted(set(topics)))
emotion = max({f["smoothed_emotion"] for f in faces}, key=[f["smoothed_emotion"] for f in faces].count)
print(f"messages: {counts}; {len(faces)} faces, mostly {emotion}")
EOF
machine=$("${in_root[@]}" /opt/fer-edge/.venv/bin/python -c \
  'import platform, cv2, numpy; from importlib.metadata import version as v; print(platform.machine(), "Python", platform.python_version(), "numpy", numpy.__version__, "opencv", cv2.__version__, "ai-edge-litert", v("ai-edge-litert"))')
echo "arm64 check passed$litert_note: $machine; pip install ${pip_s} s, daemon run ${run_s} s (60 frames, emulated), total $(($(date +%s) - started)) s"
rm -rf "$work"
