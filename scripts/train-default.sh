#!/usr/bin/env bash
# Reproduce the shipped model from FER2013 in one command: the long CPU recipe (training/configs/long.toml,
# 200 epochs, resumable), then training/publish.py: the full-integer int8 conversion into device/models/, the
# run's record in docs/default-run/ and the README's results. The model card and the README record the wall clock.
# Usage: scripts/train-default.sh [RUNS_DIR]   (FER2013 from $FER2013_DIR or ../shared/datasets/fer2013)
# Interrupted? Run it again: training continues from the last epoch checkpoint.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
runs=${1:-runs}
scripts/setup-venv.sh train
python=${FER_EDGE_VENV:-$root/.venv}/bin/python
resume() { [[ -f $1/checkpoint.json ]] && echo --resume || true; }
"$python" training/train.py --config training/configs/long.toml --out "$runs/long" $(resume "$runs/long")
"$python" training/publish.py --run "$runs/long"
