#!/usr/bin/env bash
# Run the whole test suite (unit, CLI end-to-end, SmolLM2) in ./.venv, creating it if needed.
source "$(dirname "$0")/env.sh"
exec python -m pytest -q -p no:cacheprovider tests "$@"
