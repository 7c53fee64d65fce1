#!/usr/bin/env bash
# Create .venv (once) and install fer-edge with the given extra, e.g. `scripts/setup-venv.sh dev`.
# Sourced by test.sh and demo.sh; safe to run again (pip skips what is installed).
set -euo pipefail
extra=${1:-dev}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${FER_EDGE_VENV:-$root/.venv}
python=${PYTHON:-python3}
if [[ ! -x $venv/bin/python ]]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
"$venv/bin/python" -m pip install -q -e "$root[$extra]"
