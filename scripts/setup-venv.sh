#!/usr/bin/env bash
# Create .venv and install fer-edge with the given extra, e.g. `scripts/setup-venv.sh dev`.
# Run by test.sh and demo.sh. Installs once: a stamp file inside the venv holds the sha256 of pyproject.toml
# and the extra, and pip runs again only when either changes (or the venv is new). Quiet unless pip fails.
set -euo pipefail
extra=${1:-dev}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${FER_EDGE_VENV:-$root/.venv}
python=${PYTHON:-python3}
stamp=$venv/.fer-edge-installed
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1) $extra"
# An installed "dev" covers every other extra; "demo" covers "device".
if [[ -f $stamp ]]; then
  have=$(<"$stamp")
  [[ ${have%% *} == "${want%% *}" ]] || have=""
  case "${have#* } $extra" in
    "$extra $extra" | "dev "* | "demo device") exit 0 ;;
  esac
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [[ ! -x $venv/bin/python ]]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip > "$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi
echo "setup-venv: installing fer-edge[$extra] into $venv (once; again when pyproject.toml changes)" >&2
if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[$extra]" > "$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
echo "$want" > "$stamp"
