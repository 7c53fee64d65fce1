#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs ruff and pytest.
#   scripts/test.sh                 # everything
#   scripts/test.sh -m "not slow"   # skip the tests that train or convert a model
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if ! command -v mosquitto >/dev/null 2>&1 && [[ ! -x /usr/sbin/mosquitto ]]; then
  if [[ $(id -u) == 0 ]]; then
    (apt-get update -q && apt-get install -y -q mosquitto mosquitto-clients) >/dev/null
  else
    echo "note: mosquitto is not installed (sudo apt-get install mosquitto); MQTT tests will skip" >&2
  fi
fi
"$root/scripts/setup-venv.sh" dev
export TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
