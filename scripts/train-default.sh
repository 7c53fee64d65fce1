#!/usr/bin/env bash
# Reproduce the shipped model from FER2013 in one command: stage 1 (training/configs/default.toml), stage 2
# (training/configs/restart.toml, a warm restart from stage 1's best PublicTest model), then the full-integer
# int8 conversion into device/models/. The model card (and the README's Results) records each stage's wall clock.
# Usage: scripts/train-default.sh [RUNS_DIR]   (FER2013 from $FER2013_DIR or ../shared/datasets/fer2013)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
runs=${1:-runs}
scripts/setup-venv.sh train
python=${FER_EDGE_VENV:-$root/.venv}/bin/python
# --resume lets an interrupted stage continue where its last epoch checkpoint left off.
resume() { [[ -f $1/checkpoint.json ]] && echo --resume || true; }
"$python" training/train.py --config training/configs/default.toml --out "$runs/stage1" $(resume "$runs/stage1")
"$python" training/train.py --config training/configs/restart.toml --init-from "$runs/stage1/model.keras" \
  --out "$runs/stage2" $(resume "$runs/stage2")
"$python" convert/quantize.py --model "$runs/stage2/model.keras" --out device/models
