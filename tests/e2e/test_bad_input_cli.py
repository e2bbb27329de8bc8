"""Bad `soda` rows through the real `axolotl train`: a non-zero exit before any model is
built (`fault_plugin` counts model constructions), naming the file, the row, the field and
the reason, in the SFT and the DPO view, with one or two dataset workers and under a
two-process launch; under `skip`, good rows arrive as written."""

import json
import re
from pathlib import Path

import pytest
from datasets import Dataset, load_from_disk

from axolotl_run import axolotl_train, base_config, dpo_chain_config, two_process_launcher, write_config
from model_checks import causal_lm_constructions
from soda_data import valid_rows, write_jsonl

pytestmark = pytest.mark.e2e

# `fault_plugin` writes one line to $SODA_TEST_EVENTS per model constructed, in any process.
PROBED = ["soda_plugin.SODAPlugin", "fault_plugin.FaultPlugin"]


def _probed_train(cfg: dict, config: Path, events: Path, **kwargs):
    cfg["plugins"] = PROBED
    return axolotl_train(write_config(cfg, config), env={"SODA_TEST_EVENTS": str(events)}, **kwargs)


def _models_built(events: Path) -> list[str]:
    """Every model construction `fault_plugin` recorded (inner modules such as `Qwen2Model` too)."""
    return [line for line in events.read_text().splitlines() if line.startswith("model ")] if events.exists() else []


def _mixed_types(n=24):
    """Row 0's answer `4.` is good; line 3 holds a number where a string belongs."""
    rows = valid_rows(n)
    rows[0]["teacher_response"] = "4."
    rows[2]["teacher_response"] = 4.0
    rows[5]["content"] = [{"role": "assistant", "content": "out of order"}]
    return rows


def _assert_failure_before_any_model(run, events: Path, line: str):
    print(f"axolotl train exited {run.returncode} after {run.seconds:.1f} s")
    assert run.returncode != 0
    assert any(line in out for out in run.output.splitlines()), run.output[-4000:]
    assert _models_built(events) == [], "a model was built before the bad row stopped the run"


@pytest.mark.parametrize("num_proc", [1, 2])
def test_dpo_bad_row_stops_before_any_model_naming_file_line_field_reason(num_proc, tiny_model_dirs, tmp_path):
    data = write_jsonl(_mixed_types(), tmp_path / "pairs.jsonl")
    cfg = base_config(tiny_model_dirs["qwen2"], data, tmp_path / "out", rl="dpo", trl={"beta": 0.1},
                      precompute_ref_log_probs=True, dataset_num_proc=num_proc, soda={"on_bad_row": "error"})
    events = tmp_path / "events.txt"
    run = _probed_train(cfg, tmp_path / "dpo.yml", events, timeout=300)
    _assert_failure_before_any_model(
        run, events, f"{data}:3: field `teacher_response` is float, not a string (reason: not_string)")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_dpo_bad_row_in_a_saved_dataset_stops_from_the_map_workers(tiny_model_dirs, tmp_path):
    """A `save_to_disk` folder is read by Axolotl and validated in its two map workers:
    the worker's error must reach the parent (it used to kill the pool's result thread)."""
    rows = valid_rows(24)
    rows[17]["student_response"] = rows[17]["teacher_response"]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    cfg = base_config(tiny_model_dirs["qwen2"], tmp_path / "saved", tmp_path / "out", rl="dpo",
                      trl={"beta": 0.1}, precompute_ref_log_probs=True, dataset_num_proc=2)
    cfg["datasets"] = [{"path": str(tmp_path / "saved"), "type": "soda"}]
    events = tmp_path / "events.txt"
    run = _probed_train(cfg, tmp_path / "dpo.yml", events, timeout=300)
    print(f"axolotl train exited {run.returncode} after {run.seconds:.1f} s")
    assert run.returncode != 0 and _models_built(events) == [], run.output[-4000:]
    assert re.search(rf"{tmp_path / 'saved'} row \d+: field `student_response` equals `teacher_response`", run.output)


def test_warmup_bad_row_stops_before_any_training_in_the_sft_view(tiny_model_dirs, tmp_path):
    pairs = write_jsonl(valid_rows(24), tmp_path / "pairs.jsonl")
    teacher = write_jsonl(valid_rows(24), tmp_path / "teacher.jsonl")
    lines = teacher.read_text().splitlines()
    lines[6] = lines[6][:50]  # a torn line, as a killed writer leaves it
    teacher.write_text("\n".join(lines) + "\n")
    cfg = dpo_chain_config(tiny_model_dirs["qwen2"], pairs, tmp_path / "out", dataset_num_proc=2)
    cfg["soda"]["warmup"]["datasets"] = [{"path": str(teacher), "ds_type": "json", "type": "soda"}]
    events = tmp_path / "events.txt"
    run = _probed_train(cfg, tmp_path / "chain.yml", events, timeout=300)
    _assert_failure_before_any_model(run, events, f"{teacher}:7: field `(line)` is not a JSON line")
    assert "fix or remove that line" in run.output
    assert not run.step_logs() and not (tmp_path / "out" / "warmup" / "model.safetensors").exists()


def test_two_process_launch_stops_on_a_bad_row(tiny_model_dirs, tmp_path, held_port):
    data = write_jsonl(_mixed_types(), tmp_path / "pairs.jsonl")
    cfg = dpo_chain_config(tiny_model_dirs["qwen2"], data, tmp_path / "out")
    events = tmp_path / "events.txt"
    run = _probed_train(cfg, tmp_path / "chain2.yml", events, launcher=two_process_launcher(held_port), timeout=300)
    print(f"two-process axolotl train exited {run.returncode} after {run.seconds:.1f} s")
    assert run.returncode != 0 and _models_built(events) == [], run.output[-4000:]
    assert run.output.count(f"{data}:3: field `teacher_response` is float") >= 2  # both ranks say why
    assert not (tmp_path / "out" / "warmup").exists()


def test_skip_keeps_good_rows_as_written_and_lists_each_skipped_one(tiny_model_dirs, tmp_path):
    data = write_jsonl(_mixed_types(), tmp_path / "pairs.jsonl")
    prepared = tmp_path / "prepared"
    cfg = base_config(tiny_model_dirs["qwen2"], data, tmp_path / "out", rl="dpo", trl={"beta": 0.1},
                      precompute_ref_log_probs=True, max_steps=1, dataset_prepared_path=str(prepared),
                      soda={"on_bad_row": "skip"})
    events = tmp_path / "events.txt"
    run = _probed_train(cfg, tmp_path / "dpo.yml", events)
    assert run.returncode == 0, run.output[-4000:]
    # The probe the failing tests rely on sees models when they are built: one policy here.
    assert len(causal_lm_constructions(events)) == 1, _models_built(events)
    # Axolotl's own prepared copy of the preference set: 22 rows, row 0's answer unchanged.
    saved = [load_from_disk(str(p.parent)) for p in prepared.rglob("dataset_info.json") if "soda_rows" not in str(p)]
    assert len(saved) == 1 and len(saved[0]) == 22
    assert [c for c in saved[0]["chosen"] if c.startswith("4.")] == ["4.<|im_end|>"]  # Axolotl shuffles
    skipped = [json.loads(line) for path in (prepared / "soda_rows").glob("*.skipped.jsonl")
               for line in path.read_text().splitlines()]
    assert sorted((s["where"], s["reason"]) for s in skipped) == [
        (f"{data}:3", "not_string"), (f"{data}:6", "roles_out_of_order")]
    assert (tmp_path / "out" / "model.safetensors").is_file()
