#!/usr/bin/env bash
# Retrain the bundled demonstration checkpoint from random initialisation (CPU or CUDA).
# Training pairs: every shared building-change pair that is not one of the LEVIR-CD test tiles
# the README scores on: LEVIR-CD train_* tiles, the LEVIR-CD 1024² images test_11/12/13
# (test_102 holds the test tile test_102_0512_0000 and stays out) and both WHU-CD pairs.
# Validation (best epoch): LEVIR-CD val_27. After training, the three LEVIR-CD test tiles are
# scored and stored in the metadata, and the metadata names the source datasets (the pairs are
# staged as <dataset>_<pair> links in a temporary folder). Only the weights are shipped (see the
# README's licence part).
# Usage: ci/train_bundled_model.sh OUT.pt [extra train options]
#        ci/train_bundled_model.sh --name-sources OUT.pt   (only the metadata step)
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCES='["LEVIR-CD", "LEVIR-CD-1024", "WHU-CD"]'
name_sources() {  # the staging folder's name in the metadata → the datasets the pairs came from
  .venv/bin/python - "$1" "$SOURCES" <<'PY'
import json, sys
import torch
from sam_cd_plugin.models.checkpoint import atomic_torch_save
path, sources = sys.argv[1], json.loads(sys.argv[2])
payload = torch.load(path, map_location="cpu", weights_only=False)
meta = json.loads(payload["meta"])
meta["training"]["data"] = sources
meta["training"]["settings"]["data"] = sources
meta["training"]["demo"] = True  # random initialisation, eight image pairs: see the README
payload["meta"] = json.dumps(meta, sort_keys=True)
atomic_torch_save(payload, path)
PY
}
if [ "${1:-}" = --name-sources ]; then name_sources "${2:?checkpoint}"; exit 0; fi
out=${1:?usage: ci/train_bundled_model.sh OUT.pt [train options]}; shift
data=${SAM_CD_SHARED_DATA:-../shared/data}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
link() {  # link <dataset> <pair>: the pair as <dataset>_<pair> in the staging folder
  for d in A B label; do
    mkdir -p "$stage/$d"
    ln -s "$(realpath "$data/$1/$d/$2.png")" "$stage/$d/$1_$2.png"
  done
}
for p in train_36_0512_0512 train_386_0512_0768 train_412_0512_0768 val_27_0000_0256 \
         test_102_0512_0000 test_55_0256_0000 test_77_0512_0256; do link LEVIR-CD "$p"; done
for p in test_11 test_12 test_13; do link LEVIR-CD-1024 "$p"; done
for p in 000121 000213; do link WHU-CD "$p"; done
.venv/bin/python -m sam_cd_plugin train --data "$stage" \
  --include 'LEVIR-CD_train_*' --include 'LEVIR-CD-1024_*' --include 'WHU-CD_*' \
  --val-include 'LEVIR-CD_val_*' --eval-include 'LEVIR-CD_test_*' \
  --method sam-cem-cd --encoder fastsam-s --out "$out" "$@"
name_sources "$out"
