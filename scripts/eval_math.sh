#!/usr/bin/env bash
# Evaluate a checkpoint on the five math test sets of the paper (AIME24, AMC23, MATH500, Minerva,
# OlympiadBench; DeepScaleR JSON files) with 16 samples per problem at temperature 0.6 and an 8k
# response limit, then put the five reports side by side (table + bar plot).
#
#   scripts/eval_math.sh MODEL [TEST_DIR] [OUTPUT] [extra mmdps eval flags...]
#   scripts/eval_math.sh outputs/math_dps/checkpoints/checkpoint-000360/model data/math/test \
#       runs/eval/math/math_dps --engine vllm
#
# MODEL is a model folder or hub id; for a training run, the `model/` folder of one of its checkpoints,
# <output_dir>/checkpoints/checkpoint-<step, 6 digits>/model (a LoRA run saves only the adapter there:
# the hf engine merges it into its base on load; for vllm write a merged copy first, see docs/evaluation.md).
set -euo pipefail
MODEL=${1:?usage: eval_math.sh MODEL [TEST_DIR] [OUTPUT] [extra flags]}
TEST_DIR=${2:-data/math/test}
# A checkpoint's model folder, <run>/checkpoints/checkpoint-N/model, gets the report name <run>-checkpoint-N.
NAME=$(basename "$MODEL")
if [[ $NAME == model ]]; then
  CKPT=$(dirname "$MODEL")
  NAME="$(basename "$(dirname "$(dirname "$CKPT")")")-$(basename "$CKPT")"
fi
OUTPUT=${3:-runs/eval/math/$NAME}
shift $(( $# < 3 ? $# : 3 ))

reports=()
for bench in aime amc math500 minerva olympiad_bench; do
  if [[ ! -f "$TEST_DIR/$bench.json" ]]; then
    echo "skipping $bench: $TEST_DIR/$bench.json not found" >&2
    continue
  fi
  mmdps eval --model "$MODEL" --task math --data "$TEST_DIR/$bench.json" --split test \
    --n 16 --temperature 0.6 --top-p 1.0 --max-new-tokens 8192 \
    --seed 0 --label "$bench" --output "$OUTPUT/$bench" "$@"
  reports+=("$OUTPUT/$bench")
done
if (( ${#reports[@]} > 0 )); then
  mmdps eval --compare "${reports[@]}" --output "$OUTPUT"
fi
