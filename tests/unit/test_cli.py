"""The `soda` command line: stages in pipeline order, every stage's --help, the tools/ shims,
`soda fetch recipes`, the `axolotl soda` command and the entry points pyproject.toml declares."""

import importlib
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from soda_plugin.cli.main import STAGES, main

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ("fetch", "teacher", "snapshot", "pairs", "reference", "judge", "cost", "analyze", "share", "demo")
SHIMS = {"teacher": "collect_teacher.py", "snapshot": "snapshot_q0.py", "pairs": "build_pairs.py",
         "reference": "reference_logps.py", "judge": "judge.py", "cost": "cost.py",
         "analyze": "analyze.py", "share": "share.py", "demo": "cpu_demo.py"}
HEAVY = ("torch", "axolotl", "transformers", "trl", "datasets", "deepspeed")


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _listed_stages(help_text: str) -> list[str]:
    lines = help_text.split("pipeline order:", 1)[1].split("\n\n")[1].splitlines()
    return [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")]


def test_soda_help_lists_the_stages_in_pipeline_order_without_importing_torch():
    proc = subprocess.run([sys.executable, "-m", "soda_plugin.cli", "--help"], capture_output=True, text=True,
                          env=_env(), cwd=ROOT.parent, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert tuple(STAGES) == PIPELINE
    assert _listed_stages(proc.stdout) == list(PIPELINE)
    assert "axolotl train" in proc.stdout  # training's place between pairs and judge
    # Every stage's --help too, in one process: none pulls in torch or Axolotl.
    probe = ("import sys\nfrom soda_plugin.cli.main import STAGES, main\ncodes = []\n"
             "for args in [['--help'], *([s, '--help'] for s in STAGES), ['judge', 'score', '--help']]:\n"
             "    try:\n        main(args)\n    except SystemExit as e:\n        codes.append(e.code)\n"
             f"print(codes, sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.stderr.strip().splitlines()[-1] == f"{[0] * (len(STAGES) + 2)} []"


@pytest.mark.parametrize("stage", PIPELINE)
def test_every_stage_help_exits_0_under_its_soda_name(stage, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([stage, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: soda {stage} ")


@pytest.mark.parametrize("command", ["answer", "score", "table"])
def test_judge_subcommands_help_exits_0(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["judge", command, "--help"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"usage: soda judge {command} ")


def test_no_stage_or_an_unknown_one_is_a_usage_error(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["trian"])
    assert exit_.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("stage", sorted(SHIMS))
def test_tools_script_is_the_stages_parser_and_code(stage):
    spec = importlib.util.spec_from_file_location(f"shim_{stage}", ROOT / "tools" / SHIMS[stage])
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    module = importlib.import_module(f"soda_plugin.cli.{STAGES[stage].module}")
    assert shim.make_parser is module.make_parser and shim.main is module.main  # one definition
    assert shim.__doc__ == module.__doc__ and module.make_parser().epilog == module.__doc__
    assert len((ROOT / "tools" / SHIMS[stage]).read_text().splitlines()) == 2
    assert STAGES[stage].tool == SHIMS[stage]


def test_tools_script_runs_as_before():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "judge.py"), "table", "--help"],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: judge.py table"), proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "judge.py"), "table"],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "--results" in proc.stderr


def test_fetch_recipes_copies_recipes_and_deepspeed_json_and_keeps_edits(tmp_path, monkeypatch, capsys):
    from soda_plugin.train.deepspeed_path import resolve_deepspeed_path

    monkeypatch.chdir(tmp_path)
    shipped = sorted(p.relative_to(ROOT / "recipes") for p in [*(ROOT / "recipes").glob("*.yml"),
                                                                 *(ROOT / "recipes" / "deepspeed").glob("*.json")])
    assert main(["fetch", "recipes", "r"]) == 0
    copied = sorted(p.relative_to(tmp_path / "r") for p in (tmp_path / "r").rglob("*") if p.is_file())
    assert copied == shipped and Path("deepspeed/zero2.json") in copied and Path("deepspeed/zero3.json") in copied
    assert capsys.readouterr().out.strip().endswith(f"{len(shipped)} new, 0 updated, 0 unchanged, 0 kept")

    cfg = {"deepspeed": "deepspeed/zero2.json", "axolotl_config_path": "r/qwen7b_soda.yml"}
    resolve_deepspeed_path(cfg)  # the copy's own deepspeed/, found from another working directory
    assert cfg["deepspeed"] == str((tmp_path / "r" / "deepspeed" / "zero2.json").resolve())

    edited = tmp_path / "r" / "qwen7b_soda.yml"
    edited.write_text(edited.read_text() + "# mine\n")
    assert main(["fetch", "recipes", "r"]) == 0
    out = capsys.readouterr().out
    assert "kept r/qwen7b_soda.yml" in out and f"0 new, 0 updated, {len(shipped) - 1} unchanged, 1 kept" in out
    assert edited.read_text().endswith("# mine\n")
    assert main(["fetch", "recipes", "r", "--overwrite"]) == 0
    assert edited.read_bytes() == (ROOT / "recipes" / "qwen7b_soda.yml").read_bytes()
    assert main(["fetch", "recipes"]) == 0 and (tmp_path / "recipes" / "deepspeed" / "zero3.json").is_file()


def test_pyproject_declares_the_console_script_and_the_axolotl_command():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["soda"] == "soda_plugin.cli.main:main"
    target = project["entry-points"]["axolotl.cli_commands"]["soda"]
    from axolotl.cli.plugins import ENTRY_POINT_GROUP, _import_command

    assert ENTRY_POINT_GROUP == "axolotl.cli_commands"  # the group Axolotl reads (0.19 and 0.21)
    assert _import_command(target).name == "soda"  # what Axolotl does with the entry point


def test_axolotl_soda_command_hands_every_argument_to_soda():
    from click.testing import CliRunner

    from soda_plugin.cli.axolotl_command import soda

    result = CliRunner().invoke(soda, ["--help"])
    assert result.exit_code == 0 and _listed_stages(result.output) == list(PIPELINE)
    result = CliRunner().invoke(soda, ["judge", "table", "--help"])
    assert result.exit_code == 0 and result.output.startswith("usage: soda judge table ")


def test_installed_console_script_when_the_venv_has_one():
    script = Path(sys.executable).parent / "soda"
    if not script.exists():
        pytest.skip(f"no {script}: the venv was installed before pyproject.toml declared it (tools/env.sh reinstalls)")
    for args in (["--help"], *([s, "--help"] for s in PIPELINE)):
        proc = subprocess.run([str(script), *args], capture_output=True, text=True, env=_env(), timeout=60)
        assert proc.returncode == 0, (args, proc.stderr)
    assert _listed_stages(subprocess.run([str(script), "--help"], capture_output=True, text=True,
                                         env=_env(), timeout=60).stdout) == list(PIPELINE)
