"""The miniature's run identities and the commands it starts: RunId's label and folder round-trip
through the files that hold them, and every stage runs as `python -m soda_plugin.cli <stage>`
on this interpreter, never as a clone's `tools/` script."""

import json
import re
import sys
from pathlib import Path

import pytest

from soda_plugin.miniature import pipeline, summary
from soda_plugin.miniature.runs import BASE, RunId


def test_label_and_folder_of_seeded_and_unseeded_runs():
    assert (RunId("soda", 0).label, RunId("soda", 0).folder) == ("soda/s0", "soda_s0")
    assert (RunId("soda-sibling", 12).label, RunId("soda-sibling", 12).folder) == ("soda-sibling/s12",
                                                                                   "soda-sibling_s12")
    assert (BASE.label, BASE.folder, str(BASE)) == ("base", "base", "base")
    assert str(RunId("gad", 1)) == "gad/s1"  # what error messages and f-strings show
    assert RunId("soda", 3).on_seed("qw") == RunId("qw", 3)


@pytest.mark.parametrize("run", [BASE, RunId("qw", 0), RunId("seqkd", 5), RunId("soda-degraded", 1),
                                 RunId("gad", 10)])
def test_parse_reads_back_both_spellings(run):
    assert RunId.parse(run.label) == RunId.parse(run.folder) == run
    assert hash(RunId.parse(run.folder)) == hash(run)  # usable as the same dict key


@pytest.mark.parametrize("text", ["", "soda/", "soda/sx", "Soda/s0", "soda_s0_s1", "seqkd.recipe", "soda/0"])
def test_parse_refuses_what_no_run_is_called(text):
    with pytest.raises(ValueError, match="is not a miniature run name"):
        RunId.parse(text)


@pytest.mark.parametrize("method", ["soda_sibling", "soda/x", "", "SODA"])
def test_a_method_that_would_not_round_trip_is_refused(method):
    with pytest.raises(ValueError, match=r"run method `.*`: lower-case letters, digits and `-` only"):
        RunId(method, 0)


def test_judge_scores_are_read_back_under_their_folder_names(tmp_path):
    rows = [{"model": "soda_s0", "prompt_id": "a", "score": 0.5}, {"model": "soda-sibling_s0", "prompt_id": "a",
                                                                   "score": 0.25},
            {"model": "base", "prompt_id": "a", "score": 0.1}, {"model": "qw_s1", "prompt_id": "a", "score": 0.9}]
    (tmp_path / "prompt_scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    wanted = [RunId("soda", 0), RunId("soda-sibling", 0), BASE]
    assert summary.judge_prompt_scores(tmp_path, wanted) == {
        RunId("soda", 0): {"a": 0.5}, RunId("soda-sibling", 0): {"a": 0.25}, BASE: {"a": 0.1}}


def test_runs_group_by_method_in_seed_order():
    runs = [RunId("soda", 2), BASE, RunId("soda", 0), RunId("qw", 1)]
    assert summary.runs_by_group(runs) == {"soda": [RunId("soda", 0), RunId("soda", 2)], "base": [BASE],
                                           "qw": [RunId("qw", 1)]}


def test_stages_run_as_modules_of_this_interpreter():
    command = pipeline.soda_command("teacher", ["--out", Path("/x/teacher.jsonl"), "--max-tokens", 256])
    assert command == [sys.executable, "-m", "soda_plugin.cli", "teacher", "--out", "/x/teacher.jsonl",
                       "--max-tokens", "256"]
    assert not hasattr(pipeline, "TOOLS") and not hasattr(pipeline, "REPO")
    source = Path(pipeline.__file__).read_text()
    # Nothing names the clone's scripts folder, and no command runs in a folder of the clone.
    assert not re.search(r"""["']tools["'/]|parents\[""", source) and "cwd=" not in source


def test_the_recipes_come_from_the_installed_package():
    from soda_plugin.recipe_files import shipped_recipes_dir

    assert pipeline.RECIPES == shipped_recipes_dir() and (pipeline.RECIPES / "smollm2_cpu_soda.yml").is_file()


def test_axolotl_train_uses_the_script_beside_the_interpreter_else_the_module(tmp_path, monkeypatch):
    config = tmp_path / "run.yml"
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    assert pipeline.axolotl_train_command(config) == [str(tmp_path / "bin" / "python"), "-m", "axolotl.cli.main",
                                                      "train", str(config), "--launcher", "python"]
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "axolotl").write_text("#!/bin/sh\n")
    assert pipeline.axolotl_train_command(config) == [str(tmp_path / "bin" / "axolotl"), "train", str(config),
                                                      "--launcher", "python"]


@pytest.mark.parametrize("command, name", [
    (["/v/bin/python", "-m", "soda_plugin.cli", "judge", "score"], "soda judge"),
    (["/v/bin/python", "-m", "axolotl.cli.main", "train", "x.yml"], "axolotl train"),
    (["/v/bin/axolotl", "train", "x.yml"], "axolotl train"),
    (["/v/bin/python", "-m", "soda_plugin.miniature.mechanism", "--model", "a=b"], "soda_plugin.miniature.mechanism"),
    (["/v/bin/python", "-c", "pass"], "-c"),
])
def test_a_failure_names_the_command_that_failed(command, name):
    assert pipeline.command_name(command) == name


def test_failing_stage_message_names_the_soda_stage(tmp_path):
    with pytest.raises(pipeline.StageError, match=r"`soda nonsense` exited with code 2; full log: .*bad.log"):
        pipeline.run_stage("nonsense", [], tmp_path / "bad.log")


def test_stop_after_must_be_a_stage_it_can_stop_after(tmp_path):
    from soda_plugin.miniature.settings import STOP_AFTER, mode_settings

    assert STOP_AFTER == ("teacher", "snapshot", "pairs")
    with pytest.raises(ValueError, match="`stop_after` is 'train'; choose one of teacher, snapshot, pairs"):
        pipeline.run_miniature(mode_settings(True, tmp_path / "run"), stop_after="train")
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_demo_help_says_where_outputs_go_and_where_it_can_stop():
    from soda_plugin.cli.demo import make_parser

    parser = make_parser("soda demo")
    text = " ".join(parser.format_help().split())  # argparse wraps the option help
    assert "./outputs/miniature[-quick|-long] in the current directory" in text
    assert "./outputs/models/SmolLM2-135M-Instruct in the current directory" in text
    args = parser.parse_args(["--quick", "--stop-after", "snapshot"])
    assert (args.quick, args.stop_after, args.out, args.model_dir) == (True, "snapshot", None, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--stop-after", "train"])
