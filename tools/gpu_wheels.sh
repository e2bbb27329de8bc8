#!/usr/bin/env bash
# Download, on this (CPU) machine, the wheels that benchmarks/gpu_check.py needs on the lent
# GPU machine, into ./.whl (git-ignored). That machine has Python 3.12, torch 2.11, an older
# transformers (5.17), peft, accelerate, tokenizers, pyarrow, ... but no trl, datasets or
# pydantic, and no network (/work/shared/GPU_FACTS.md). What it lacks travels with the
# working tree, 64 MiB in all; the wheels must stay under 55 MiB.
#
#   bash tools/gpu_wheels.sh          # idempotent: downloads what is missing, drops strays
#
# Versions are Axolotl 0.21's exact pins (constraints of the Python 3.12 stack), so the GPU
# run uses the same trl/transformers/datasets/peft/accelerate as the tested venv. Axolotl
# itself is NOT brought: it imports bitsandbytes (43.1 MB wheel; from axolotl/kernels/lora.py)
# and wandb (20.3 MB; from axolotl/utils/callbacks/__init__.py) unconditionally, which
# alone exceed what may travel. gpu_check.py then drives soda's pieces and TRL directly.
#
# On the GPU machine (the device `run` tool, carry [".whl"]): `bash benchmarks/gpu_check.sh`, which
# installs them with `pip install --no-index --no-deps --target /tmp/soda-gpu/site-packages`
# (the folder name must contain "site-packages": see that script) and puts them first on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=.whl
PY=${PYTHON:-python3}
LIMIT_MIB=55

# name==version: each one a wheel for cp312 / manylinux x86-64 (or pure Python).
WHEELS=(
  trl==1.14.1             # DPOTrainer/DPOConfig (the core of the check)
  transformers==5.20.1    # Axolotl 0.21's pin; the machine's 5.17 is replaced (PYTHONPATH first)
  datasets==5.0.1         # TRL's dataset plumbing, precomputed reference log-prob cache
  peft==0.21.2            # LoRA chain; the machine's peft version is unknown
  accelerate==1.15.0      # same as the machine's, brought to pin it
  tokenizers==0.23.3      # Axolotl 0.21's pin (transformers 5.20.1 needs >=0.23.1,<0.24)
  regex==2026.11.19       # transformers 5.20.1 checks regex>=2025.10.22 at import
  dill==0.4.1             # datasets
  multiprocess==0.70.19   # datasets
  fsspec==2025.10.0       # datasets needs fsspec<=2026.6.0; the machine's version is unknown
  pydantic==2.13.5        # soda_plugin.train.args (SodaConfig), used by soda_plugin.train.stages
  pydantic-core==2.46.5
  annotated-types==0.8.0
  typing-inspection==0.4.5
  typing-extensions==4.15.0  # pydantic 2.13 needs >=4.14.1
)

mkdir -p "$DEST"
norm() { echo "$1" | tr 'A-Z-.' 'a-z__'; }
for spec in "${WHEELS[@]}"; do
  name=${spec%%==*}; version=${spec##*==}
  if ls "$DEST" | grep -qi "^$(norm "$name")-${version}-"; then
    continue
  fi
  echo "downloading $spec"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "$spec" 2>&1 | grep -v '^WARNING: Location' || true
  if ! ls "$DEST" | grep -qi "^$(norm "$name")-${version}-"; then
    echo "gpu_wheels: no wheel for $spec was downloaded" >&2
    exit 1
  fi
done

# One version of each package only (two stop `pip install --no-deps` there); report sizes.
"$PY" - "$DEST" "$LIMIT_MIB" "${WHEELS[@]}" <<'EOF'
import os, sys
dest, limit = sys.argv[1], float(sys.argv[2])
norm = lambda s: s.lower().replace("-", "_").replace(".", "_")
wanted = {(norm(s.split("==")[0]), s.split("==")[1]) for s in sys.argv[3:]}
total = 0
for f in sorted(os.listdir(dest)):
    path = os.path.join(dest, f)
    parts = f.split("-")
    if not f.endswith(".whl") or (norm(parts[0]), parts[1]) not in wanted:
        print(f"removing stray {f}")
        os.remove(path)
        continue
    size = os.path.getsize(path)
    total += size
    print(f"{size / 2**20:8.2f} MiB  {f}")
print(f"{total / 2**20:8.2f} MiB  total in {dest}/ ({len(wanted)} wheels; limit {limit:.0f} MiB)")
if total > limit * 2**20:
    sys.exit(f"gpu_wheels: {total / 2**20:.1f} MiB exceeds {limit:.0f} MiB")
EOF
