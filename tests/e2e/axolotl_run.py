"""Run the real `axolotl train` CLI in a subprocess and read its training logs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
_LOG_DICT = re.compile(r"\{'loss': [^{}]*\}")


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float = 0.0

    def step_logs(self) -> list[dict[str, float]]:
        """The per-step log dicts the Trainer prints, in order, values as floats."""
        logs = []
        for match in _LOG_DICT.finditer(self.output):
            raw = ast.literal_eval(match.group(0))
            logs.append({k: float(v) for k, v in raw.items() if _is_number(v)})
        return logs


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def base_config(model_dir: Path, data: Path, output_dir: Path, **extra) -> dict:
    cfg = {
        "base_model": str(model_dir),
        "plugins": ["soda_plugin.SODAPlugin"],
        "soda": {},
        "datasets": [{"path": str(data), "ds_type": "json", "type": "soda"}],
        "sequence_len": 256,
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 3,
        "learning_rate": 1.0e-4,
        "optimizer": "adamw_torch",
        "lr_scheduler": "constant",
        "output_dir": str(output_dir),
        "bf16": False,
        "fp16": False,
        "tf32": False,
        "dataset_num_proc": 1,
        "val_set_size": 0,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 7,
    }
    cfg.update(extra)
    return cfg


def dpo_chain_config(model_dir: Path, data: Path, output_dir: Path, **extra) -> dict:
    cfg = base_config(
        model_dir, data, output_dir,
        rl="dpo", trl={"beta": 0.1}, precompute_ref_log_probs=True, learning_rate=1.0e-5,
        soda={"warmup": {"learning_rate": 1.0e-3, "max_steps": 3}},
    )
    cfg.update(extra)
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def axolotl_train(
    config: Path, *, launcher: list[str] | None = None, timeout: int = 900, env: dict[str, str] | None = None
) -> Run:
    """Run `axolotl train CONFIG` (or `LAUNCHER... CONFIG`); `tests/e2e` is importable in it
    (for `fault_plugin`)."""
    python_path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=python_path, **(env or {}))
    command = launcher or [str(BIN / "axolotl"), "train", str(config), "--launcher", "python"]
    if launcher:
        command = launcher + [str(config)]
    start = time.monotonic()
    proc = subprocess.run(
        command, cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout,
    )
    (config.parent / f"{config.stem}.log").write_text(proc.stdout)
    return Run(proc.returncode, proc.stdout, time.monotonic() - start)


def two_process_launcher(port: int) -> list[str]:
    """`accelerate launch` of two CPU processes; `port` is the rendezvous port (never the
    fixed default 29500, which any other distributed job on the host may hold)."""
    return [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
            "-m", "axolotl.cli.train"]
