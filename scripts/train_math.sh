#!/usr/bin/env bash
# Train on math with the paper's settings (configs/math_<selector>.yaml) on all GPUs of this machine.
#
#   scripts/train_math.sh [uniform|ds|mopps|dps] [key=value ...]
#   scripts/train_math.sh dps max_steps=10 output_dir=outputs/math_try
#
# Environment: ACCELERATE_CONFIG (default configs/accelerate/ddp.yaml; fsdp.yaml and
# deepspeed_zero2.yaml are the alternatives), NUM_PROCESSES (default: number of GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
SELECTOR="${1:-dps}"
[[ $# -gt 0 ]] && shift
CONFIG="configs/math_${SELECTOR}.yaml"
[[ -f "$CONFIG" ]] || { echo "no config $CONFIG (selectors: uniform, ds, mopps, dps)" >&2; exit 2; }
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-configs/accelerate/ddp.yaml}"
NUM_PROCESSES="${NUM_PROCESSES:-$(nvidia-smi -L 2>/dev/null | wc -l)}"
[[ "$NUM_PROCESSES" -ge 1 ]] || { echo "no GPU found; set NUM_PROCESSES or run 'mmdps train' directly" >&2; exit 2; }
exec accelerate launch --config_file "$ACCELERATE_CONFIG" --num_processes "$NUM_PROCESSES" \
  -m mmdps train --config "$CONFIG" "$@"
