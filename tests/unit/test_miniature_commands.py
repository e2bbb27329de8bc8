"""The miniature's concurrent stage runner: processes really overlap, share the cores, and a
failure names its log without leaving the others running."""

import os
import sys
import time

import pytest

from soda_plugin.miniature.pipeline import StageError, run_commands_concurrently


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_commands_run_at_the_same_time_with_a_thread_cap(tmp_path):
    # Each waits for the other's file: run one after the other, neither would finish.
    wait_for = ("import os, pathlib, time\n"
                "pathlib.Path(r'{mine}').touch()\n"
                "deadline = time.time() + 20\n"
                "while not pathlib.Path(r'{theirs}').exists():\n"
                "    assert time.time() < deadline, 'the other process never ran'\n"
                "    time.sleep(0.05)\n"
                "print('threads', os.environ['OMP_NUM_THREADS'])\n")
    a, b = tmp_path / "a", tmp_path / "b"
    run_commands_concurrently([(_python(wait_for.format(mine=a, theirs=b)), tmp_path / "a.log"),
                               (_python(wait_for.format(mine=b, theirs=a)), tmp_path / "b.log")], threads_each=1)
    for log in ("a.log", "b.log"):
        assert "threads 1" in (tmp_path / log).read_text()


def test_a_failure_names_its_log_and_stops_the_rest(tmp_path):
    marker = tmp_path / "still-running"
    slow = _python(f"import pathlib, time\ntime.sleep(30)\npathlib.Path(r'{marker}').touch()")
    start = time.perf_counter()
    with pytest.raises(StageError, match="fails.log") as failure:
        run_commands_concurrently([(_python("import sys\nprint('broken input')\nsys.exit(3)"), tmp_path / "fails.log"),
                                   (slow, tmp_path / "slow.log")])
    assert "exited with code 3" in str(failure.value) and "broken input" in str(failure.value)
    assert time.perf_counter() - start < 20 and not marker.exists()


