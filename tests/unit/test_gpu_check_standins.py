"""The GPU check's import-only stand-ins (benchmarks/gpu_check/standins.py): imports work, any
use raises, availability probes see the package as absent. Exercised in a subprocess, so the
stand-ins never reach this test process's sys.path."""

import json
import pickle
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.gpu_check.carry import GPU_MACHINE_PACKAGES, normalize, wheel_names  # noqa: E402
from benchmarks.gpu_check.standins import STANDINS, write_standins  # noqa: E402

PROBE = textwrap.dedent('''
    import importlib.metadata, json, pickle, sys
    results = {}

    def outcome(name, action):
        try:
            action()
            results[name] = "ok"
        except Exception as error:
            results[name] = type(error).__name__
            if type(error).__name__ == "StandinUsedError":
                results[name + ":message"] = str(error)
                results[name + ":pickles"] = str(pickle.loads(pickle.dumps(error))) == str(error)

    # What Axolotl's modules do at import time.
    import bitsandbytes as bnb
    from bitsandbytes.functional import QuantState, get_ptr
    from bitsandbytes.nn import Linear4bit, Params4bit
    import wandb, posthog, evaluate
    def signature(state: QuantState | None = None) -> None: ...
    class Derived(Params4bit): ...
    results["isinstance"] = isinstance(object(), QuantState)
    results["hasattr_wandb_run"] = hasattr(wandb, "run")
    results["standin_file"] = bnb.__file__
    outcome("attribute", lambda: bnb.matmul_4bit)
    outcome("call", lambda: QuantState(absmax=None))
    outcome("function", lambda: get_ptr(None))
    outcome("subclass", lambda: Derived())
    outcome("wandb_init", lambda: wandb.init(project="x"))
    outcome("metadata", lambda: importlib.metadata.version("bitsandbytes"))
    json.dump(results, open(sys.argv[1], "w"))
''')


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    root = tmp_path_factory.mktemp("standins")
    site = root / "site-packages"
    assert write_standins(site) == list(STANDINS)
    (root / "probe.py").write_text(PROBE)
    result = root / "result.json"
    # -S: this venv's real bitsandbytes/wandb must not be found behind the stand-ins.
    proc = subprocess.run([sys.executable, "-S", str(root / "probe.py"), str(result)], env={"PYTHONPATH": str(site)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text()), site


def test_module_level_imports_work_and_probes_see_nothing(probed):
    results, site = probed
    assert results["standin_file"] == str(site / "bitsandbytes" / "__init__.py")
    assert results["isinstance"] is False
    assert results["hasattr_wandb_run"] is False  # transformers' is_wandb_available() answers False
    assert results["metadata"] == "PackageNotFoundError"  # no dist-info: "not installed" to version checks


@pytest.mark.parametrize("use", ["attribute", "call", "function", "subclass", "wandb_init"])
def test_every_use_raises_a_clear_error_that_pickles(probed, use):
    results, _ = probed
    assert results[use] == "StandinUsedError"
    assert "import-only stand-in of soda's GPU check" in results[f"{use}:message"]
    assert results[f"{use}:pickles"] is True


def test_refuses_to_replace_a_real_package(tmp_path):
    real = tmp_path / "site-packages" / "wandb"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("__version__ = '0.31.0'\n")
    with pytest.raises(FileExistsError, match="holds a real package"):
        write_standins(tmp_path / "site-packages")
    assert (real / "__init__.py").read_text() == "__version__ = '0.31.0'\n"


def test_a_standin_is_neither_brought_nor_on_the_gpu_machine():
    names = {normalize(n) for n in STANDINS}
    assert not names & wheel_names()
    assert not names & GPU_MACHINE_PACKAGES


def test_this_process_never_imported_a_standin():
    assert "_soda_standin" not in sys.modules
    # Read the module's own dict: some modules answer any getattr (lazy or proxy modules).
    assert not [name for name, m in list(sys.modules.items())
                if isinstance(m, types.ModuleType) and m.__dict__.get("__soda_standin__")]
