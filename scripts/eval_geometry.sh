#!/usr/bin/env bash
# Evaluate a (VL) checkpoint on the Geometry3K test split with the paper's validation setting:
# 16 samples per problem, temperature 0.6, top-p 1.0, 1024 new tokens; reports mean@16 and pass@k.
#
#   scripts/eval_geometry.sh MODEL [DATA] [OUTPUT] [extra mmdps eval flags...]
#   scripts/eval_geometry.sh outputs/geometry_dps/checkpoints/checkpoint-000120/model data/geometry3k \
#       runs/eval/geometry_dps --engine vllm
#
# MODEL is a model folder or hub id; for a training run, the `model/` folder of one of its checkpoints,
# <output_dir>/checkpoints/checkpoint-<step, 6 digits>/model (a LoRA run saves only the adapter there:
# the hf engine merges it into its base on load; for vllm write a merged copy first, see docs/evaluation.md).
#
# DATA is a Geometry3K folder (one sub-folder per problem, or the parquet/verl layout);
# use DATA=procedural for a generated geometry test set (add --num 500).
set -euo pipefail
MODEL=${1:?usage: eval_geometry.sh MODEL [DATA] [OUTPUT] [extra flags]}
DATA=${2:-data/geometry3k}
# A checkpoint's model folder, <run>/checkpoints/checkpoint-N/model, gets the report name <run>-checkpoint-N.
NAME=$(basename "$MODEL")
if [[ $NAME == model ]]; then
  CKPT=$(dirname "$MODEL")
  NAME="$(basename "$(dirname "$(dirname "$CKPT")")")-$(basename "$CKPT")"
fi
OUTPUT=${3:-runs/eval/geometry3k/$NAME}
shift $(( $# < 3 ? $# : 3 ))

exec mmdps eval --model "$MODEL" --task geometry3k --data "$DATA" --split test \
  --n 16 --temperature 0.6 --top-p 1.0 --max-new-tokens 1024 --max-prompt-length 1024 \
  --seed 0 --output "$OUTPUT" "$@"
