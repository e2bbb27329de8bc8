"""The `soda` type and the warmup → DPO chain through the real `axolotl train` CLI."""

import json
import math
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from axolotl_run import axolotl_train, base_config, dpo_chain_config, two_process_launcher, write_config
from model_checks import (
    causal_lm_constructions,
    kills,
    logged_metrics,
    mean_margin,
    reference_forwards,
    same_weights,
    saved_checksum,
    starting_checksums,
    weights,
)
from soda_data import valid_rows, write_jsonl
from soda_plugin.train.stages import marker_path, write_marker

PROBED = ["soda_plugin.SODAPlugin", "fault_plugin.FaultPlugin"]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_jsonl(valid_rows(24), tmp_path_factory.mktemp("data") / "pairs.jsonl")



def _assert_ok(run, what):
    assert run.returncode == 0, f"{what} failed:\n{run.output[-4000:]}"


@pytest.mark.parametrize("family", ["qwen2"])  # the chain's warmup trains the Llama family
def test_sft_with_soda_type(family, tiny_model_dirs, pairs, tmp_path):
    out = tmp_path / "out"
    run = axolotl_train(write_config(base_config(tiny_model_dirs[family], pairs, out), tmp_path / "sft.yml"))
    _assert_ok(run, "SFT")
    logs = run.step_logs()
    assert len(logs) == 3 and all(math.isfinite(log["loss"]) for log in logs)
    assert (out / "model.safetensors").is_file()
    assert not torch.equal(weights(out)["model.norm.weight"], weights(tiny_model_dirs[family])["model.norm.weight"])


@pytest.mark.parametrize("trim", [True])  # without the trim: 12 batches; dropped from CI for time
def test_dpo_alone_with_soda_type_and_no_resident_reference(trim, tiny_model_dirs, pairs, tmp_path):
    cfg = base_config(tiny_model_dirs["qwen2"], pairs, tmp_path / "out", rl="dpo", trl={"beta": 0.1},
                      precompute_ref_log_probs=True, learning_rate=1.0e-3, plugins=PROBED,
                      soda={"precompute_only_trained_rows": trim})
    events = tmp_path / "events.txt"
    run = axolotl_train(write_config(cfg, tmp_path / "dpo.yml"), env={"SODA_TEST_EVENTS": str(events)})
    _assert_ok(run, "DPO")
    logs = _step_metrics(events, "dpo")
    assert logs[0]["rewards/margins"] == 0.0, "policy and reference must both be the start model at step 0"
    assert logs[-1]["rewards/margins"] != 0.0, "DPO must move the policy away from the reference"
    assert len(causal_lm_constructions(events)) == 1, "a second (reference) model was built"
    # 3 steps x 2 rows use 6 of the 24 pairs: reference log-probs for 3 batches, or all 12 without the trim.
    assert ("trains on 6 of the 24 pairs" in run.output) is trim
    batches = 3 if trim else 12
    assert re.search(rf"soda: reference log-probs of the train pairs: 100%\S*\s*\S* {batches}/{batches} ", run.output)
    assert reference_forwards(events) == [("dpo", batches)]
    store = tmp_path / "out" / "reference_logps"  # no warmup: the store is in the DPO output
    assert json.loads((store / "manifest.json").read_text())["datasets"]["train"]["rows"] == (6 if trim else 24)


def _step_metrics(events: Path, stage: str) -> list[dict]:
    """The per-step metrics `stage`'s trainer logged, as the test plugin wrote them (the final
    `train_loss` summary left out)."""
    return [m for m in logged_metrics(events, stage) if "loss" in m]


def _state(root: Path) -> dict:
    warmup = root / "out" / "warmup"
    return {"marker": marker_path(warmup).exists(), "warmup_model": (warmup / "model.safetensors").exists(),
            "dpo_model": (root / "out" / "model.safetensors").exists()}


