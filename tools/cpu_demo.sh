#!/usr/bin/env bash
# The CPU main job: SODA warmup → DPO on SmolLM2-135M-Instruct, in ./.venv (created if needed).
set -euo pipefail
source "$(dirname "$0")/env.sh"
exec python tools/cpu_demo.py "$@"
