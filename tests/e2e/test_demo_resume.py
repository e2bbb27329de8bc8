"""A killed `soda demo` continues where it stopped (README): SmolLM2 in quick mode, up to its
pairs (`--stop-after pairs`), SIGKILLed twice from inside the run, then run to the end.

Kill 1 lands in the q0 snapshot right after its shard is on disk (the stage still running,
its manifest not complete); kill 2 in the pairs stage once the judge filter has every verdict
back and cached, before any pair is written. Each kill takes the whole process group: the
demo, its stage command and its local teacher, as a closed terminal or the OOM killer would.
The holds come from `demo_hooks/sitecustomize.py`, so each kill lands at its point by
construction. What the teacher was asked is read from its server-side request log.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from demo_file_states import file_state, shard_states
from soda_plugin.format.fileio import iter_jsonl
from soda_plugin.format.prompt_id import prompt_id
from soda_plugin.pairs.builder import iter_pairs
from soda_plugin.pairs.writer import DEFAULT_FIELD_STUDENT, DEFAULT_FIELD_TEACHER
from soda_plugin.snapshot import store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HOOKS = Path(__file__).resolve().parent / "demo_hooks"
# Bounds, not expectations: past them the test fails naming the run's log.
HOLD_TIMEOUT_S = 900  # to reach the hold
RUN_TIMEOUT_S = 900  # for the last run, to its end
N_TRAIN = 8  # training prompts: the quick budget's 24 cost three times the snapshot and prove nothing more


def _demo(out: Path, model_dir: Path) -> list[str]:
    return [sys.executable, "-m", "soda_plugin.cli", "demo", "--quick", "--stop-after", "pairs", "--out", str(out),
            "--model-dir", str(model_dir), "--train-prompts", str(N_TRAIN)]


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(HOOKS), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", **extra)


def _run_until_held(command: list[str], cwd: Path, stage: str, fifo: Path, log: Path) -> str:
    """Run `command` with the hook holding `stage`; once it says it holds, SIGKILL the run's
    whole process group. Returns the hook's line."""
    reader = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # read-write: the FIFO never reports EOF while we wait
    with open(log, "w") as output:
        run = subprocess.Popen(command, cwd=cwd, env=_env(SODA_DEMO_HOLD=stage, SODA_DEMO_HOLD_FIFO=str(fifo)),
                               stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + HOLD_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            if run.poll() is not None:
                pytest.fail(f"the demo ended (code {run.returncode}) before holding in {stage}; see {log}")
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not reach its hold in {stage} within {HOLD_TIMEOUT_S} s; see {log}")
            ready, _, _ = select.select([reader], [], [], 1.0)  # wakes on the hook's line, or to check the run
            if ready:
                line += os.read(reader, 4096)
    finally:
        os.close(reader)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait(60)
    return line.decode().strip()


def _run_to_end(command: list[str], cwd: Path, log: Path) -> int:
    """Run `command` to its end (its exit code); past `RUN_TIMEOUT_S` its whole process group is killed."""
    with open(log, "w") as output:
        run = subprocess.Popen(command, cwd=cwd, env=_env(), stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        return run.wait(RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the demo did not finish within {RUN_TIMEOUT_S} s; see {log}")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(60)


def _requests(out: Path) -> list[dict]:
    path = out / "logs" / "teacher_server.requests.jsonl"
    return list(iter_jsonl(path)) if path.is_file() else []


def test_a_killed_demo_continues_where_it_stopped(smollm2_dir, tmp_path):
    out, fifo = tmp_path / "quick", tmp_path / "hold.fifo"
    work = tmp_path / "work"
    work.mkdir()
    os.mkfifo(fifo)
    command = _demo(out, smollm2_dir)
    n_train = N_TRAIN

    # Kill 1: in the snapshot, its only shard written, the stage not finished.
    held = _run_until_held(command, work, "snapshot", fifo, tmp_path / "run1.log")
    q0 = out / "snapshots" / "q0"
    assert held.startswith("snapshot ") and store.read_manifest(q0)["status"] == "running", held
    shards = shard_states(q0)
    assert len(shards) == 1 and len(list(store.iter_rows(q0))) == n_train
    teacher_file = out / "data" / "teacher.jsonl"
    teacher_before = file_state(teacher_file)
    asked_before_kill_1 = _requests(out)
    assert Counter(r["kind"] for r in asked_before_kill_1) == {"teacher": n_train}  # the teacher stage had finished

    # Kill 2: in the pairs stage, every verdict received, no pair written.
    held = _run_until_held(command, work, "pairs", fifo, tmp_path / "run2.log")
    assert held.startswith("pairs "), held
    asked_before_kill_2 = _requests(out)
    assert [r["kind"] for r in asked_before_kill_2[len(asked_before_kill_1):]].count("teacher") == 0
    verdicts_asked = [r for r in asked_before_kill_2 if r["kind"] == "judge"]
    assert verdicts_asked and not list(iter_pairs(out / "pairs" / "q0"))

    # The same command again, to its end.
    code = _run_to_end(command, work, tmp_path / "run3.log")
    assert code == 0, (tmp_path / "run3.log").read_text()[-4000:]
    assert not list(work.iterdir())  # every output under --out

    # The teacher was asked nothing twice, and nothing at all after the last kill.
    asked = _requests(out)
    assert asked == asked_before_kill_2
    assert max(Counter(r["sha256"] for r in asked).values()) == 1
    # Every training prompt answered once, and the answers file is the one the first run wrote.
    train_ids = [prompt_id(row["content"]) for row in iter_jsonl(out / "data" / "train.jsonl")]
    teacher_rows = {row["prompt_id"]: row for row in iter_jsonl(teacher_file)}
    assert sorted(teacher_rows) == sorted(train_ids) and len(train_ids) == n_train
    assert file_state(teacher_file) == teacher_before  # not rewritten either
    # The snapshot's shard was neither regenerated nor rewritten; the stage is now complete.
    assert shard_states(q0) == shards
    assert store.read_manifest(q0)["status"] == "complete"
    snapshot_rows = {row["prompt_id"]: row for row in store.iter_rows(q0)}
    assert sorted(snapshot_rows) == sorted(train_ids)
    # The pairs are what the kept answers make: each verdict paid once (every cached verdict was
    # asked once, none after the kill), each pair from this teacher answer and this q0 answer.
    cached = list(iter_jsonl(out / "pairs" / "q0" / "judge_cache" / "verdicts.jsonl"))
    assert len(cached) == len({row["key"] for row in cached}) == len(verdicts_asked)
    pairs = list(iter_pairs(out / "pairs" / "q0"))
    assert pairs and len({pair["prompt_id"] for pair in pairs}) == len(pairs)
    for pair in pairs:
        assert pair[DEFAULT_FIELD_TEACHER] == teacher_rows[pair["prompt_id"]]["teacher_response"]
        assert pair[DEFAULT_FIELD_STUDENT] == snapshot_rows[pair["prompt_id"]]["response"]
    report = json.loads((out / "pairs" / "q0" / "build_report.json").read_text())
    assert report["counts"]["kept"] == len(pairs)
    assert sum(report["counts"]["snapshot_rows"].values()) == n_train
