"""`tools/snapshot_q0.py` as a user runs it: SIGKILL mid-run, re-run, nothing lost or doubled.
What a re-run did is read from the shards on disk (hash, inode, mtime), not from its output."""

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from demo_file_states import shard_states
from soda_data import write_jsonl
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.snapshot import store

pytestmark = pytest.mark.e2e
TOOL = Path(__file__).resolve().parents[2] / "tools" / "snapshot_q0.py"
HOLD = Path(__file__).resolve().parent / "hold_after_shard.py"
PROMPTS = [[{"role": "user", "content": f"Sort the list: {i}, {i + 7}, {i + 3}"}] for i in range(40)]


def _command(model, prompts, out):
    return [sys.executable, str(TOOL), "--model", str(model), "--prompts", str(prompts), "--out", str(out),
            "--backend", "transformers", "--temperature", "0", "--max-tokens", "12", "--shard-size", "4",
            "--batch-size", "4", "--no-progress"]


def test_sigkill_then_rerun_finishes_with_no_loss_and_no_duplicates(tiny_model_dirs, tmp_path):
    prompts = write_jsonl([{"content": p} for p in PROMPTS], tmp_path / "prompts.jsonl")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    # The run holds itself still after its second shard (of ten) and says so on a pipe; the
    # kill lands there, so it is mid-run by construction.
    held_read, held_write = os.pipe()
    command = _command(tiny_model_dirs["llama"], prompts, tmp_path / "killed")
    killed = subprocess.Popen([sys.executable, str(HOLD), "2", str(held_write), *command[1:]], env=env,
                              pass_fds=(held_write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(held_write)
    try:
        ready, _, _ = select.select([held_read], [], [], 240)
        held = os.read(held_read, 4096).decode() if ready else ""
    finally:
        os.close(held_read)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert held.endswith("shard-000001.jsonl\n"), f"the run did not reach its second shard: {held!r}"
    partial = store.done_prompt_ids(tmp_path / "killed")
    assert len(partial) == 8, "two shards of four prompts each are on disk"
    before = shard_states(tmp_path / "killed")

    rerun = subprocess.run(_command(tiny_model_dirs["llama"], prompts, tmp_path / "killed"), env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # Nothing regenerated: the two shards are untouched, and the new ones hold exactly the rest.
    after = shard_states(tmp_path / "killed")
    assert {path: after[path] for path in before} == before
    new_ids = [row["prompt_id"] for path in sorted(set(after) - set(before)) for row in _rows(path)]
    assert sorted(new_ids) == sorted({prompt_id(p) for p in PROMPTS} - partial)
    reference = subprocess.run(_command(tiny_model_dirs["llama"], prompts, tmp_path / "reference"), env=env,
                               capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]

    rows = list(store.iter_rows(tmp_path / "killed"))
    ids = [row["prompt_id"] for row in rows]
    assert len(ids) == len(set(ids)) == 40 and set(ids) == {prompt_id(p) for p in PROMPTS}
    by_id = {row["prompt_id"]: row["response"] for row in store.iter_rows(tmp_path / "reference")}
    assert {row["prompt_id"]: row["response"] for row in rows} == by_id
    assert store.read_manifest(tmp_path / "killed")["status"] == "complete"


def test_snapshot_settings_come_from_the_recipe(tiny_model_dirs, tmp_path):
    data = write_jsonl([{"content": p, "teacher_response": "ok"} for p in PROMPTS[:6]], tmp_path / "teacher.jsonl")
    recipe = {
        "base_model": str(tiny_model_dirs["qwen2"]), "output_dir": str(tmp_path / "run"),
        "datasets": [{"path": str(data), "type": "soda"}],
        "soda": {"snapshot": {"backend": "transformers", "temperature": 0.0, "max_tokens": 7, "shard_size": 5}},
    }
    (tmp_path / "recipe.yml").write_text(yaml.safe_dump(recipe))
    proc = subprocess.run([sys.executable, str(TOOL), "--recipe", str(tmp_path / "recipe.yml"), "--no-progress"],
                          capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "run" / "snapshot_q0"
    manifest = store.read_manifest(out)
    assert manifest["sampling"]["max_tokens"] == 7 and manifest["sampling"]["temperature"] == 0.0
    assert manifest["model"] == str(tiny_model_dirs["qwen2"]) and manifest["source"] == f"q0:{tiny_model_dirs['qwen2']}"
    assert len(store.shard_paths(out)) == 2 and len(list(store.iter_rows(out))) == 6
    assert "tok/s" in proc.stdout


def test_data_parallel_ranks_split_the_prompts_and_resume(tiny_model_dirs, tmp_path):
    """Two engine processes on disjoint slices (transformers on CPU stands in for vLLM GPUs)."""
    prompts = write_jsonl([{"content": p} for p in PROMPTS[:10]], tmp_path / "prompts.jsonl")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    first = subprocess.run(_command(tiny_model_dirs["llama"], tmp_path / "prompts.jsonl", tmp_path / "dp")
                           + ["--data-parallel-size", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    names = sorted(p.name for p in store.shard_paths(tmp_path / "dp"))
    assert names == ["shard-r000-000000.jsonl", "shard-r000-000001.jsonl", "shard-r001-000000.jsonl",
                     "shard-r001-000001.jsonl"]
    single = subprocess.run(_command(tiny_model_dirs["llama"], prompts, tmp_path / "single"), env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    dp_rows = {row["prompt_id"]: row["response"] for row in store.iter_rows(tmp_path / "dp")}
    assert dp_rows == {row["prompt_id"]: row["response"] for row in store.iter_rows(tmp_path / "single")}
    assert store.read_manifest(tmp_path / "dp")["data_parallel_size"] == 2
    before = shard_states(tmp_path / "dp")
    again = subprocess.run(_command(tiny_model_dirs["llama"], prompts, tmp_path / "dp") + ["--data-parallel-size", "2"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert shard_states(tmp_path / "dp") == before  # every prompt done: no shard written, none rewritten
    assert store.read_manifest(tmp_path / "dp")["status"] == "complete"


def _rows(shard):
    return [json.loads(line) for line in shard.read_text().splitlines()]
