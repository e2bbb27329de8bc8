# Source this file: `soda_find_python 3.12` prints the path of a Python 3.12 interpreter.
# A bare `python3.12` may not be on PATH where pyenv installed it (CI, these machines).
soda_find_python() {
  local want=$1 candidate root
  for candidate in "python$want" "$(command -v pyenv >/dev/null 2>&1 && PYENV_VERSION=$want pyenv which python 2>/dev/null)"; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import sys; assert sys.version.startswith('$want.')" 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in "$root"/versions/"$want".*/bin/python; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  echo "soda: no Python $want found (tried python$want, pyenv, $root/versions); install it, e.g. \`pyenv install $want\`" >&2
  return 1
}
