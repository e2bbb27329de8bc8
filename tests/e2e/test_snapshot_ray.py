"""`soda snapshot --ray-address local`: a local Ray cluster that soda starts, 2 workers, the
transformers engine on a tiny model. The answers equal the plain launcher's; a SIGKILLed
driver's run resumes with every prompt once; no Ray process outlives the run.

Each run gets its own tag in the environment; every process of its Ray cluster (gcs_server,
raylet, the `ray::` workers) inherits the driver's environment, so the tag finds exactly that
run's processes. HOME and RAY_TMPDIR point at the test's folders (Ray 2.60 writes an auth token
under ~/.ray; RAY_AUTH_MODE=disabled turns auth off for the local cluster).
"""

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from soda_data import write_jsonl
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.snapshot import store

pytestmark = pytest.mark.e2e
ray = pytest.importorskip("ray", reason="ray[data] is pinned in constraints.txt (the `ray` extra)")

TOOL = Path(__file__).resolve().parents[2] / "tools" / "snapshot_q0.py"
HOLD = Path(__file__).resolve().parent / "hold_after_shard.py"
TAG = "SODA_TEST_RAY_TAG"
LONG = [{"role": "user", "content": "Sort the list: " + ", ".join(str(i) for i in range(60))}]
RAY_NAMES = ("raylet", "gcs_server", "ray::")
GONE_WITHIN_S = 120


def _prompts(count):
    return [[{"role": "user", "content": f"Sort the list: {i}, {i + 7}, {i + 3}"}] for i in range(count)]


def _command(model, prompts, out, *extra):
    return [sys.executable, str(TOOL), "--model", str(model), "--prompts", str(prompts), "--out", str(out),
            "--backend", "transformers", "--temperature", "1", "--seed", "7", "--max-tokens", "10",
            "--shard-size", "4", "--batch-size", "4", "--no-progress", *extra]


def _ray(*extra):
    return ["--ray-address", "local", "--data-parallel-size", "2", "--shard-timeout-s", "240", *extra]


@pytest.fixture
def ray_env(tmp_path):
    """Environment maker: a fresh tag per run, HOME and Ray's temp folder under the test's."""
    home = tmp_path / "home"
    home.mkdir()
    # Ray's socket paths must stay under 107 characters: a short folder, not tmp_path.
    ray_tmp = tempfile.mkdtemp(prefix="soda-ray-")

    def make(tag):
        return dict(os.environ, HF_HUB_OFFLINE="1", RAY_AUTH_MODE="disabled", HOME=str(home),
                    RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0", **{TAG: tag})

    yield make
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _tagged(tag):
    """(pid, command line) of the live processes whose environment carries `tag`.

    The whole command line is kept: Ray's binaries sit deep in site-packages, and a cut string
    loses `gcs_server` on a long checkout path (CI's did)."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            if process.pid != os.getpid() and process.environ().get(TAG) == tag and process.status() != "zombie":
                found.append((process.pid, " ".join(process.info["cmdline"] or [process.info["name"]])))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _program(command_line):
    """The program's own name, with its arguments: `/long/path/gcs_server --x` -> `gcs_server --x`."""
    head, _, rest = command_line.partition(" ")
    return f"{os.path.basename(head)} {rest}"[:100]


def _ray_processes(tag):
    return [(pid, name) for pid, name in _tagged(tag) if any(key in name for key in RAY_NAMES)]


def _wait_gone(tag, within_s=GONE_WITHIN_S):
    deadline = time.monotonic() + within_s
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(2)
    return left


def _kill(processes):
    for pid, _ in processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _run(command, env, timeout=300):
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _rows(out):
    return {(row["prompt_id"], row["sample_index"]): row for row in store.iter_rows(out)}


def test_ray_answers_equal_the_plain_run_and_ray_is_gone_after(tiny_model_dirs, tmp_path, ray_env, monkeypatch):
    """In this process, so that Ray's own exit hook (`atexit` in `ray.init`) cannot stand in
    for soda's `ray.shutdown()`: the cluster must be gone while the caller lives on."""
    from soda_plugin.cli.snapshot import make_parser
    from soda_plugin.snapshot.cli import run_from_args
    from soda_plugin.snapshot.engine import SamplingSettings, create_engine
    from soda_plugin.snapshot.runner import run_snapshot

    model = tiny_model_dirs["llama"]
    prompts = _prompts(11) + [LONG]
    path = write_jsonl([{"content": p} for p in prompts], tmp_path / "prompts.jsonl")
    tag = uuid.uuid4().hex
    for key, value in ray_env(tag).items():
        monkeypatch.setenv(key, value)
    args = make_parser().parse_args(_command(model, path, tmp_path / "ray", "--n", "2", "--max-prompt-tokens", "60",
                                             *_ray())[2:])
    try:
        run_from_args(args)
        assert not ray.is_initialized()
        left = _wait_gone(tag)
    finally:
        _kill(_tagged(tag))
    assert not left, f"Ray processes outlived the run by {GONE_WITHIN_S} s: {left}"

    engine = create_engine("transformers", str(model), batch_size=4)
    try:
        run_snapshot(engine, prompts, tmp_path / "plain", SamplingSettings(temperature=1.0, max_tokens=10, n=2, seed=7),
                     source=f"q0:{model}", shard_size=4, progress=False, max_prompt_tokens=60)
    finally:
        engine.close()
    ray_rows, plain_rows = _rows(tmp_path / "ray"), _rows(tmp_path / "plain")
    assert len(ray_rows) == 22 and ray_rows == plain_rows
    assert len({row["response"] for row in ray_rows.values()}) > 11, "temperature 1 samples differ per seed"
    too_long = [json.loads(line) for line in (tmp_path / "ray" / "too_long.jsonl").read_text().splitlines()]
    assert [row["prompt_id"] for row in too_long] == [prompt_id(LONG)] and too_long[0]["limit"] == 60
    manifest = store.read_manifest(tmp_path / "ray")
    assert manifest["ray"] == {"version": ray.__version__, "address": "local", "workers": 2}
    assert manifest["status"] == "complete" and manifest["last_run"]["too_long"] == 1
    assert {k: manifest[k] for k in ("sampling", "seeding", "backend")} == \
        {k: store.read_manifest(tmp_path / "plain")[k] for k in ("sampling", "seeding", "backend")}


def _digests(out):
    return {path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, path.stat().st_ino)
            for path in store.shard_paths(out)}


