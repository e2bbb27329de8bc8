#!/usr/bin/env bash
# The GPU check as one command, on the user's GPU machine before a long job (docs/gpu_check.md):
#
#   bash tools/gpu_wheels.sh              # once, on a machine with network: .whl/ (25 MiB)
#   bash benchmarks/gpu_check.sh          # on the GPU machine; extra arguments go to the check (--model qwen2.5-3b)
#   bash benchmarks/gpu_check.sh --cpu    # the same chain on CPU, tiny model, in this venv (no wheels)
#
# On the GPU machine it installs .whl/ into the check's own site folder (no index, no deps), puts
# that folder first on PYTHONPATH, and runs `python -m benchmarks.gpu_check`, which writes the
# import-only stand-ins there too, prints one table and writes $OUT/gpu_check.md, .json, .log
# (here: the whole console output too).
#
# The site folder's name must contain "site-packages": dill (under datasets' fingerprinting)
# pickles a module by value, not by reference, when its path has neither "site-packages" nor
# the interpreter's prefix in it, and fails on pyarrow/transformers objects
# ("PicklingError: Can't pickle <class 'MonthDayNano'>"); seen with a plain /tmp/site target.
set -uo pipefail
cd "$(dirname "$0")/.."
SITE=${SODA_GPU_SITE:-/tmp/soda-gpu/site-packages}
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-outputs/gpu_check}
mkdir -p "$OUT_DIR"
start=$(date +%s)
cpu=0
for arg in "$@"; do [ "$arg" = "--cpu" ] && cpu=1; done
if [ "$cpu" = 1 ]; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the stand-ins go to the check's `axolotl train` runs only
  site_args=()
elif ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    2>&1 | grep -v -e "Running pip as the 'root' user" -e "^WARNING: Target directory" || true
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "[gpu_check.sh] installed $(ls .whl/*.whl | wc -l) wheels into $SITE in $(( $(date +%s) - start )) s"
  site_args=(--site "$SITE")
else
  echo "[gpu_check.sh] no .whl/ here: run tools/gpu_wheels.sh first and bring .whl along" >&2
  exit 2
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 AXOLOTL_DO_NOT_TRACK=1
"$PY" -m benchmarks.gpu_check --out "$OUT_DIR" "${site_args[@]}" "$@" 2>&1 | tee "$OUT_DIR/gpu_check.console.txt"
rc=${PIPESTATUS[0]}
echo "[gpu_check.sh] exit $rc after $(( $(date +%s) - start )) s"
exit "$rc"
