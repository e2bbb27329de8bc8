"""A DPO stage killed after a checkpoint, resumed with `resume_from_checkpoint` (docs/chaining.md,
"Checkpoints and resuming"), proved from artifacts: the reference store, the saved weights and
the metrics and starting checksums the test's own `fault_plugin` writes.

Three runs of the default chain (warmup then DPO, 4 steps, a checkpoint every 2) on one shared
warmup folder: an uninterrupted run; a run of another `output_dir` SIGKILLed after DPO step 3,
so `checkpoint-2` is its last checkpoint; then, with the reference store removed so that the
resumed run has to score the pairs itself while the checkpoint is there, the killed run's
command again with `resume_from_checkpoint: <output_dir>/checkpoint-2`.
"""

import shutil
import signal

import pytest
import torch

from axolotl_run import axolotl_train, dpo_chain_config, write_config
from model_checks import (
    kills,
    logged_metrics,
    reference_forwards,
    reference_logps_under,
    saved_checksum,
    starting_checksums,
    stored_reference_logps,
    weights,
)
from soda_data import valid_rows, write_jsonl

pytestmark = pytest.mark.e2e

PLUGINS = ["soda_plugin.SODAPlugin", "fault_plugin.FaultPlugin"]
ROWS = 24
TOLERANCE = 1e-4  # nats: batched-and-padded (TRL) vs one unpadded pair at a time (the test), float32


def _assert_ok(run, what):
    assert run.returncode == 0, f"{what} failed:\n{run.output[-4000:]}"


@pytest.fixture(scope="module")
def resumed(tiny_model_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo_resume")
    pairs = write_jsonl(valid_rows(ROWS), root / "pairs.jsonl")
    warmup = root / "warmup"

    def run(name, out, kill_at="", **extra):
        cfg = dpo_chain_config(tiny_model_dirs["llama"], pairs, root / out, learning_rate=1.0e-3,
                               plugins=PLUGINS, max_steps=4, save_strategy="steps", save_steps=2, **extra)
        cfg["soda"]["warmup"].update(output_dir=str(warmup), save_strategy="no")
        (root / name).mkdir(exist_ok=True)
        events = root / name / "events.txt"
        result = axolotl_train(write_config(cfg, root / name / "dpo.yml"),
                               env={"SODA_TEST_EVENTS": str(events), "SODA_TEST_KILL_AT": kill_at})
        return result, events, root / out

    full, full_events, full_out = run("uninterrupted", "out_uninterrupted")
    _assert_ok(full, "the uninterrupted chain")
    shutil.copytree(warmup / "reference_logps", root / "store_of_the_uninterrupted_run")
    killed, killed_events, killed_out = run("killed", "out", kill_at="dpo_step=3")
    checkpoint = killed_out / "checkpoint-2"
    left_by_the_kill = sorted(p.name for p in killed_out.iterdir())
    shutil.rmtree(warmup / "reference_logps")
    resume, resume_events, resume_out = run("resumed", "out", resume_from_checkpoint=str(checkpoint))
    _assert_ok(resume, "the chain resumed from checkpoint-2")
    return {"root": root, "warmup": warmup, "checkpoint": checkpoint, "killed": killed,
            "left_by_the_kill": left_by_the_kill, "kill_events": killed_events, "full_events": full_events,
            "full_out": full_out, "resume_events": resume_events, "resume_out": resume_out}


def test_the_kill_leaves_checkpoint_2_and_no_finished_model(resumed):
    assert resumed["killed"].returncode == -signal.SIGKILL, resumed["killed"].output[-3000:]
    assert kills(resumed["kill_events"]) == ["dpo_step"]
    left = resumed["left_by_the_kill"]
    assert [name for name in left if name.startswith("checkpoint-")] == ["checkpoint-2"]
    assert "model.safetensors" not in left
    # The killed run trained no warmup (the uninterrupted run's was reused) and DPO up to step 3.
    # Step 3 is killed in `on_step_end`, before its log.
    assert [m["step"] for m in logged_metrics(resumed["kill_events"]) if "loss" in m] == [1, 2]
    assert {m["stage"] for m in logged_metrics(resumed["kill_events"])} == {"dpo"}


def test_resumed_run_stores_q_w_reference_logps_not_the_checkpoints(resumed):
    # The resumed run found no store and scored the 8 pairs 4 steps x 2 rows train on (4 batches),
    # with checkpoint-2 on disk and about to be loaded.
    assert reference_forwards(resumed["resume_events"]) == [("dpo", 4)]
    stored = stored_reference_logps(resumed["warmup"] / "reference_logps")
    assert len(stored) == 8
    rows = valid_rows(ROWS)
    q_w = reference_logps_under(resumed["warmup"], rows)
    assert set(stored) <= set(q_w), "stored pairs are not keyed by TRL's tokens of these rows"
    for key, values in stored.items():
        assert values == pytest.approx(q_w[key], abs=TOLERANCE), f"pair {key}: not q_w's log-probs"
    # The control: under checkpoint-2's weights the same pairs score measurably differently.
    at_checkpoint = reference_logps_under(resumed["checkpoint"], rows)
    assert max(abs(a - b) for key in stored for a, b in zip(at_checkpoint[key], q_w[key])) > 100 * TOLERANCE
    # And the values are those the uninterrupted run stored before its first step, exactly.
    assert stored_reference_logps(resumed["root"] / "store_of_the_uninterrupted_run") == stored


def test_resumed_run_continues_from_the_checkpoint_and_ends_where_the_uninterrupted_run_ends(resumed):
    # Each DPO policy's weights when training began: q_w without a checkpoint, checkpoint-2's on resume.
    assert starting_checksums(resumed["full_events"], "dpo") == [(0, saved_checksum(resumed["warmup"]))]
    assert starting_checksums(resumed["resume_events"], "dpo") == [(2, saved_checksum(resumed["checkpoint"]))]
    assert saved_checksum(resumed["checkpoint"]) != saved_checksum(resumed["warmup"])
    # The resumed run trains steps 3 and 4 only; they log what the uninterrupted run's steps 3 and 4 log.
    full = {m["step"]: m for m in logged_metrics(resumed["full_events"], "dpo") if "loss" in m}
    again = {m["step"]: m for m in logged_metrics(resumed["resume_events"], "dpo") if "loss" in m}
    assert sorted(full) == [1, 2, 3, 4] and sorted(again) == [3, 4]
    # All but TRL's `num_tokens`, a counter in the trainer (`DPOTrainer._total_train_tokens`)
    # that the checkpoint does not hold: it restarts from 0 on resume.
    for step in (3, 4):
        assert {k: v for k, v in again[step].items() if k != "num_tokens"} == \
            {k: v for k, v in full[step].items() if k != "num_tokens"}, step
    # The finished weights are the uninterrupted run's, bit for bit on CPU: `Trainer` restores
    # the optimizer, the scheduler, the position in the data and the RNG state from checkpoint-2.
    finished, reference = weights(resumed["resume_out"]), weights(resumed["full_out"])
    assert finished.keys() == reference.keys()
    assert [name for name in reference if not torch.equal(finished[name], reference[name])] == []