@pytest.fixture(scope="module")
def chained(tiny_model_dirs, pairs, tmp_path_factory):
    """The chain (warmup then DPO) run as a user whose job is killed would run it: SIGKILL
    mid-warmup (over a stale marker from an earlier warmup config), after the warmup's save
    and before its marker, and mid-DPO, each time followed by the same command, until it
    finishes. The kills are fired inside the run by `fault_plugin` (no sleeps)."""
    root = tmp_path_factory.mktemp("chain")
    cfg = dpo_chain_config(tiny_model_dirs["llama"], pairs, root / "out", learning_rate=1.0e-3, plugins=PROBED)
    cfg["soda"]["warmup"]["on_config_change"] = "rerun"
    config, events, warmup = write_config(cfg, root / "chain.yml"), root / "events.txt", root / "out" / "warmup"
    write_marker(warmup, "warmup", {"learning_rate": 9.0e-9})
    temp = root / "tmp"  # the runs' TMPDIR, to count the config copies Axolotl leaves there
    temp.mkdir()
    runs, states, built, kill_points, forwards, temp_configs, metrics, starts = {}, {}, {}, {}, {}, {}, {}, {}
    for name, kill_at in [("mid_warmup", "warmup_step=2"), ("before_marker", "before_marker"),
                          ("mid_dpo", "dpo_step=2"), ("finish", "")]:
        before, counted = len(causal_lm_constructions(events)), len(reference_forwards(events))
        logged, started = len(logged_metrics(events)), len(starting_checksums(events, "dpo"))
        runs[name] = axolotl_train(config, env={"SODA_TEST_EVENTS": str(events), "SODA_TEST_KILL_AT": kill_at,
                                                "TMPDIR": str(temp)})
        states[name], built[name] = _state(root), len(causal_lm_constructions(events)) - before
        temp_configs[name] = len(list(temp.glob("axolotl_config_*.yml")))
        forwards[name] = reference_forwards(events)[counted:]
        metrics[name], starts[name] = logged_metrics(events)[logged:], starting_checksums(events, "dpo")[started:]
        kill_points[name] = kills(events)[-1] if kill_at and kills(events) else None
        if name == "mid_dpo":
            shutil.copytree(warmup, root / "warmup_after_mid_dpo", ignore=shutil.ignore_patterns("checkpoint-*"))
    _assert_ok(runs["finish"], "chained warmup → DPO, run again after three kills")
    return {"root": root, "base": tiny_model_dirs["llama"], "cfg": cfg, "config": config, "runs": runs,
            "states": states, "built": built, "kills": kill_points, "warmup": warmup, "forwards": forwards,
            "temp_configs": temp_configs, "metrics": metrics, "starts": starts}


def test_each_kill_is_recovered_by_running_the_same_command_again(chained):
    runs, states, kill_points = chained["runs"], chained["states"], chained["kills"]
    for name in ("mid_warmup", "before_marker", "mid_dpo"):
        assert runs[name].returncode == -signal.SIGKILL, f"{name}:\n{runs[name].output[-3000:]}"
    assert kill_points == {"mid_warmup": "warmup_step", "before_marker": "before_marker", "mid_dpo": "dpo_step",
                           "finish": None}
    # The stale marker is removed before the warmup trains again, so a kill then leaves none.
    assert "warmup config changed" in runs["mid_warmup"].output and not states["mid_warmup"]["marker"]
    # Killed between the warmup's save and its marker: the saved weights are not trusted.
    assert states["before_marker"] == {"marker": False, "warmup_model": True, "dpo_model": False}
    assert "an unfinished earlier run left model.safetensors; it is overwritten" in runs["mid_dpo"].output
    assert states["mid_dpo"] == {"marker": True, "warmup_model": True, "dpo_model": False}
    # The last run reuses the finished warmup as it is and trains DPO from step 0.
    finish = runs["finish"]
    assert f"warmup in {chained['warmup']} is finished" in finish.output and "DPO trains from step 0" in finish.output
    assert {m["stage"] for m in chained["metrics"]["finish"]} == {"dpo"}, "the finished warmup was retrained"
    assert same_weights(chained["warmup"], chained["root"] / "warmup_after_mid_dpo")


def test_warmup_config_copy_is_removed_from_the_temp_folder_unless_killed(chained):
    # Axolotl's `load_cfg` writes the warmup's config there; a SIGKILL mid-warmup leaves
    # it (the control: the copy is made in this TMPDIR), a warmup that ends removes it.
    assert chained["temp_configs"] == {"mid_warmup": 1, "before_marker": 1, "mid_dpo": 1, "finish": 1}


