"""README tells a newcomer to `source tools/env.sh` in their own shell: it must leave that
shell's options as they were (a leaked `set -e` closes the terminal on the next failing
command), whether the venv is already there or its install fails."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Sources the script, then reports: the return code of `source`, whether the shell's options
# changed, and that a failing command afterwards did not end the shell.
PROBE = """
before=$(set +o)
source {script} >/dev/null 2>"$PROBE_ERR"
rc=$?
after=$(set +o)
false
echo "rc=$rc same=$([ "$before" == "$after" ] && echo yes || echo no) alive=yes"
"""


def _probe(script, env, tmp_path):
    err = tmp_path / "stderr.txt"
    proc = subprocess.run(["bash", "-c", PROBE.format(script=script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env, "PROBE_ERR": str(err)})
    return proc.stdout.strip(), err.read_text()


def _ready_venv(tmp_path):
    """A venv folder env.sh takes as installed: a python and the stamp of today's pins."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    stamp = hashlib.sha256((ROOT / "constraints.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes())
    (venv / ".soda-installed").write_text(stamp.hexdigest() + "\n")
    return venv


def test_sourcing_an_installed_stack_leaves_the_shell_options_alone(tmp_path):
    venv = _ready_venv(tmp_path)
    out, err = _probe(ROOT / "tools" / "env.sh", {"SODA_STACK": "main", "SODA_VENV": str(venv)}, tmp_path)
    assert out == "rc=0 same=yes alive=yes", err
    assert "installing" not in err  # the stamp matched: nothing was reinstalled


@pytest.mark.parametrize("script,env", [
    ("env.sh", {"SODA_STACK": "main", "SODA_VENV": "/dev/null/venv"}),
    ("env.sh", {"SODA_STACK": "nonsense"}),
    ("env_vllm.sh", {"SODA_VLLM_VENV": "/dev/null/venv"}),
], ids=["env-install-fails", "env-bad-stack", "vllm-install-fails"])
def test_a_failed_source_returns_nonzero_and_leaves_the_shell_alive(tmp_path, script, env):
    out, err = _probe(ROOT / "tools" / script, env, tmp_path)
    rc, same, alive = out.split()
    assert rc != "rc=0", err
    assert (same, alive) == ("same=yes", "alive=yes"), (out, err)
    assert "soda:" in err  # it says why
