"""`tools/check_pins.sh` resolves a pinned set as a user's machine would, without this
machine's pip configuration (its local wheel folder, file:// indexes, global constraints).

Two tiny custom sets through the script's `--set NAME:PYTHON:CONSTRAINTS:REQUIREMENTS`: a pin
that only a local wheel folder serves (`torch==2.13.0+cpu`, the build these machines keep in
`/opt/wheels` and PyPI cannot carry) must fail, and a plain version pin must pass. Each is one
`pip install --dry-run` against the package index (CI has it): seconds, no download of torch.
Those two are marked e2e (pip in a subprocess, the network); the usage checks need neither.
"""

from pathlib import Path

import pytest
from scripts import run_script

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tools" / "check_pins.sh"
TIMEOUT_S = 240


def _check_pins(*args):
    return run_script(CHECKER, *args, timeout_s=TIMEOUT_S, tail=4000)


def _set_line(output, name):
    lines = [line for line in output.splitlines() if line.split()[:1] == [name]]
    assert len(lines) == 1, f"no single result line for set {name!r}:\n{output}"
    return lines[0].split()


@pytest.mark.e2e  # pip against the package index in a subprocess, as tests/install
@pytest.mark.timeout(TIMEOUT_S + 60)
def test_a_pin_only_a_local_wheel_folder_serves_fails_and_a_version_pin_passes(tmp_path):
    local_only = tmp_path / "local-only.txt"
    local_only.write_text("torch==2.13.0+cpu\n")
    plain = tmp_path / "plain.txt"
    plain.write_text("six==1.17.0\n")

    rc, output = _check_pins(
        "--set", f"local-only:3.11:{local_only}:--no-deps torch",
        "--set", f"plain:3.12:{plain}:six",
    )

    assert rc == 1, f"expected exit 1 (one set fails), got {rc}:\n{output}"
    assert _set_line(output, "local-only")[1] == "FAILED"
    assert _set_line(output, "plain")[1] == "ok"
    # pip's own explanation is shown for the failed set
    assert "torch==2.13.0+cpu" in output.split("----- local-only")[1], output


@pytest.mark.e2e
@pytest.mark.timeout(TIMEOUT_S + 60)
def test_every_set_resolving_exits_zero(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("six==1.17.0\n")

    rc, output = _check_pins("--set", f"plain:3.11:{plain}:six")

    assert rc == 0, output
    assert _set_line(output, "plain")[1] == "ok"


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuchset"], "no set 'nosuchset'"),
        (["--set", "bad:3.12"], "expected NAME:PYTHON:CONSTRAINTS:REQUIREMENTS"),
        (["--set", "bad:3.12:/nonexistent/c.txt:six"], "no constraints file '/nonexistent/c.txt'"),
        (["gpu=/tmp/c.txt"], "checks its three files itself"),
    ],
)
def test_bad_usage_exits_2_and_says_why(args, message):
    rc, output = _check_pins(*args)
    assert rc == 2, output
    assert message in output
