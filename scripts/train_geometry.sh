#!/usr/bin/env bash
# Train on geometry with the paper's settings (configs/geometry_<selector>.yaml) on all GPUs of this machine.
#   scripts/train_geometry.sh [uniform|ds|mopps|dps] [key=value ...]
#   scripts/train_geometry.sh dps max_steps=10 output_dir=outputs/geometry_try
# Environment: ACCELERATE_CONFIG, NUM_PROCESSES (see scripts/train.sh).
exec "$(dirname "$0")/train.sh" geometry "$@"
