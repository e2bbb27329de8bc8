"""Argument checks of `tools/judge.py`, made before anything is paid for."""

import argparse

import pytest

from soda_plugin.judge.cli import resolve_benchmarks, parse_assignments


def test_name_path_pairs_parse_and_bad_ones_are_named():
    assert parse_assignments(["base=out/a", "soda=s3=x"], "--models") == {"base": "out/a", "soda": "s3=x"}
    with pytest.raises(ValueError, match=r"`--models` takes NAME=PATH items, got 'base'"):
        parse_assignments(["base"], "--models")
    with pytest.raises(ValueError, match="`--models` names `base` twice"):
        parse_assignments(["base=a", "base=b"], "--models")


def test_unknown_benchmarks_and_files_for_unselected_ones_are_refused():
    ok = argparse.Namespace(benchmarks=["vicuna"], eval_file=["vicuna=v.jsonl"])
    assert resolve_benchmarks(ok) == (["vicuna"], {"vicuna": "v.jsonl"})
    with pytest.raises(ValueError, match=r"\['mmlu'\]"):
        resolve_benchmarks(argparse.Namespace(benchmarks=["mmlu"], eval_file=None))
    with pytest.raises(ValueError, match=r"\['dolly'\]"):
        resolve_benchmarks(argparse.Namespace(benchmarks=["vicuna"], eval_file=["dolly=d.jsonl"]))


def test_a_set_of_your_own_needs_its_file():
    mine = argparse.Namespace(benchmarks=["vicuna", "mine"], eval_file=["mine=m.jsonl"])
    assert resolve_benchmarks(mine) == (["vicuna", "mine"], {"mine": "m.jsonl"})
    with pytest.raises(ValueError, match=r"\['mine'\].*--eval-file NAME=FILE"):
        resolve_benchmarks(argparse.Namespace(benchmarks=["mine"], eval_file=None))


def test_answer_refuses_an_adapter_folder_and_names_the_merged_student(tmp_path):
    import json

    from soda_plugin.judge.answers import check_student

    out = tmp_path / "run"
    out.mkdir()
    (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(out / "warmup" / "merged")}))
    (out / "model.safetensors").write_bytes(b"")  # Axolotl's PEFT-keyed save for `rl` + adapter
    for backend in ("vllm", "transformers"):
        with pytest.raises(ValueError, match=f"not a full model, which the {backend} backend cannot use; .*{out / 'merged'}"):
            check_student(backend, str(out))
    # vLLM loads no adapter folder; transformers (PEFT) one on a Hub base.
    (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-7B-Instruct"}))
    with pytest.raises(ValueError):
        check_student("vllm", str(out))
    check_student("transformers", str(out))
    check_student("openai", str(out))  # a served model name, not a folder soda reads
