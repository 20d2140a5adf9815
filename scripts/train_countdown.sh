#!/usr/bin/env bash
# Train on countdown with the paper's settings (configs/countdown_<selector>.yaml) on all GPUs of this machine.
#   scripts/train_countdown.sh [uniform|ds|mopps|dps] [key=value ...]
#   scripts/train_countdown.sh dps max_steps=10 output_dir=outputs/countdown_try
# Environment: ACCELERATE_CONFIG, NUM_PROCESSES (see scripts/train.sh).
exec "$(dirname "$0")/train.sh" countdown "$@"
