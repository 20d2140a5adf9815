#!/usr/bin/env bash
# Evaluate a (VL) checkpoint on the Geometry3K test split with the paper's validation setting:
# 16 samples per problem, temperature 0.6, top-p 1.0, 1024 new tokens; reports mean@16 and pass@k.
#
#   scripts/eval_geometry.sh MODEL [DATA] [OUTPUT] [extra mmdps eval flags...]
#   scripts/eval_geometry.sh checkpoints/dps/step_120 data/geometry3k runs/eval/dps --engine vllm
#
# DATA is a Geometry3K folder (one sub-folder per problem, or the parquet/verl layout);
# use DATA=procedural for a generated geometry test set (add --num 500).
set -euo pipefail
MODEL=${1:?usage: eval_geometry.sh MODEL [DATA] [OUTPUT] [extra flags]}
DATA=${2:-data/geometry3k}
OUTPUT=${3:-runs/eval/geometry3k/$(basename "$MODEL")}
shift $(( $# < 3 ? $# : 3 ))

exec mmdps eval --model "$MODEL" --task geometry3k --data "$DATA" --split test \
  --n 16 --temperature 0.6 --top-p 1.0 --max-new-tokens 1024 --max-prompt-length 1024 \
  --seed 0 --output "$OUTPUT" "$@"
