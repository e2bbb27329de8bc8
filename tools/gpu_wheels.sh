#!/usr/bin/env bash
# Download, on this (CPU) machine, the wheels the GPU check (benchmarks/gpu_check/) needs on the
# user's GPU machine, into ./.whl (git-ignored). That machine (/work/shared/GPU_FACTS.md) has
# Python 3.12, torch 2.11, transformers 5.17, peft, accelerate, pyarrow, ... but no axolotl, trl,
# datasets or pydantic, and no network. What it lacks travels with the working tree, 64 MiB in
# all; the wheels must stay under 55 MiB.
#
#   bash tools/gpu_wheels.sh          # idempotent: downloads what is missing, drops strays
#
# The list is benchmarks/gpu_check/carry.py's WHEELS (its one owner): Axolotl 0.21 and its exact
# pins (the tested Python 3.12 stack), so the GPU run is the real `axolotl train`. What Axolotl
# imports but the chain never uses, and that does not fit (bitsandbytes 43 MB, wandb 20 MB, ...),
# is not downloaded: the check writes import-only stand-ins for it (benchmarks/gpu_check/standins.py).
#
# On the GPU machine: `bash benchmarks/gpu_check.sh` (carry [".whl"]), which installs them with
# `pip install --no-index --no-deps --target /tmp/soda-gpu/site-packages` (the folder name must
# contain "site-packages": see that script) and puts them first on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=.whl
PY=${PYTHON:-python3}
LIMIT_MIB=55
mapfile -t WHEELS < <("$PY" -m benchmarks.gpu_check.carry wheels)

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
    -d "$DEST" "$spec" 2>&1 | grep -v -e '^WARNING: Location' -e '^ERROR: ' || true
  if ! ls "$DEST" | grep -qi "^$(norm "$name")-${version}-"; then
    # Published as an sdist only (axolotl-contribs-*: pure Python): build its wheel here.
    echo "  no wheel on the index; building one from the sdist"
    "$PY" -m pip wheel -q --no-deps -w "$DEST" "$spec"
  fi
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
