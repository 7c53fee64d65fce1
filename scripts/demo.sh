#!/usr/bin/env bash
# The main job, on any machine without a camera: the fer-edge daemon on a real face, its MQTT messages
# printed by a subscriber as they arrive, with a local broker started here (mosquitto where installed,
# else the pure-Python amqtt). The face is the public-domain NASA astronaut portrait (Eileen Collins)
# that scikit-image ships; DEMO_SOURCE=<video, image, folder or camera index> uses other media. The subscriber
# ends with how many messages arrived per topic.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/setup-venv.sh" demo
py=$root/.venv/bin/python
source=${DEMO_SOURCE:-$($py -c 'import pathlib, skimage.data as d; print(pathlib.Path(d.__file__).parent / "astronaut.png")')}
port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

mosquitto=$(command -v mosquitto || { [[ -x /usr/sbin/mosquitto ]] && echo /usr/sbin/mosquitto; } || true)
if [[ -n $mosquitto ]]; then
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$work/mosquitto.conf"
  [[ $(id -u) == 0 ]] && echo "user root" >> "$work/mosquitto.conf"
  "$mosquitto" -c "$work/mosquitto.conf" > "$work/broker.log" 2>&1 &
  echo "== broker: mosquitto on 127.0.0.1:$port"
else
  "$py" -c "import amqtt" 2>/dev/null || "$py" -m pip install -q --disable-pip-version-check amqtt
  "$py" scripts/demo_broker.py "$port" > "$work/broker.log" 2>&1 &
  echo "== broker: amqtt on 127.0.0.1:$port (mosquitto is not installed)"
fi
pids+=($!)
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

echo "== subscriber: fer-edge watch --topic 'fer-edge/#' --topic 'homeassistant/#' (like mosquitto_sub -v)"
"$py" -m device watch --mqtt-host 127.0.0.1 --mqtt-port "$port" --topic 'fer-edge/#' --topic 'homeassistant/#' \
  --until offline --timeout 120 --summary &
watcher=$!
pids+=($watcher)
sleep 1
# Paced like a camera: 8 s of frames at 10 fps, `emotions` at 2 Hz, `stats` every 2 s, Home Assistant discovery.
echo "== daemon: fer-edge run --source $source (8 s at 10 fps)"
"$py" -m device run --source "$source" --source-loop true --source-realtime true --source-fps 10 \
  --service-max-frames 80 --mqtt-host 127.0.0.1 --mqtt-port "$port" --device-id demo \
  --mqtt-stats-interval-s 2 --mqtt-emotions-max-hz 2
wait "$watcher"
echo "== one JSON line per image: fer-edge classify $source"
"$py" -m device classify "$source"
