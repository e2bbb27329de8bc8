"""The machine block of the miniature's report: a real git checkout, a real cpuinfo."""

import subprocess

from soda_plugin.miniature.machine import machine_facts, machine_line, source_commit


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_source_commit_names_the_checkout_and_its_uncommitted_changes(tmp_path):
    (tmp_path / "f.txt").write_text("a")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "f.txt")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "sub").mkdir()
    assert source_commit(tmp_path / "sub") == head
    (tmp_path / "f.txt").write_text("b")
    assert source_commit(tmp_path) == head + "+dirty"


def test_source_commit_is_none_outside_a_checkout(tmp_path):
    assert source_commit(tmp_path) is None


def test_machine_facts_describe_this_process():
    import torch

    facts = machine_facts()
    assert facts["torch_threads"] == torch.get_num_threads()
    assert facts["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["packages"]["torch"] == torch.__version__  # with its build tag (+cpu on the py311 stack)
    line = machine_line(facts)
    assert facts["cpu"] in line and f"torch {facts['packages']['torch']}" in line
