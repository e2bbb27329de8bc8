"""The snapshot's data-parallel launcher through `run_snapshot`, on the `openai` backend
against a real local server: a stuck engine ends the run at `shard_timeout_s` (never a hang),
finished shards stay, and the same command resumes with only the missing prompts."""

import json

import pytest
from chat_server import ChatServer, Reply

from soda_plugin.snapshot import store
from soda_plugin.snapshot.data_parallel import DataParallelError
from soda_plugin.snapshot.engine import EngineInfo, SamplingSettings
from soda_plugin.snapshot.launchers import DataParallel
from soda_plugin.snapshot.runner import run_snapshot

PROMPTS = [[{"role": "user", "content": f"question {i}"}] for i in range(8)]


def _echo(request):
    return Reply(f"answer to {request['messages'][-1]['content']}")


def _launcher(server, shard_timeout_s):
    options = {"base_url": server.base_url, "concurrency": 2}
    return DataParallel(2, "openai", "tiny", options, EngineInfo("openai", "tiny", "test", options), shard_timeout_s)


def _run(server, out, shard_timeout_s):
    return run_snapshot(_launcher(server, shard_timeout_s), PROMPTS, out, SamplingSettings(temperature=0),
                        source="q0:tiny", shard_size=2, progress=False)


@pytest.mark.timeout(180)  # without the stall bound this test would wait on the held requests
def test_a_stuck_engine_ends_the_run_and_the_rerun_asks_only_the_missing_prompts(tmp_path):
    out = tmp_path / "q0"
    # The first 4 requests are answered; every later one waits in the server: stuck engines.
    with ChatServer(_echo, hold_after=4) as server:
        with pytest.raises(DataParallelError, match="no progress from the ranks in 8 s") as error:
            _run(server, out, shard_timeout_s=8)
        assert "shard_timeout_s" in str(error.value) and "re-run" in str(error.value)
        # The stuck rank was stopped (a rank whose 4 prompts were all answered may have finished).
        assert any(code not in (None, 0) for code in error.value.exit_codes.values())
        server.release()
    first = {row["prompt_id"]: row for row in store.iter_rows(out)}
    assert 2 <= len(first) <= 4 and len(first) % 2 == 0  # whole shards of 2 only
    assert json.loads((out / "run.json").read_text())["status"] == "running"  # not marked complete

    with ChatServer(_echo) as server:
        summary = _run(server, out, shard_timeout_s=60)
        asked = set(server.answered_by_prompt)
    rows = list(store.iter_rows(out))
    assert sorted(row["prompt_id"] for row in rows) == sorted({row["prompt_id"] for row in rows})  # once each
    assert len(rows) == 8 and summary.prompts_done_before == len(first)
    assert asked == {p[-1]["content"] for p in PROMPTS} - {row["prompt"][-1]["content"] for row in first.values()}
    assert {pid: row for pid, row in first.items()} == {row["prompt_id"]: row for row in rows
                                                        if row["prompt_id"] in first}  # kept as written
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["data_parallel_size"] == 2
