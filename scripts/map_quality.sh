#!/usr/bin/env bash
# How true the map's neighbourhoods are (docs/performance.md, "The map"): sklearn's trustworthiness
# at k=10 of the t-SNE map of the joint space, for the demo's sample corpus and the CoSQA corpus,
# both embedded with the packaged MiniLM (`--models offline`). 1.0: no map neighbour is a stranger.
# Usage: scripts/map_quality.sh [COSQA_DIR] [RUNS_DIR]
set -euo pipefail
DATA=${1:-../shared/data/cosqa}
RUNS=${2:-runs}
MMRAG=${MMRAG:-.venv/bin/mmrag}
mkdir -p "$RUNS"
$MMRAG index demo/sample -c "$RUNS/sample-offline.coll" --models offline
echo "sample corpus:"
$MMRAG map -c "$RUNS/sample-offline.coll" --trustworthiness
$MMRAG index "$DATA/corpus.jsonl" -c "$RUNS/cosqa-offline.coll" --models offline
echo "CoSQA corpus:"
$MMRAG map -c "$RUNS/cosqa-offline.coll" --trustworthiness
