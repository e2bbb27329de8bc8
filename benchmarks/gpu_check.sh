#!/usr/bin/env bash
# The GPU check as one command on the lent GPU machine (device `run` tool, carry [".whl"]):
#
#   bash benchmarks/gpu_check.sh            # extra arguments go to gpu_check.py (e.g. --model qwen2.5-3b)
#
# Installs the wheels that tools/gpu_wheels.sh downloaded into .whl/ (no index, no deps), puts
# them first on PYTHONPATH, and runs benchmarks/gpu_check.py, which prints one table and writes
# $OUT/gpu_check.md, gpu_check.json and gpu_check.log (here: the whole console output too).
#
# The target folder's name must contain "site-packages": dill (under datasets' fingerprinting)
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
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    2>&1 | grep -v -e "Running pip as the 'root' user" -e "^WARNING: Target directory" || true
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "[gpu_check.sh] installed $(ls .whl/*.whl | wc -l) wheels into $SITE in $(( $(date +%s) - start )) s"
else
  echo "[gpu_check.sh] no .whl/ here (run tools/gpu_wheels.sh first and carry .whl); using the installed packages"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 AXOLOTL_DO_NOT_TRACK=1
"$PY" benchmarks/gpu_check.py "$@" 2>&1 | tee "$OUT_DIR/gpu_check.console.txt"
rc=${PIPESTATUS[0]}
echo "[gpu_check.sh] exit $rc after $(( $(date +%s) - start )) s"
exit "$rc"