@pytest.mark.timeout(60)  # the old plain wait() would sit out the 600 s sleep
def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(tmp_path, monkeypatch):
    import psutil

    from soda_plugin.miniature import pipeline

    monkeypatch.setattr(pipeline, "_TERMINATE_GRACE_S", 1.0)
    ready = tmp_path / "ignoring"
    stubborn = _python("import pathlib, signal, time, os\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                       f"pathlib.Path(r'{ready}').write_text(str(os.getpid()))\ntime.sleep(600)")
    wait_then_fail = _python(f"import pathlib, sys, time\nwhile not pathlib.Path(r'{ready}').exists():\n"
                             "    time.sleep(0.05)\nsys.exit(3)")
    with pytest.raises(StageError, match="exited with code 3"):
        run_commands_concurrently([(wait_then_fail, tmp_path / "fails.log"), (stubborn, tmp_path / "stubborn.log")])
    assert not psutil.pid_exists(int(ready.read_text()))  # killed, not left running or waited on for 600 s


def _touch_after(path, seconds: float) -> list[str]:
    return _python(f"import pathlib, time\ntime.sleep({seconds})\npathlib.Path(r'{path}').touch()")


def test_a_stage_beside_runs_at_the_same_time_and_its_result_comes_back(tmp_path):
    from soda_plugin.miniature.pipeline import StageClock, run_command, stage_beside

    clock, mine, theirs = StageClock(), tmp_path / "mine", tmp_path / "theirs"
    wait_for_mine = _python(f"import pathlib, time\ndeadline = time.time() + 20\n"
                            f"while not pathlib.Path(r'{mine}').exists():\n"
                            f"    assert time.time() < deadline, 'the block never ran beside it'\n"
                            f"    time.sleep(0.05)\n"
                            f"pathlib.Path(r'{theirs}').touch()")
    threads = _python("import os\nprint('threads', os.environ.get('OMP_NUM_THREADS', 'unset'))")
    with stage_beside("side", clock, lambda: run_command(wait_for_mine, tmp_path / "side.log") or "side done") as side:
        run_command(threads, tmp_path / "beside.log")  # started while the side runs: half the cores
        run_command(_touch_after(mine, 0), tmp_path / "block.log")
        assert side.join(20)
        run_command(threads, tmp_path / "after.log")  # the side has finished: no cap
    assert side.result() == "side done" and theirs.exists() and "side (beside the next stages)" in clock.seconds
    assert f"threads {max(1, (os.cpu_count() or 1) // 2)}" in (tmp_path / "beside.log").read_text()
    assert f"threads {os.environ.get('OMP_NUM_THREADS', 'unset')}" in (tmp_path / "after.log").read_text()


def test_a_failing_stage_beside_stops_the_block_and_is_the_error_raised(tmp_path):
    from soda_plugin.miniature.pipeline import StageClock, run_command, stage_beside

    marker = tmp_path / "block-finished"
    start = time.perf_counter()
    with pytest.raises(StageError, match="side.log") as failure:
        with stage_beside("side", StageClock(), lambda: run_command(_python("import sys\nsys.exit(4)"),
                                                                    tmp_path / "side.log")):
            run_command(_touch_after(marker, 30), tmp_path / "block.log")
    assert "exited with code 4" in str(failure.value)
    assert time.perf_counter() - start < 20 and not marker.exists()


def test_a_failing_block_stops_the_stage_beside_it(tmp_path):
    from soda_plugin.miniature.pipeline import StageClock, run_command, stage_beside

    marker = tmp_path / "side-finished"
    start = time.perf_counter()
    with pytest.raises(StageError, match="block.log"):
        with stage_beside("side", StageClock(), lambda: run_command(_touch_after(marker, 30), tmp_path / "side.log")):
            time.sleep(0.5)  # the side's command is running
            run_command(_python("import sys\nsys.exit(5)"), tmp_path / "block.log")
    # The block's error waits for the side's thread: had its process not been stopped, that took 30 s.
    assert time.perf_counter() - start < 20 and not marker.exists()


def test_a_stage_beside_that_never_finishes_is_stopped_at_its_bound(tmp_path):
    from soda_plugin.miniature.pipeline import StageClock, run_command, stage_beside

    marker = tmp_path / "side-finished"
    start = time.perf_counter()
    with pytest.raises(StageError, match="did not finish within 1 s"):
        with stage_beside("side", StageClock(), lambda: run_command(_touch_after(marker, 30), tmp_path / "side.log"),
                          timeout_s=1):
            pass
    assert time.perf_counter() - start < 20 and not marker.exists()


def test_not_in_a_thread_the_stage_runs_first_and_none_runs_nothing(tmp_path):
    from soda_plugin.miniature.pipeline import StageClock, stage_beside

    order, clock = [], StageClock()
    with stage_beside("side", clock, lambda: order.append("side") or 7, in_thread=False) as side:
        order.append("block")
    assert order == ["side", "block"] and side.result() == 7 and "side" in clock.seconds
    with stage_beside("nothing", clock, None) as nothing:
        pass
    assert nothing.result() is None and "nothing" not in clock.seconds


def test_answer_passes_split_the_models_by_weight_and_keep_their_order():
    from soda_plugin.miniature.pipeline import balanced_groups

    names = ["base", "qw/s0", "seqkd/s0", "soda/s0", "qw/s1", "seqkd/s1", "soda/s1"]
    groups = balanced_groups(names, 2, weight=lambda n: 3 if n == "base" else 1)
    assert sorted(n for g in groups for n in g) == sorted(names) and len(groups) == 2
    assert sorted(len(g) for g in groups) == [3, 4] and ["base"] in [g[:1] for g in groups]
    assert all(g == sorted(g, key=names.index) for g in groups)
    assert balanced_groups(["base"], 2, weight=lambda n: 1) == [["base"]]


def test_dpo_runs_start_from_their_own_seeds_step_w_save_in_groups(tmp_path, monkeypatch):
    import soda_plugin.miniature.pipeline as pipeline
    from soda_plugin.miniature.runs import RunId
    from soda_plugin.miniature.settings import mode_settings

    settings = mode_settings(False, tmp_path / "run", seeds=(0, 1, 2))
    batches = []
    monkeypatch.setattr(pipeline, "train_concurrently", lambda runs, s: batches.append(dict(runs)) or {
        name: pipeline.Path(cfg["output_dir"]) for name, cfg in runs.items()})
    models, runtimes = {}, {"sft": [], "dpo": []}
    pipeline.train_sft(settings, settings.seeds, tmp_path / "teacher.jsonl", models, runtimes, pipeline.StageClock())
    pairs = {name: tmp_path / name for name in ("q0", "sibling", "degraded")}
    pipeline.train_dpo(settings, pairs, models, runtimes, pipeline.StageClock())
    assert list(batches[0]) == ["sft_s0", "sft_s1", "sft_s2"]
    assert [list(b) for b in batches[1:]] == [["soda_s0", "soda_sibling_s0"], ["soda_degraded_s0", "soda_s1"],
                                              ["soda_s2"]]
    for batch in batches[1:]:
        for name, cfg in batch.items():
            seed = cfg["seed"]
            assert cfg["base_model"] == str(tmp_path / "run" / "runs" / f"seed{seed}" / "sft" / f"checkpoint-{settings.warmup_steps}"), name
            assert models[RunId("qw", seed)] == pipeline.Path(cfg["base_model"])
    assert models[RunId("seqkd", 1)] == tmp_path / "run" / "runs" / "seed1" / "sft"
    assert models[RunId("soda-sibling", 0)] == tmp_path / "run" / "runs" / "seed0" / "soda_sibling"
