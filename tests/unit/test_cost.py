"""`cost.json` (CostRecorder, CostCallback), its wiring into the stages, and `soda cost`."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from soda_plugin.cli.main import main
from soda_plugin.cost import recorder
from soda_plugin.cost.recorder import COST_FILENAME, COST_SCHEMA, CostRecorder, DeviceMemorySampler, gather_per_rank

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3
FIELDS = {"schema", "stage", "finished", "started_at", "ended_at", "wall_seconds", "optimizer_steps", "world_size",
          "devices", "gpus", "gpu_hours", "per_rank"}
RANK_FIELDS = {"rank", "peak_allocated_bytes", "peak_device_used_bytes", "peak_rss_bytes"}


def _read(folder: Path) -> dict:
    return json.loads((folder / COST_FILENAME).read_text())


def _rss_now() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- CostRecorder ---------------------------------------------------------------------------------------------

def test_recorder_writes_every_field_and_sees_a_buffer_in_peak_rss(tmp_path):
    size = 200 * 1024**2
    before = _rss_now()
    with CostRecorder(tmp_path / "run", stage="dpo") as rec:
        buffer = bytearray(size)
        buffer[::4096] = b"\x01" * len(range(0, size, 4096))  # every page resident
        rec.optimizer_steps = 7
    del buffer
    cost = _read(tmp_path / "run")
    assert set(cost) == FIELDS
    assert cost["schema"] == COST_SCHEMA and cost["stage"] == "dpo" and cost["finished"] is True
    assert cost["optimizer_steps"] == 7 and cost["world_size"] == 1 and cost["wall_seconds"] >= 0
    assert cost["started_at"] <= cost["ended_at"] and "T" in cost["started_at"]
    [rank] = cost["per_rank"]
    assert set(rank) == RANK_FIELDS and rank["rank"] == 0
    assert rank["peak_rss_bytes"] >= size and rank["peak_rss_bytes"] >= before + 0.9 * size
    import torch

    if not torch.cuda.is_available():
        assert cost["devices"] == "cpu" and cost["gpus"] == 0 and cost["gpu_hours"] == 0
        assert rank["peak_allocated_bytes"] is None and rank["peak_device_used_bytes"] is None


def test_a_failing_block_is_recorded_unfinished_and_its_exception_propagates(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with CostRecorder(tmp_path, stage="snapshot"):
            raise RuntimeError("boom")
    cost = _read(tmp_path)
    assert cost["finished"] is False and cost["stage"] == "snapshot" and cost["optimizer_steps"] is None


def test_the_recorders_own_failure_is_logged_and_never_masks_the_stage(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="the stage's own error"):
        with CostRecorder(blocker, stage="sft"):  # cost.json cannot be written under a file
            raise ValueError("the stage's own error")
    assert "could not record the sft stage's cost" in capsys.readouterr().err
    with CostRecorder(blocker, stage="sft"):
        pass
    assert "could not record the sft stage's cost" in capsys.readouterr().err


class FakeCuda:
    """`torch.cuda` on two GPUs of 80 GiB: this process holds memory on GPU 0 only."""

    def __init__(self, nvml: bool = True):
        self.used = {0: 10 * GIB, 1: 30 * GIB}
        self.resets: list[int] = []
        self.nvml = nvml

    def is_available(self):
        return True

    def is_initialized(self):
        return True

    def device_count(self):
        return 2

    def memory_reserved(self, device):
        return GIB if device == 0 else 0

    def mem_get_info(self, device):
        assert device == 0, "mem_get_info on a GPU without a context would create one"
        return 80 * GIB - self.used[0], 80 * GIB

    def device_memory_used(self, device):
        if not self.nvml:
            raise ModuleNotFoundError("nvidia-ml-py does not seem to be installed or it can't be imported.")
        return self.used[device]

    def reset_peak_memory_stats(self, device):
        self.resets.append(device)

    def max_memory_allocated(self, device):
        return {0: 6 * GIB, 1: 0}[device]

    def current_device(self):
        return 0

    def get_device_name(self, device):
        return "Fake H100"


def _fake_torch(cuda: FakeCuda) -> SimpleNamespace:
    return SimpleNamespace(cuda=cuda, distributed=SimpleNamespace(is_available=lambda: False))


def test_sampler_keeps_each_gpus_peak_without_touching_gpus_it_holds_nothing_on():
    cuda = FakeCuda()
    sampler = DeviceMemorySampler(cuda, interval_s=0.01)
    sampler.sample()
    cuda.used = {0: 20 * GIB, 1: 5 * GIB}
    sampler.sample()
    assert sampler.peaks == {0: 20 * GIB, 1: 30 * GIB}
    without_nvml = DeviceMemorySampler(FakeCuda(nvml=False))
    without_nvml.sample()
    assert without_nvml.peaks == {0: 10 * GIB}  # GPU 1 unreadable without a new context: left out


def test_recorder_on_a_gpu_counts_gpus_allocator_and_device_peaks(tmp_path, monkeypatch):
    cuda = FakeCuda()
    monkeypatch.setattr(recorder, "_torch", lambda: _fake_torch(cuda))
    with CostRecorder(tmp_path, stage="reference") as rec:
        rec._sampler._stop.wait(0.05)
    cost = _read(tmp_path)
    assert cuda.resets == [0, 1]
    assert cost["devices"] == "Fake H100" and cost["gpus"] == 1
    assert cost["gpu_hours"] == pytest.approx(cost["wall_seconds"] / 3600, rel=1e-3)
    [rank] = cost["per_rank"]
    assert rank["peak_allocated_bytes"] == 6 * GIB and rank["peak_device_used_bytes"] == 30 * GIB
    with CostRecorder(tmp_path, stage="snapshot", gpus=4):
        pass
    assert _read(tmp_path)["gpus"] == 4  # engines in other processes, counted by the caller


class FakeDist:
    def __init__(self, rank: int, world: int = 2, fail: bool = False):
        self.rank, self.world, self.fail = rank, world, fail

    def get_rank(self):
        return self.rank

    def get_world_size(self):
        return self.world

    def all_gather_object(self, out, obj):
        if self.fail:
            raise RuntimeError("NCCL timeout")
        for r in range(self.world):
            out[r] = {**obj, "rank": r, "peak_rss_bytes": obj["peak_rss_bytes"] + r}


def test_several_ranks_gather_and_only_rank_0_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder, "_distributed", lambda torch: FakeDist(rank=1))
    with CostRecorder(tmp_path / "r1", stage="dpo"):
        pass
    assert not (tmp_path / "r1" / COST_FILENAME).exists()
    monkeypatch.setattr(recorder, "_distributed", lambda torch: FakeDist(rank=0))
    with CostRecorder(tmp_path / "r0", stage="dpo"):
        pass
    cost = _read(tmp_path / "r0")
    assert cost["world_size"] == 2 and [r["rank"] for r in cost["per_rank"]] == [0, 1]


def test_a_failed_gather_or_a_failed_rank_falls_back_to_this_ranks_numbers(capsys):
    mine = {"rank": 0, "peak_allocated_bytes": None, "peak_device_used_bytes": None, "peak_rss_bytes": 5}
    assert gather_per_rank(FakeDist(0, fail=True), mine, finished=True) == [mine]
    assert "could not gather the other ranks' cost (RuntimeError: NCCL timeout)" in capsys.readouterr().err
    assert gather_per_rank(FakeDist(0), mine, finished=False) == [mine]  # no collective after a failure
    assert "failed on rank 0" in capsys.readouterr().err
    assert len(gather_per_rank(FakeDist(0), mine, finished=True)) == 2


# --- CostCallback ---------------------------------------------------------------------------------------------

def test_callback_records_the_steps_of_this_run_and_where_a_resume_started(tmp_path):
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

    from soda_plugin.cost.recorder import CostCallback, cost_callback

    args = TrainingArguments(output_dir=str(tmp_path / "fresh"), report_to=[])
    callback = cost_callback("warmup")
    assert isinstance(callback, CostCallback) and isinstance(callback, TrainerCallback)
    callback.on_train_begin(args, TrainerState(global_step=0), TrainerControl())
    callback.on_train_end(args, TrainerState(global_step=12), TrainerControl())
    cost = _read(tmp_path / "fresh")
    assert cost["stage"] == "warmup" and cost["optimizer_steps"] == 12 and "resumed_from_step" not in cost

    args = TrainingArguments(output_dir=str(tmp_path / "resumed"), report_to=[])
    callback = cost_callback("dpo")
    callback.on_train_begin(args, TrainerState(global_step=5), TrainerControl())
    callback.on_train_end(args, TrainerState(global_step=12), TrainerControl())
    cost = _read(tmp_path / "resumed")
    assert cost["optimizer_steps"] == 7 and cost["resumed_from_step"] == 5 and cost["finished"] is True


def test_callback_in_a_real_trainer_run(tmp_path):
    import torch
    from transformers import Trainer, TrainingArguments

    from soda_plugin.cost.recorder import cost_callback

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, x, labels):
            return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), labels)}

    rows = [{"x": torch.randn(4), "labels": torch.tensor(1.0)} for _ in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, report_to=[],
                             save_strategy="no", use_cpu=True, logging_strategy="no", disable_tqdm=True)
    Trainer(model=Tiny(), args=args, train_dataset=rows, callbacks=[cost_callback("sft")]).train()
    cost = _read(tmp_path)
    assert cost["stage"] == "sft" and cost["optimizer_steps"] == 3 and cost["finished"] is True


# --- wiring ---------------------------------------------------------------------------------------------------

def test_the_plugin_names_the_stage_and_always_adds_the_cost_callback():
    from soda_plugin.cost.recorder import CostCallback
    from soda_plugin.train.plugin import SODAPlugin, cost_stage
    from soda_plugin.train.reference_cache import StepOneRewardCheck

    assert cost_stage({"rl": "dpo", "soda": {}}) == "dpo"
    assert cost_stage({"rl": "kto"}) == "kto"
    assert cost_stage({"soda": {"on_bad_row": "error"}, "output_dir": "outputs/run/warmup"}) == "warmup"
    assert cost_stage({"output_dir": "outputs/seqkd"}) == "sft"
    plugin = SODAPlugin()
    [sft] = plugin.add_callbacks_post_trainer({"output_dir": "o"}, trainer=None)
    assert isinstance(sft, CostCallback) and sft.stage == "sft"
    dpo = plugin.add_callbacks_post_trainer({"rl": "dpo", "soda": {}}, trainer=None)
    assert [type(c) for c in dpo] == [CostCallback, StepOneRewardCheck] and dpo[0].stage == "dpo"


def test_the_snapshot_records_its_cost_in_its_folder(tmp_path):
    from soda_plugin.snapshot.engine import Completion, EngineInfo, FinishReason, SamplingSettings, SnapshotEngine
    from soda_plugin.snapshot.launchers import DataParallel, InProcess
    from soda_plugin.snapshot.runner import run_snapshot

    class Echo(SnapshotEngine):
        backend = "echo"

        def info(self):
            return EngineInfo("echo", "echo-model", "1.0")

        def generate(self, prompts, settings, prompt_ids=None):
            return [[Completion(m[-1]["content"], FinishReason.STOP, 3, 2)] for m in prompts]

    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    run_snapshot(Echo(), prompts, tmp_path, SamplingSettings(), source="q0", progress=False)
    assert _read(tmp_path)["stage"] == "snapshot" and _read(tmp_path)["finished"] is True

    def in_process(info):
        class Described(Echo):
            def info(self):
                return info
        return InProcess(Described())

    def ranks(n, info):
        return DataParallel(n, info.backend, info.model, info.extra, info)

    assert in_process(EngineInfo("openai", "m", "1")).gpus() == 0
    assert ranks(2, EngineInfo("openai", "m", "1")).gpus() == 0
    assert in_process(EngineInfo("vllm", "m", "1", {"tensor_parallel_size": 2})).gpus() == 2
    assert ranks(3, EngineInfo("vllm", "m", "1", {"tensor_parallel_size": 2})).gpus() == 6
    assert ranks(4, EngineInfo("transformers", "m", "1", {})).gpus() == 4
    assert in_process(EngineInfo("transformers", "m", "1", {})).gpus() is None


def test_the_cost_layer_imports_no_stage_no_cli_and_nothing_heavy():
    allowed = {"soda_plugin.format.fileio", "soda_plugin.log", "soda_plugin.cost.recorder", "soda_plugin.cost"}
    for path in (ROOT / "soda_plugin" / "cost").glob("*.py"):
        package = "soda_plugin.cost"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package.split(".")[: 3 - node.level] + ([node.module] if node.module else []))
                assert base in allowed, (path.name, base)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("soda_plugin"):
                assert node.module in allowed, (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("soda_plugin") and a.name not in allowed for a in node.names)
    probe = ("import sys, soda_plugin.cost.recorder, soda_plugin.cost.table\n"
             "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


# --- soda cost ------------------------------------------------------------------------------------------------

def _write_cost(folder: Path, stage: str, wall: float, steps: int | None, gpus: int, allocated: list,
                rss: list, started_at: str, finished: bool = True, device_used: list | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    per_rank = [{"rank": r, "peak_allocated_bytes": a, "peak_device_used_bytes": (device_used or [None] * len(rss))[r],
                 "peak_rss_bytes": m} for r, (a, m) in enumerate(zip(allocated, rss))]
    (folder / COST_FILENAME).write_text(json.dumps({
        "schema": COST_SCHEMA, "stage": stage, "finished": finished, "started_at": started_at, "ended_at": started_at,
        "wall_seconds": wall, "optimizer_steps": steps, "world_size": len(rss), "devices": "H100", "gpus": gpus,
        "gpu_hours": wall * gpus / 3600, "per_rank": per_rank}))


@pytest.fixture
def runs(tmp_path):
    a, b, c = tmp_path / "seqkd", tmp_path / "soda", tmp_path / "cpu"
    _write_cost(a, "sft", 100, 50, 2, [2 * GIB, 2 * GIB], [10 * GIB, 9 * GIB], "2025-01-01T10:00:00",
                device_used=[70 * GIB, 60 * GIB])
    _write_cost(b / "warmup", "warmup", 120, 30, 2, [3 * GIB, 3 * GIB], [8 * GIB, 8 * GIB], "2025-01-02T10:00:00")
    _write_cost(b, "dpo", 180, 40, 2, [3 * GIB, 4 * GIB], [12 * GIB, 11 * GIB], "2025-01-02T11:00:00")
    _write_cost(c, "sft", 50, None, 0, [None], [5 * GIB], "2025-01-03T10:00:00", finished=False)
    return a, b, c


def _rows(out: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [cell.strip() for cell in cells] for cells in rows[1:]}


def test_soda_cost_sums_stages_and_divides_by_the_first_run(runs, capsys):
    a, b, c = runs
    assert main(["cost", str(a), str(b), str(c)]) == 0
    out = capsys.readouterr().out
    header = [cell.strip() for cell in out.splitlines()[0].strip("|").split("|")]
    assert header == ["run", "stages", "wall time (s)", "optimizer steps", "GPU-hours", "peak GPU allocated (GiB)",
                      "peak device used (GiB)", "peak RSS (GiB)", "wall time ×", "peak memory ×"]
    rows = _rows(out)
    assert rows[str(a)][1:] == ["sft", "100.0", "50", f"{200 / 3600:.3f}", "2.00", "70.00", "10.00", "1.00×",
                                "1.00× (GPU)"]
    # B: warmup 120 s + DPO 180 s = 300 s (3x A's 100 s); peak allocated 4 GiB over stages and ranks (2x A's 2 GiB).
    assert rows[str(b)][1:] == ["warmup + dpo", "300.0", "70", f"{600 / 3600:.3f}", "4.00", "–", "12.00", "3.00×",
                                "2.00× (GPU)"]
    # C ran on the CPU: no GPU peak, so its memory ratio is by RSS (5 GiB / 10 GiB).
    assert rows[str(c)][1:] == ["sft (unfinished)", "50.0", "–", "0.000", "–", "–", "5.00", "0.50×",
                                "0.50× (RSS)"]
    assert f"Ratios are to the first run ({a})" in out and "(unfinished): the stage raised" in out


def test_soda_cost_refuses_a_folder_without_cost_json(runs, tmp_path, capsys):
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(["cost", str(runs[0]), str(empty)])
    assert exit_.value.code and str(exit_.value.code) == (
        f"soda cost: {empty}: no {COST_FILENAME} in it or its sub-folders (a stage writes one into its output "
        "folder when it ends; was this run trained with this soda?)")
    with pytest.raises(SystemExit, match="not a folder"):
        main(["cost", str(tmp_path / "missing")])
    (empty / COST_FILENAME).write_text("{}")
    with pytest.raises(SystemExit, match="not a cost file of schema 1"):
        main(["cost", str(empty)])


def test_tools_cost_runs_as_soda_cost(runs):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "cost.py"), str(runs[1])], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, env=env)
    assert proc.returncode == 0 and "| warmup + dpo | 300.0 |" in proc.stdout, proc.stderr
