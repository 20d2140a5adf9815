#!/usr/bin/env bash
# Train one domain with the paper's settings (configs/<domain>_<selector>.yaml) on all GPUs of this machine.
#
#   scripts/train.sh DOMAIN [uniform|ds|mopps|dps] [key=value ...]     (DOMAIN: math, countdown, geometry)
#   scripts/train.sh countdown dps max_steps=10 output_dir=outputs/countdown_try
#
# Environment: ACCELERATE_CONFIG (default configs/accelerate/ddp.yaml; fsdp.yaml and
# deepspeed_zero2.yaml are the alternatives), NUM_PROCESSES (default: number of GPUs).
#
# Runs from the current directory, as `mmdps train` does: relative paths (output_dir, data, a model folder, in
# the config or as key=value) are read from where you call it; only the shipped configs are found in the checkout.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
DOMAIN="${1:?usage: scripts/train.sh DOMAIN [SELECTOR] [key=value ...]}"
shift
SELECTOR="${1:-dps}"
[[ $# -gt 0 ]] && shift
CONFIG="$REPO/configs/${DOMAIN}_${SELECTOR}.yaml"
[[ -f "$CONFIG" ]] || { echo "no config $CONFIG (domains: math, countdown, geometry; selectors: uniform, ds, mopps, dps)" >&2; exit 2; }
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/configs/accelerate/ddp.yaml}"
NUM_PROCESSES="${NUM_PROCESSES:-$( (nvidia-smi -L 2>/dev/null || true) | wc -l)}"
[[ "$NUM_PROCESSES" -ge 1 ]] || { echo "no GPU found; set NUM_PROCESSES or run 'mmdps train' directly" >&2; exit 2; }
exec accelerate launch --config_file "$ACCELERATE_CONFIG" --num_processes "$NUM_PROCESSES" \
  -m mmdps train --config "$CONFIG" "$@"
