"""Every patch of a host's code is in `soda_plugin/train/host_patches.py`, documented, applied,
listed in docs/compatibility.md, and no other module of soda_plugin assigns to a host object."""

import ast
import sys
from pathlib import Path

import pytest

from soda_plugin.train import host_patches
from soda_plugin.train.host_patches import MAIN, PATCHES, PY311, is_soda_patch

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "soda_plugin"
HOSTS = ("axolotl", "trl", "transformers", "datasets")


def _check_dataset_type_aliases(monkeypatch):
    from soda_plugin.train import dataset_type

    for name in host_patches.DATASET_TYPE_ALIASES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    host_patches.register_dataset_type()
    assert all(sys.modules[name] is dataset_type for name in host_patches.DATASET_TYPE_ALIASES)


def _check_reference_model_skip(monkeypatch):
    import axolotl.train as axolotl_train

    monkeypatch.setattr(axolotl_train, "setup_reference_model", axolotl_train.setup_reference_model)
    assert host_patches.install_reference_model_skip() is True
    assert is_soda_patch(axolotl_train.setup_reference_model, "install_reference_model_skip")


def _check_cuda_peer_check(monkeypatch):
    import axolotl.utils.environment as axolotl_environment

    original = axolotl_environment.check_cuda_p2p_support
    monkeypatch.setattr(axolotl_environment, "check_cuda_p2p_support", original)
    host_patches.skip_cuda_peer_check_without_gpu()
    host_patches.skip_cuda_peer_check_without_gpu()  # idempotent
    patched = axolotl_environment.check_cuda_p2p_support
    assert is_soda_patch(patched, "skip_cuda_peer_check_without_gpu") and patched() is False


def _check_keep_process_group(monkeypatch):
    import axolotl.train as axolotl_train

    original = axolotl_train.cleanup_distributed
    with host_patches.keep_process_group():
        assert is_soda_patch(axolotl_train.cleanup_distributed, "keep_process_group")
        assert axolotl_train.cleanup_distributed() is None
    assert axolotl_train.cleanup_distributed is original


def _check_second_deepspeed_setup(monkeypatch):
    import axolotl.utils.distributed as axolotl_distributed

    sentinel = object()
    monkeypatch.setattr(axolotl_distributed, "distributed_state", sentinel)
    with host_patches.second_deepspeed_setup(True):
        assert axolotl_distributed.distributed_state is None
    assert axolotl_distributed.distributed_state is sentinel
    with host_patches.second_deepspeed_setup(False):
        assert axolotl_distributed.distributed_state is sentinel


def _check_reference_pass(monkeypatch):
    import trl.trainer.dpo_trainer as dpo

    from soda_plugin.train.reference_pass import precompute_ref_logps

    original = dpo.DPOTrainer._precompute_ref_logps
    monkeypatch.setattr(dpo.DPOTrainer, "_precompute_ref_logps", original)
    assert host_patches.install_reference_pass(precompute_ref_logps) is True
    wrapped = dpo.DPOTrainer._precompute_ref_logps
    assert host_patches.install_reference_pass(precompute_ref_logps) is True
    assert is_soda_patch(wrapped, "install_reference_pass") and dpo.DPOTrainer._precompute_ref_logps is wrapped


def _check_single_save(monkeypatch):
    from datasets import Dataset

    monkeypatch.setattr(Dataset, "save_to_disk", Dataset.save_to_disk)
    host_patches.install_in_process_single_save()
    wrapped = Dataset.save_to_disk
    host_patches.install_in_process_single_save()
    assert is_soda_patch(wrapped, "install_in_process_single_save") and Dataset.save_to_disk is wrapped


APPLIED = {
    "register_dataset_type": _check_dataset_type_aliases,
    "install_reference_model_skip": _check_reference_model_skip,
    "skip_cuda_peer_check_without_gpu": _check_cuda_peer_check,
    "keep_process_group": _check_keep_process_group,
    "second_deepspeed_setup": _check_second_deepspeed_setup,
    "install_reference_pass": _check_reference_pass,
    "install_in_process_single_save": _check_single_save,
}


