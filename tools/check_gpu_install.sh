#!/usr/bin/env bash
# Checks, without a GPU and without installing anything, that README's GPU install
# commands still resolve on PyPI against the pinned sets:
#   training:  pip install -c constraints-gpu.txt -e ".[deepspeed]"
#   snapshot:  pip install -c constraints-gpu-vllm.txt vllm==0.33.0 pyyaml tqdm pydantic openai datasets
#              pip install --no-deps -e .
#   GAD:       pip install -c constraints-gpu-gad.txt -e ".[deepspeed]" vllm==0.30.0
#              (training with TRL's GRPO rollouts on vLLM in the training process, use_vllm: true)
# Each runs as `pip install --dry-run --report` in a throwaway Python 3.12 venv, and the
# resolved set must be exactly the pinned file (nothing unpinned pulled in, no stale pin).
# Exit status 0: all three resolve; 1: something does not (the message says what).
#
#   bash tools/check_gpu_install.sh               # check (a few minutes, no multi-GB downloads)
#   bash tools/check_gpu_install.sh --regenerate  # re-resolve from the top-level pins below,
#                                                 # rewrite the three constraint files, then check
#
# pip runs isolated (--isolated, PIP_CONFIG_FILE=/dev/null): a machine's own pip config,
# find-links, extra indexes or global constraints (such as a local CPU torch wheel or a
# torch cap) would change the answer. The index is PyPI unless SODA_GPU_INDEX_URL says
# otherwise. `--use-feature=fast-deps` reads wheel metadata with HTTP range requests when
# an index does not serve PEP 658 metadata files (pypi.org does; some mirrors do not), so
# torch, vLLM and the CUDA libraries are never downloaded whole.
# Python 3.12: SODA_PYTHON312, else python3.12 on PATH, else pyenv's 3.12.x.
set -euo pipefail
SODA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$SODA_ROOT"

# The top-level pins the constraint files are resolved from (used by --regenerate).
GPU_TORCH=2.14.0      # vllm 0.33.0 pins torch==2.14.0; Axolotl 0.21.0 allows >=2.13,<2.15
GPU_AXOLOTL=0.21.0
GPU_VLLM=0.33.0
# The GAD set: TRL 1.14.1 declares vllm>=0.20.0,<=0.30.0 and Axolotl 0.21.0's vllm extra
# vllm>=0.30.0, so 0.30.0 is the one vLLM both accept; it pins torch==2.13.0 (inside Axolotl's
# >=2.13,<2.15). vllm 0.20.0-0.26.0 pin torch==2.11.0; 0.33.0 needs pillow>=13 (gradio: <13).
GAD_VLLM=0.30.0
GAD_TORCH=2.13.0
GAD_TRL=1.14.1
GPU_PIP=26.3          # the pip the check runs with
SNAPSHOT_DEPS=(pyyaml tqdm pydantic openai datasets "ray[data]==2.60.0")  # what soda_plugin/snapshot imports besides vllm
INDEX_URL=${SODA_GPU_INDEX_URL:-https://pypi.org/simple}
TRAIN_C=constraints-gpu.txt
VLLM_C=constraints-gpu-vllm.txt
GAD_C=constraints-gpu-gad.txt

mode=check
case "${1:-}" in
  "") ;;
  --regenerate) mode=regenerate ;;
  *) echo "usage: bash tools/check_gpu_install.sh [--regenerate]" >&2; exit 2 ;;
esac

fail() { echo "check_gpu_install: FAIL: $*" >&2; exit 1; }

source "$SODA_ROOT/tools/find_python.sh"

PY312=${SODA_PYTHON312:-$(soda_find_python 3.12)} || fail "no Python 3.12 found (set SODA_PYTHON312, or put python3.12 on PATH, or install it with pyenv)"
"$PY312" -c 'import sys, platform
ok = sys.version_info[:2] == (3, 12) and sys.platform == "linux" and platform.machine() == "x86_64"
sys.exit(0 if ok else 1)' || fail "$PY312 is not CPython 3.12 on Linux x86_64; the GPU sets are pinned for exactly that"