def test_chain_writes_warmup_marker_and_dpo_trains_from_it(chained):
    warmup = chained["warmup"]
    marker = json.loads((warmup / "soda_stage.json").read_text())
    assert marker["stage"] == "warmup" and len(marker["config_hash"]) == 16
    assert marker["config"]["learning_rate"] == 1.0e-3 and "rl" not in marker["config"]
    # The run that trained the warmup, then DPO until its kill after step 2 (its log of step 2
    # comes after the kill point): it computed the reference store. The run after it reused it.
    metrics = chained["metrics"]
    assert [m["step"] for m in metrics["mid_dpo"] if m["stage"] == "warmup" and "loss" in m] == [1, 2, 3]
    assert [m["step"] for m in metrics["mid_dpo"] if m["stage"] == "dpo" and "loss" in m] == [1]
    assert [m["step"] for m in metrics["finish"] if "loss" in m] == [1, 2, 3]
    # q_w is both the policy's start and the reference: the margin is exactly 0 at the first
    # step (logged as step 1: its forward runs before the first update), in both runs.
    for name in ("mid_dpo", "finish"):
        first = next(m for m in metrics[name] if m["stage"] == "dpo" and "loss" in m)
        assert first["step"] == 1 and first["rewards/margins"] == 0.0, (name, first)
    # The DPO policy starts from the warmup's saved weights, not from q0: margin 0 alone would
    # also hold if policy and reference were both q0.
    q_w, q_0 = saved_checksum(warmup), saved_checksum(chained["base"])
    assert q_w != q_0
    assert chained["starts"]["mid_dpo"] == [(0, q_w)] and chained["starts"]["finish"] == [(0, q_w)]
    # From the saved models: DPO moved the policy, and toward the teacher's answers.
    out = chained["root"] / "out"
    assert not same_weights(out, warmup)
    rows = valid_rows(24)
    assert mean_margin(out, rows) > mean_margin(warmup, rows)
    # Models built: q_w's for the warmup, then the DPO policy; no reference model, ever.
    assert chained["built"]["mid_dpo"] == 2 and chained["built"]["finish"] == 1


def test_reference_logps_are_stored_beside_q_w_and_reused_after_a_kill(chained):
    # The run killed mid-DPO scored the 6 trained pairs (3 batches of 2) into the store beside
    # q_w before its first step; the run after the kill found all 6 there: no reference forward.
    forwards = chained["forwards"]
    assert forwards["mid_dpo"] == [("warmup", 0), ("dpo", 3)] and forwards["finish"] == [("dpo", 0)]
    store = chained["warmup"] / "reference_logps"
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["datasets"]["train"]["rows"] == 6 and manifest["identity"]["warmup_hash"]
    assert sum(len(p.read_text().splitlines()) for p in store.glob("part-*.jsonl")) == 6


def test_changed_warmup_config_is_detected(chained):
    cfg = dict(chained["cfg"], soda={"warmup": {"learning_rate": 2.0e-3, "max_steps": 3}})
    run = axolotl_train(write_config(cfg, chained["root"] / "changed.yml"))
    assert run.returncode != 0
    assert "was made by a different warmup config" in run.output
    assert "learning_rate: 0.001 -> 0.002" in run.output


def test_dpo_stage_alone_starts_from_the_given_warmup(chained, tiny_model_dirs, tmp_path):
    # Learning rate 0: the DPO output must be exactly the warmup weights, not the base's.
    # Another beta and output_dir, the same q_w and pairs: the stored reference log-probs serve
    # every pair (`require` fails otherwise), no reference forward runs, the store is untouched.
    store = chained["warmup"] / "reference_logps"
    parts = {p.name: p.read_bytes() for p in store.glob("part-*.jsonl")}
    cfg = dict(chained["cfg"], learning_rate=0.0, output_dir=str(tmp_path / "dpo_only"), trl={"beta": 0.3},
               soda={"stage": "dpo", "reference_logps": "require",
                     "warmup": {"learning_rate": 1.0e-3, "max_steps": 3, "output_dir": str(chained["warmup"])}})
    events = tmp_path / "events.txt"
    run = axolotl_train(write_config(cfg, tmp_path / "dpo_only.yml"), env={"SODA_TEST_EVENTS": str(events)})
    _assert_ok(run, "DPO-only stage")
    assert reference_forwards(events) == [("dpo", 0)]
    assert {p.name: p.read_bytes() for p in store.glob("part-*.jsonl")} == parts
    assert _step_metrics(events, "dpo")[0]["rewards/margins"] == 0.0
    dpo, warm, base = weights(tmp_path / "dpo_only"), weights(chained["warmup"]), weights(tiny_model_dirs["llama"])
    assert all(torch.equal(dpo[name], warm[name]) for name in warm)
    assert not all(torch.equal(warm[name], base[name]) for name in base)


def test_soda_reference_scores_only_the_pairs_the_store_lacks(chained, tmp_path):
    # One more DPO step trains on 8 pairs: the 6 stored + 2 new. The command builds the DPO
    # stage's trainer without training, scores the 2 (one batch of 4), appends them, and stops.
    store = chained["warmup"] / "reference_logps"
    before = set(store.glob("part-*.jsonl"))
    cfg = dict(chained["cfg"], max_steps=4, output_dir=str(tmp_path / "never_trained"),
               soda={"stage": "dpo", "warmup": {"learning_rate": 1.0e-3, "max_steps": 3,
                                                "output_dir": str(chained["warmup"])}})
    run = axolotl_train(write_config(cfg, tmp_path / "r.yml"),
                        launcher=[sys.executable, "-m", "soda_plugin.cli", "reference", "--batch-size", "4"])
    _assert_ok(run, "soda reference")
    assert f"8 train pairs stored in {store}" in run.output
    (new,) = set(store.glob("part-*.jsonl")) - before
    assert len(new.read_text().splitlines()) == 2
    assert json.loads((store / "manifest.json").read_text())["datasets"]["train"]["rows"] == 8
    assert not (tmp_path / "never_trained" / "model.safetensors").exists()


