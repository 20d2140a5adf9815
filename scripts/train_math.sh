#!/usr/bin/env bash
# Train on math with the paper's settings (configs/math_<selector>.yaml) on all GPUs of this machine.
#   scripts/train_math.sh [uniform|ds|mopps|dps] [key=value ...]
#   scripts/train_math.sh dps max_steps=10 output_dir=outputs/math_try
# Environment: ACCELERATE_CONFIG, NUM_PROCESSES (see scripts/train.sh).
exec "$(dirname "$0")/train.sh" math "$@"