work=$(mktemp -d "${TMPDIR:-/tmp}/soda-gpu-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PIP_CONFIG_FILE=/dev/null
"$PY312" -m venv "$work/venv"
pip_() { "$work/venv/bin/python" -m pip --isolated --disable-pip-version-check "$@"; }
pip_ install -q --index-url "$INDEX_URL" "pip==$GPU_PIP" || fail "could not install pip==$GPU_PIP from $INDEX_URL (is the index reachable?)"
DRY=(install --dry-run --ignore-installed --index-url "$INDEX_URL" --use-feature=fast-deps)

# dry_run NAME ARGS...: runs `pip install --dry-run --report $work/NAME.json ARGS` in the
# background, output in $work/NAME.log.
dry_run() {
  local name=$1; shift
  echo "check_gpu_install: pip install $* (dry run)" >&2
  ( rc=0; pip_ "${DRY[@]}" --report "$work/$name.json" "$@" >"$work/$name.log" 2>&1 || rc=$?; echo "$rc" >"$work/$name.rc" ) &
}
# finish NAME WHAT: fails with pip's own explanation when the dry run NAME did not resolve.
finish() {
  local name=$1 what=$2
  if [ "$(cat "$work/$name.rc" 2>/dev/null)" != 0 ]; then
    echo "----- pip's output ($name) -----" >&2
    grep -v -E 'fast-deps|^ *(Collecting|Obtaining|Downloading|Requirement already|Using cached) ' "$work/$name.log" | tail -n 40 >&2
    fail "$what no longer resolves (see pip's output above)"
  fi
}

# write_pins REPORT OUT HEADER...: the report's install list as name==version lines.
write_pins() {
  "$PY312" - "$@" <<'EOF'
import json, re, sys
report, out, *header = sys.argv[1:]
install = json.load(open(report))["install"]
pins = {}
for item in install:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if re.sub(r"[-_.]+", "-", name).lower() != "soda-plugin":
        pins[name] = version
with open(out, "w") as f:
    for line in header:
        f.write(f"# {line}\n" if line else "#\n")
    for name in sorted(pins, key=lambda n: re.sub(r"[-_.]+", "-", n).lower()):
        f.write(f"{name}=={pins[name]}\n")
print(f"check_gpu_install: wrote {out} ({len(pins)} pins)", file=sys.stderr)
EOF
}

# same_set REPORT CONSTRAINTS: the resolved set must be exactly the pinned one.
same_set() {
  "$PY312" - "$@" <<'EOF'
import json, re, sys
report, constraints = sys.argv[1:]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
resolved = {norm(i["metadata"]["name"]): i["metadata"]["version"] for i in json.load(open(report))["install"]}
resolved.pop("soda-plugin", None)
pinned = {}
for line in open(constraints):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, version = line.partition("==")
        pinned[norm(name)] = version.strip()
unpinned = sorted(f"{n}=={v}" for n, v in resolved.items() if n not in pinned)
stale = sorted(f"{n}=={v}" for n, v in pinned.items() if n not in resolved)
moved = sorted(f"{n}: pinned {pinned[n]}, resolved {v}" for n, v in resolved.items() if n in pinned and pinned[n] != v)
for label, items in (("resolved but not pinned", unpinned), ("pinned but not resolved", stale), ("resolved to another version", moved)):
    if items:
        print(f"check_gpu_install: {constraints}: {label}: " + ", ".join(items), file=sys.stderr)
if unpinned or stale or moved:
    sys.exit(1)
print(f"check_gpu_install: OK: {constraints} resolves to exactly its {len(pinned)} pins", file=sys.stderr)
EOF
}

if [ "$mode" = regenerate ]; then
  dry_run train-free -e ".[deepspeed]" "torch==$GPU_TORCH" "axolotl==$GPU_AXOLOTL"
  dry_run vllm-free "vllm==$GPU_VLLM" "${SNAPSHOT_DEPS[@]}"
  wait
  finish train-free "the GPU training set (torch $GPU_TORCH, axolotl $GPU_AXOLOTL, soda[deepspeed])"
  finish vllm-free "the GPU snapshot set (vllm $GPU_VLLM + ${SNAPSHOT_DEPS[*]})"
  # After train-free: two builds of the project's metadata at once would share its folder.
  dry_run gad-free -e ".[deepspeed]" "torch==$GAD_TORCH" "axolotl==$GPU_AXOLOTL" "trl==$GAD_TRL" "vllm==$GAD_VLLM"
  wait
  finish gad-free "the GPU GAD training set (vllm $GAD_VLLM, torch $GAD_TORCH, axolotl $GPU_AXOLOTL, trl $GAD_TRL, soda[deepspeed])"
  today=$(date -u +%Y-%m-%d)
  write_pins "$work/train-free.json" "$TRAIN_C" \
    "soda's GPU training environment: CPython 3.12, Linux x86_64, packages from PyPI (torch $GPU_TORCH" \
    "there is its CUDA 13 build). The exact set pip $GPU_PIP resolved on $today for" \
    "  pip install --dry-run --report r.json -e \".[deepspeed]\" torch==$GPU_TORCH axolotl==$GPU_AXOLOTL" \
    "(the report's install list; soda-plugin itself left out). No flash-attn: PyPI has only its sdist." \
    "Install:    pip install -c $TRAIN_C -e \".[deepspeed]\"" \
    "Check:      bash tools/check_gpu_install.sh   (dry run, no GPU needed)" \
    "Regenerate: bash tools/check_gpu_install.sh --regenerate   (top-level pins at the top of that script)"
  write_pins "$work/vllm-free.json" "$VLLM_C" \
    "soda's GPU snapshot environment (tools/snapshot_q0.py with the vllm backend), separate from the" \
    "training one: vllm $GPU_VLLM needs pillow>=13 and Axolotl $GPU_AXOLOTL's gradio needs pillow<13, so soda's" \
    "own dependencies (Axolotl) cannot be installed next to it; the snapshot code imports only vllm and" \
    "${SNAPSHOT_DEPS[*]}. CPython 3.12, Linux x86_64, PyPI (torch ${GPU_TORCH}: CUDA 13 build)." \
    "The exact set pip $GPU_PIP resolved on $today for" \
    "  pip install --dry-run --report r.json vllm==$GPU_VLLM ${SNAPSHOT_DEPS[*]}" \
    "Install:    pip install -c $VLLM_C vllm==$GPU_VLLM ${SNAPSHOT_DEPS[*]}" \
    "            pip install --no-deps -e ." \
    "Check:      bash tools/check_gpu_install.sh   (dry run, no GPU needed)" \
    "Regenerate: bash tools/check_gpu_install.sh --regenerate"
  write_pins "$work/gad-free.json" "$GAD_C" \
    "soda's GPU GAD training environment: the training set plus vLLM in the training process, for" \
    "TRL's GRPO rollouts (use_vllm: true, colocate or server mode). TRL $GAD_TRL supports vllm 0.20.0-0.30.0" \
    "and Axolotl $GPU_AXOLOTL's vllm extra asks for >=0.30.0: vllm $GAD_VLLM, which pins torch==$GAD_TORCH" \
    "(so torch $GAD_TORCH here, not $GPU_TORCH). CPython 3.12, Linux x86_64, PyPI (torch $GAD_TORCH: CUDA 13 build)." \
    "The exact set pip $GPU_PIP resolved on $today for" \
    "  pip install --dry-run --report r.json -e \".[deepspeed]\" torch==$GAD_TORCH axolotl==$GPU_AXOLOTL trl==$GAD_TRL vllm==$GAD_VLLM" \
    "(the report's install list; soda-plugin itself left out). No flash-attn: PyPI has only its sdist." \
    "Install:    pip install -c $GAD_C -e \".[deepspeed]\" vllm==$GAD_VLLM" \
    "Check:      bash tools/check_gpu_install.sh   (dry run, no GPU needed)" \
    "Regenerate: bash tools/check_gpu_install.sh --regenerate   (top-level pins at the top of that script)"
fi

[ -f "$TRAIN_C" ] || fail "$TRAIN_C is missing (bash tools/check_gpu_install.sh --regenerate writes it)"
[ -f "$VLLM_C" ] || fail "$VLLM_C is missing (bash tools/check_gpu_install.sh --regenerate writes it)"
[ -f "$GAD_C" ] || fail "$GAD_C is missing (bash tools/check_gpu_install.sh --regenerate writes it)"
start=$(date +%s)
# README's commands, exactly, as dry runs.
dry_run train -c "$TRAIN_C" -e ".[deepspeed]"
dry_run vllm -c "$VLLM_C" "vllm==$GPU_VLLM" "${SNAPSHOT_DEPS[@]}"
wait
finish train "the GPU training install (pip install -c $TRAIN_C -e \".[deepspeed]\")"
finish vllm "the GPU snapshot install (pip install -c $VLLM_C vllm==$GPU_VLLM ${SNAPSHOT_DEPS[*]})"
# One at a time after the others: two builds of the project's metadata at once would share its folder.
dry_run gad -c "$GAD_C" -e ".[deepspeed]" "vllm==$GAD_VLLM"
wait
finish gad "the GPU GAD training install (pip install -c $GAD_C -e \".[deepspeed]\" vllm==$GAD_VLLM)"
dry_run soda-nodeps --no-deps -e .
wait
finish soda-nodeps "pip install --no-deps -e ."
same_set "$work/train.json" "$TRAIN_C" || fail "$TRAIN_C is not the exact set its install resolves to (regenerate it: bash tools/check_gpu_install.sh --regenerate)"
same_set "$work/vllm.json" "$VLLM_C" || fail "$VLLM_C is not the exact set its install resolves to (regenerate it: bash tools/check_gpu_install.sh --regenerate)"
same_set "$work/gad.json" "$GAD_C" || fail "$GAD_C is not the exact set its install resolves to (regenerate it: bash tools/check_gpu_install.sh --regenerate)"
echo "check_gpu_install: OK: all three GPU installs resolve on $INDEX_URL ($(( $(date +%s) - start )) s of dry runs)" >&2
