"""soda from its wheel, as a user without a clone has it: built once per test session and
installed into a fresh venv outside the repo (tests/e2e/test_wheel_install.py and the quick
demo of tests/e2e/test_smollm2_demo.py both run it).

No download: the wheel is built without build isolation (this venv's setuptools), and the
fresh venv sees this venv's site-packages (the dependencies) through a .pth file, without
the editable install's finder; soda_plugin itself comes from the wheel only.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "soda_plugin", "recipes")
_INSTALLED: dict[str, tuple[Path, Path]] = {}  # one wheel and venv per session


def clean_env(venv: Path | None = None, **extra: str) -> dict[str, str]:
    """This environment without anything that reaches the clone: no PYTHONPATH, and no PATH entry
    inside it (its .venv/bin holds the editable install's `soda` and `axolotl` scripts); `venv`'s
    bin/ first."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not Path(p).resolve().is_relative_to(ROOT)]
    if venv is not None:
        path.insert(0, str(venv / "bin"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PATH": os.pathsep.join(path), **extra}


def run(args, *, cwd, timeout=300, venv: Path | None = None, **env_extra) -> subprocess.CompletedProcess:
    """Run `args` in `cwd` with `clean_env`; assert it succeeded, showing its output if not."""
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=clean_env(venv, **env_extra), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src"  # a copy: the build writes build/ and *.egg-info, and must not do so in the clone
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", tmp / "dist", src], cwd=tmp)
    wheel, = (tmp / "dist").glob("soda_plugin-*.whl")
    shutil.rmtree(src)
    return wheel


def make_venv(wheel: Path, venv: Path) -> Path:
    """A fresh venv with only the wheel installed; this venv's site-packages supply the dependencies."""
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    python = venv / "bin" / "python"
    # Installed before the .pth below exists, so pip sees no soda-plugin already installed (the
    # editable one) and touches nothing outside the fresh venv.
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
        cwd=venv.parent)
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=venv.parent).stdout.strip())
    # Plain path lines: the directories join sys.path after the venv's own site-packages, and
    # their .pth files (the editable install's finder among them) are not run.
    (purelib / "zz_soda_test_dependencies.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    return venv


def installed_wheel(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, a venv with it installed), built on first use and shared by the session."""
    if "soda" not in _INSTALLED:
        tmp = tmp_path_factory.mktemp("wheel")
        wheel = build_wheel(tmp)
        _INSTALLED["soda"] = wheel, make_venv(wheel, tmp / "venv")
    return _INSTALLED["soda"]