def test_warmup_stage_alone_stops_before_dpo(tiny_model_dirs, pairs, tmp_path):
    cfg = dpo_chain_config(tiny_model_dirs["qwen2"], pairs, tmp_path / "out")
    cfg["soda"]["stage"] = "warmup"
    run = axolotl_train(write_config(cfg, tmp_path / "warmup_only.yml"))
    _assert_ok(run, "warmup-only stage")
    assert (tmp_path / "out" / "warmup" / "soda_stage.json").is_file()
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert not any("rewards/margins" in log for log in run.step_logs())


def test_bad_soda_key_fails_at_config_time_naming_it(tiny_model_dirs, pairs, tmp_path):
    cfg = dpo_chain_config(tiny_model_dirs["qwen2"], pairs, tmp_path / "out")
    cfg["soda"]["warmup"]["lerning_rate"] = cfg["soda"]["warmup"].pop("learning_rate")
    run = axolotl_train(write_config(cfg, tmp_path / "bad.yml"))
    assert run.returncode != 0
    assert "unknown key `soda.warmup.lerning_rate`: did you mean `soda.warmup.learning_rate`?" in run.output
    assert not (tmp_path / "out" / "warmup").exists()


def test_two_process_cpu_launch_chains_with_one_writer_and_recovers_from_a_kill(tiny_model_dirs, pairs, tmp_path, held_port):
    cfg = dpo_chain_config(tiny_model_dirs["qwen2"], pairs, tmp_path / "out", plugins=PROBED)
    config, events = write_config(cfg, tmp_path / "chain2.yml"), tmp_path / "events.txt"
    # Rank 0 is killed with the warmup saved and its marker not yet written; the launcher ends rank 1.
    run = axolotl_train(config, launcher=two_process_launcher(held_port),
                        env={"SODA_TEST_EVENTS": str(events), "SODA_TEST_KILL_AT": "before_marker"})
    assert run.returncode != 0 and kills(events) == ["before_marker"], run.output[-3000:]
    assert not marker_path(tmp_path / "out" / "warmup").exists()
    run = axolotl_train(config, launcher=two_process_launcher(held_port))
    _assert_ok(run, "two-process chain")
    assert "the warmup trains from step 0 (an unfinished earlier run left model.safetensors" in run.output
    assert "MULTI_CPU over 2 processes" in run.output
    assert sorted(p.name for p in (tmp_path / "out" / "warmup").glob("soda_stage*")) == ["soda_stage.json"]
    dpo_logs = [log for log in run.step_logs() if "rewards/margins" in log]
    # Not bit-exact here: the precompute pass and the training step pad different batches.
    assert dpo_logs and abs(dpo_logs[0]["rewards/margins"]) < 1e-5
    # Data parallel: 3 steps x 2 ranks x 2 rows = 12 of the 24 rows, kept by the precompute trim;
    # they make exactly one epoch (a trim that forgot the second rank would keep 6: two epochs).
    assert "trains on 12 of the 24 pairs" in run.output
    assert dpo_logs[-1]["epoch"] == 1.0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    # The reference pass on two ranks (docs/memory.md): each rank scored its slice, rank 0 wrote
    # them all beside q_w: every trained pair exactly once, with the values a one-process pass gives.
    import hashlib

    from model_checks import reference_logps_under, stored_reference_logps

    warmup = tmp_path / "out" / "warmup"
    store = warmup / "reference_logps"
    lines = [json.loads(line)["k"] for part in store.glob("part-*.jsonl") for line in part.read_text().splitlines()]
    assert len(lines) == len(set(lines)) == 12, f"{len(lines)} lines for {len(set(lines))} pairs"
    trained = json.loads((store / "manifest.json").read_text())["datasets"]["train"]
    # The manifest's fingerprint is the SHA-256 of the trained set's sorted pair keys.
    assert trained["fingerprint"] == hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]
    assert trained["rows"] == 12
    stored, single = stored_reference_logps(store), reference_logps_under(warmup, valid_rows(24))
    assert stored.keys() <= single.keys()
    torch.testing.assert_close(torch.tensor([stored[k] for k in sorted(stored)]),
                               torch.tensor([single[k] for k in sorted(stored)]), rtol=0, atol=1e-4)
