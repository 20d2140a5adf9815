#!/usr/bin/env bash
# The GPU check in one command: sets up the environment, then runs scripts/gpu_check.py (the `gpu`
# tests, rollout throughput, GRPO step time and peak memory of mmdps and, if importable, TRL).
#
#   scripts/gpu_check.sh --out DIR [--wheels .whl] [--dry-run] [other scripts/gpu_check.py options]
#
# --wheels DIR  installs the wheels in DIR (packages the machine lacks: trl, datasets, math-verify, ...;
#               fetch them with `scripts/gpu_check.sh --fetch-wheels DIR` on a machine with PyPI) into a
#               private folder put first on PYTHONPATH, without touching the network.
# mmdps maps `mmdps.tasks` / `mmdps.verifiers` onto the top-level tasks/ and verifiers/ folders, so a bare
# checkout is not importable as a package: without an installed mmdps the script installs this checkout
# in editable mode (offline, no build isolation; needs setuptools and wheel, as a python with pip has).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# HF generate grows each layer's KV cache by concatenation: with the default allocator a 256 x 512-token
# rollout left 77 GiB reserved for 23 GiB allocated (H100) and its first step took twice as long.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}

# The packages a GPU machine with torch, transformers, accelerate and peft lacks, for CPython 3.12.
WHEELS=(trl==1.16.0 datasets==5.2.0 "dill<0.4.2" "multiprocess<0.70.20" math-verify==0.9.0
        latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2)

if [ "${1:-}" = "--fetch-wheels" ]; then
  dest=${2:?usage: scripts/gpu_check.sh --fetch-wheels DIR}
  exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" "${WHEELS[@]}"
fi

args=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--wheels" ]; then
    site=${TMPDIR:-/tmp}/mmdps-gpu-site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$2"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    shift 2
  else
    args+=("$1")
    shift
  fi
done

if ! "$PY" -c "import mmdps.tasks, mmdps.verifiers" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e .
fi
exec "$PY" scripts/gpu_check.py "${args[@]}"