def test_sigkill_of_the_driver_then_rerun_gives_every_prompt_once(tiny_model_dirs, tmp_path, ray_env):
    prompts = _prompts(24)
    path = write_jsonl([{"content": p} for p in prompts], tmp_path / "prompts.jsonl")
    out = tmp_path / "q0"
    command = _command(tiny_model_dirs["llama"], path, out, *_ray())
    killed_tag, rerun_tag = uuid.uuid4().hex, uuid.uuid4().hex
    # The driver holds itself still once its second shard (of six) is on disk and says so on a
    # pipe; the kill lands there, mid-run by construction.
    held_read, held_write = os.pipe()
    killed = subprocess.Popen([sys.executable, str(HOLD), "2", str(held_write), *command[1:]], env=ray_env(killed_tag),
                              pass_fds=(held_write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(held_write)
    try:
        ready, _, _ = select.select([held_read], [], [], 240)
        held = os.read(held_read, 4096).decode() if ready else ""
        ray_while_held = _ray_processes(killed_tag)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        os.close(held_read)
        if killed.poll() is None:
            killed.kill()
        _kill(_tagged(killed_tag))  # the killed driver's cluster: whatever did not die with it
    assert held.endswith("shard-000001.jsonl\n"), f"the run did not reach its second shard: {held!r}"
    names = {_program(name) for _, name in ray_while_held}
    assert any("raylet" in n for n in names) and any("gcs_server" in n for n in names), \
        f"the tag must find the run's Ray processes, or 'none left' below proves nothing: {names}"
    before = _digests(out)
    assert len(before) == 2 and len(store.done_prompt_ids(out)) == 8

    try:
        _run(command, ray_env(rerun_tag))
        left = _wait_gone(rerun_tag)
    finally:
        _kill(_tagged(rerun_tag))
    assert not left, f"Ray processes outlived the re-run by {GONE_WITHIN_S} s: {left}"

    files = sorted(p.name for p in (out / "shards").iterdir())
    assert files == [p.name for p in store.shard_paths(out)], f"a temporary or torn file is left: {files}"
    rows = list(store.iter_rows(out))  # every line of every shard parses
    ids = [row["prompt_id"] for row in rows]
    assert len(ids) == len(set(ids)) == 24 and set(ids) == {prompt_id(p) for p in prompts}
    after = _digests(out)
    assert {name: after[name] for name in before} == before, "a finished shard was rewritten"
    manifest = store.read_manifest(out)
    assert manifest["status"] == "complete" and len(manifest["resumed_at"]) == 1
    assert manifest["last_run"]["prompts_done_before"] == 8 and manifest["ray"]["workers"] == 2


def test_a_worker_that_cannot_start_fails_the_run_with_its_cause(tmp_path, ray_env, monkeypatch):
    """A broken worker (here: no model at the path) ends the run with its own error, well
    before the shard timeout, and the cluster is stopped."""
    from soda_plugin.cli.snapshot import make_parser
    from soda_plugin.snapshot.cli import run_from_args
    from soda_plugin.snapshot.ray_launcher import RaySnapshotError

    path = write_jsonl([{"content": p} for p in _prompts(4)], tmp_path / "prompts.jsonl")
    tag = uuid.uuid4().hex
    for key, value in ray_env(tag).items():
        monkeypatch.setenv(key, value)
    missing = tmp_path / "no-model-here"
    args = make_parser().parse_args(_command(missing, path, tmp_path / "out", "--ray-address", "local",
                                             "--data-parallel-size", "1", "--shard-timeout-s", "120")[2:])
    try:
        with pytest.raises(RaySnapshotError) as caught:
            run_from_args(args)
        assert not ray.is_initialized()
        left = _wait_gone(tag)
    finally:
        _kill(_tagged(tag))
    message = str(caught.value)
    assert "no snapshot shard came back" not in message and "no-model-here" in message, message
    assert not left, f"Ray processes outlived the failed run by {GONE_WITHIN_S} s: {left}"
    assert store.read_manifest(tmp_path / "out")["status"] == "running" and not store.shard_paths(tmp_path / "out")
