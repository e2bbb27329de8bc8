"""README's GPU install: its commands still resolve on PyPI against the pinned sets, and
no recipe asks for an attention backend that the pinned training set does not install.

The first test needs PyPI (CI has it) but no GPU: `tools/check_gpu_install.sh` runs every
install command as `pip install --dry-run` in a throwaway Python 3.12 venv. It is not
skipped when the network is missing: a GPU install that nobody can check is a failure.
"""

import re
from pathlib import Path

import pytest
from scripts import run_script
import yaml

pytestmark = pytest.mark.e2e  # resolves against PyPI: minutes, not the unit tier

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tools" / "check_gpu_install.sh"
CHECK_TIMEOUT_S = 900

# attn_implementation -> the distribution that provides it (torch's own kernels need none
# beyond torch). Axolotl 0.21's canonical names; hub kernels ("org/name") are listed as
# Axolotl treats them: its flash-attn hub kernels still need the flash_attn library.
BACKEND_PACKAGES = {
    "eager": "torch",
    "sdpa": "torch",
    "flex_attention": "torch",
    "xformers": "xformers",
    "flash_attention_2": "flash-attn",
    "flash_attention_3": "flash-attn-3",
    "flash_attention_4": "flash-attn-4",
    "sage": "sageattention",
    "kernels-community/flash-attn2": "flash-attn",
    "kernels-community/flash-attn3": "flash-attn",
}
# Axolotl's deprecated boolean flags and the backend each means.
LEGACY_FLAGS = {
    "flash_attention": "flash_attention_2",
    "sdp_attention": "sdpa",
    "flex_attention": "flex_attention",
    "xformers_attention": "xformers",
    "sage_attention": "sage",
    "eager_attention": "eager",
}


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(constraints):
    names = set()
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_norm(line.split("==", 1)[0]))
    return names


@pytest.mark.timeout(CHECK_TIMEOUT_S + 60)
def test_gpu_install_commands_resolve_on_pypi():
    returncode, output = run_script(CHECKER, timeout_s=CHECK_TIMEOUT_S)
    assert returncode == 0, f"tools/check_gpu_install.sh failed (rc {returncode}):\n{output[-6000:]}"


def _recipe_backends():
    for path in sorted((ROOT / "recipes").glob("*.yml")):
        cfg = yaml.safe_load(path.read_text()) or {}
        if cfg.get("attn_implementation") is not None:
            yield path.name, cfg["attn_implementation"]
        for flag, backend in LEGACY_FLAGS.items():
            if cfg.get(flag) is True:
                yield path.name, backend


def test_every_recipe_attention_backend_is_installed_by_the_gpu_set():
    pinned = _pinned(ROOT / "constraints-gpu.txt")
    assert "torch" in pinned
    problems = []
    for recipe, backend in _recipe_backends():
        base = str(backend).split("@", 1)[0].split(":", 1)[0]
        package = BACKEND_PACKAGES.get(base)
        if package is None:
            problems.append(f"{recipe}: attn_implementation {backend!r} is not in this test's table")
        elif _norm(package) not in pinned:
            problems.append(f"{recipe}: attn_implementation {backend!r} needs {package}, which constraints-gpu.txt does not pin")
    assert not problems, "\n".join(problems)
