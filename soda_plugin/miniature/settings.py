"""What the miniature reproduction runs: sizes, steps and seeds of its quick and full modes.

Every value here is a choice the paper does not make for a 135M model on two CPU cores;
the reason is next to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MiniatureSettings:
    out_dir: Path
    quick: bool
    seeds: tuple[int, ...]  # training seeds; tables report mean and a 95 % interval over them
    n_train: int  # training prompts (teacher answers, q0 snapshot, pairs)
    n_val: int  # validation prompts: the only ones any tuning may look at
    n_test: int  # held-out prompts every model is evaluated on
    warmup_steps: int  # SODA warmup (SFT) optimizer steps
    dpo_steps: int  # SODA DPO optimizer steps
    ablation: bool  # also train DPO with cross-student and degraded negatives
    ablation_seeds: tuple[int, ...]  # seeds of the ablation's two extra DPO runs (default: every seed)
    analysis_prompts: int  # held-out prompts for the representation analysis
    data_seed: int = 0  # prompts and splits; fixed so every seed trains on the same data
    eval_max_tokens: int = 64  # the teacher's longest answer is ~30 tokens; SmolLM2 rambles
    hot_teacher_temperature: float = 1.5  # above the local teacher's careless threshold (1.2)
    sibling_noise: float = 0.02  # std of the seeded weight noise that makes the "cross-student" sibling
    degrade_keep_fraction: float = 0.6  # degraded negatives keep at most 60 % of their words
    model_dir: Path = field(default=Path("outputs/models/SmolLM2-135M-Instruct"))
    # Training knobs the validation sweep (tools/tune_miniature.py) varies; None = the recipe's value.
    beta: float | None = None  # DPO beta (recipes/smollm2_cpu_soda.yml: trl.beta)
    dpo_learning_rate: float | None = None  # DPO stage learning rate
    warmup_learning_rate: float | None = None  # warmup lr, and SeqKD's too: SeqKD is the warmup run longer
    negatives: int = 1  # q0 answers per training prompt; more than one are sampled, not greedy
    negative_temperature: float = 1.0  # sampling temperature when negatives > 1 (the GPU recipes' setting)

    @property
    def sft_steps(self) -> int:
        """SeqKD's budget: the same total optimizer steps as SODA's two stages."""
        return self.warmup_steps + self.dpo_steps

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def mode_settings(quick: bool, out_dir: Path, **overrides: Any) -> MiniatureSettings:
    """Defaults of the quick mode (CI, ~5 min) or the full mode (~25 min on 2 cores)."""
    if quick:
        base = MiniatureSettings(out_dir=out_dir, quick=True, seeds=(0,), n_train=16, n_val=8, n_test=10,
                                 warmup_steps=2, dpo_steps=2, ablation=True, ablation_seeds=(), analysis_prompts=10)
    else:
        # Sized for <= 25 min on 2 cores, where one SFT step of SmolLM2 (4 rows) takes ~4 s, a
        # DPO step ~9 s and each `axolotl train` process ~25 s of start-up: 3 seeds of SODA,
        # SeqKD and the ablation's two extra DPO runs. 40 validation prompts: the sweep
        # (tools/tune_miniature.py) needs finer steps than 16 prompts' 6.25 % of exact match.
        base = MiniatureSettings(out_dir=out_dir, quick=False, seeds=(0, 1, 2), n_train=64, n_val=40, n_test=40,
                                 warmup_steps=12, dpo_steps=6, ablation=True, ablation_seeds=(),
                                 analysis_prompts=40)
    settings = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if not settings.ablation_seeds:
        settings = replace(settings, ablation_seeds=settings.seeds)
    # The stages run as subprocesses from the repository root: every path is made absolute.
    return replace(settings, out_dir=Path(settings.out_dir).resolve(), model_dir=Path(settings.model_dir).resolve())