def test_every_patch_has_an_applied_check():
    assert set(PATCHES) == set(APPLIED), "a new host patch needs its check here"


@pytest.mark.parametrize("name", sorted(APPLIED))
def test_patch_is_applied(name, monkeypatch):
    APPLIED[name](monkeypatch)


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_patch_is_documented(name):
    patch = PATCHES[name]
    assert patch.upstream and patch.why and patch.remove_when, name
    assert patch.tested_on and set(patch.tested_on) <= {MAIN, PY311}, name
    for test in patch.test.replace(",", ";").split(";"):
        path = test.strip().split("::")[0].split(" ")[0]
        if path.startswith("tests/"):
            assert (REPO / path).is_file(), f"{name}: {path} does not exist"
    assert getattr(host_patches, name) is not None and name in host_patches.__all__


def test_the_plugins_install_the_process_wide_patches(monkeypatch, tmp_path):
    """`SODAPlugin.register` installs them; both plugins alias `type: soda` when imported."""
    import axolotl.train as axolotl_train
    import trl.trainer.dpo_trainer as dpo
    from datasets import Dataset

    import soda_plugin.gad.plugin  # noqa: F401
    from soda_plugin.train.plugin import SODAPlugin

    assert all(name in sys.modules for name in host_patches.DATASET_TYPE_ALIASES)
    for owner, attribute in ((axolotl_train, "setup_reference_model"), (dpo.DPOTrainer, "_precompute_ref_logps"),
                             (Dataset, "save_to_disk")):
        monkeypatch.setattr(owner, attribute, getattr(owner, attribute))
    SODAPlugin().register({"soda": {}, "datasets": [], "axolotl_config_path": str(tmp_path / "recipe.yml")})
    assert is_soda_patch(axolotl_train.setup_reference_model, "install_reference_model_skip")
    assert is_soda_patch(dpo.DPOTrainer._precompute_ref_logps, "install_reference_pass")
    assert is_soda_patch(Dataset.save_to_disk, "install_in_process_single_save")


def test_compatibility_page_lists_every_patch():
    page = (REPO / "docs" / "compatibility.md").read_text()
    for name in PATCHES:
        assert f"host_patches.{name}" in page, f"docs/compatibility.md does not list `host_patches.{name}`"


def _host_assignments(source: str) -> list[str]:
    """`<host name>.X = ...`, `setattr(<host name>, ...)`, `sys.modules[...] = ...` and
    `sys.modules.setdefault(...)`, where a host name is bound by importing from a host package."""
    tree = ast.parse(source)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] in HOSTS}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in HOSTS:
            names |= {a.asname or a.name for a in node.names}

    def root(expr):
        while isinstance(expr, (ast.Attribute, ast.Subscript, ast.Call)):
            expr = expr.func if isinstance(expr, ast.Call) else expr.value
        return expr.id if isinstance(expr, ast.Name) else None

    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and root(target) in names:
                found.append(f"line {node.lineno}: {ast.unparse(target)} = ...")
            if isinstance(target, ast.Subscript) and ast.unparse(target.value) == "sys.modules":
                found.append(f"line {node.lineno}: {ast.unparse(target)} = ...")
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("setattr", "delattr") and node.args and root(node.args[0]) in names:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
            if func.startswith("sys.modules.") and func.split(".")[-1] in ("setdefault", "update", "__setitem__"):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scan_finds_the_patterns_it_forbids():
    source = (
        "import axolotl.train as axolotl_train\nfrom datasets import Dataset\nimport sys\n"
        "axolotl_train.cleanup_distributed = None\nDataset.save_to_disk.x = 1\n"
        "setattr(axolotl_train, 'a', 1)\nsys.modules.setdefault('axolotl.x', sys)\n"
        "trainer = object()\ntrainer.model = None\n"  # an instance soda holds, not a host module
    )
    assert len(_host_assignments(source)) == 4


def test_no_module_outside_host_patches_assigns_to_a_host_object():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "host_patches.py" and path.parent.name == "train":
            continue
        found = _host_assignments(path.read_text())
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert not offenders, f"host patches outside soda_plugin/train/host_patches.py: {offenders}"
