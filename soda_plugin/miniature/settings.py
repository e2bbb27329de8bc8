"""What the miniature reproduction runs: sizes, steps and seeds of its quick, full and long budgets.

Every value here is a choice the paper does not make for a 135M model on two CPU cores;
the reason is next to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..smollm2 import DEFAULT_DIR as SMOLLM2_DIR

BUDGETS = ("quick", "full", "long")
# The stages a run can stop after (`soda demo --stop-after`), in order; each one's outputs are complete.
STOP_AFTER = ("teacher", "snapshot", "pairs")


@dataclass(frozen=True)
class MiniatureSettings:
    out_dir: Path
    budget: str  # quick (CI), full (README's main job), long (more seeds and steps)
    seeds: tuple[int, ...]  # training seeds; SODA - SeqKD is paired over them and over prompts
    n_train: int  # training prompts (teacher answers, q0 snapshot, pairs)
    n_val: int  # validation prompts: the only ones any tuning may look at
    n_test: int  # held-out prompts every model is evaluated on
    warmup_steps: int  # W: SODA's warmup = the first W steps of the seed's one SFT run (saved at step W)
    dpo_steps: int  # D: SODA's DPO steps from the step-W save; SeqKD is the same SFT run carried on to W + D
    ablation: bool  # also train DPO with cross-student and careless-teacher negatives
    ablation_seeds: tuple[int, ...]  # seeds of the ablation's two extra DPO runs
    analysis_prompts: int  # held-out prompts for the representation analysis
    mechanism_prompts: int  # held-out prompts whose q0 and teacher answers every model scores (log-probs)
    data_seed: int = 0  # prompts and splits; fixed so every seed trains on the same data
    # The teacher's longest answer is ~8 tokens; 40 lets q0 ramble far enough that its
    # truncation rate is measurable (5x the teacher): Base, which rambles, decodes 40 tokens a prompt.
    eval_max_tokens: int = 40
    hot_teacher_temperature: float = 1.5  # above the local teacher's careless threshold (1.2)
    sibling_noise: float = 0.02  # std of the seeded weight noise that makes the perturbed sibling
    model_dir: Path = field(default=Path(SMOLLM2_DIR))  # relative: to the caller's working directory
    # Training knobs the validation sweep (soda_plugin.miniature.tune) varies; None = the recipe's value.
    beta: float | None = None  # DPO beta (recipes/smollm2_cpu_soda.yml: trl.beta)
    dpo_learning_rate: float | None = None  # DPO stage learning rate
    # The one SFT run per seed (SeqKD; its first W steps are SODA's warmup): rate and schedule
    # (recipes/smollm2_cpu_seqkd.yml: learning_rate, lr_scheduler).
    sft_learning_rate: float | None = None
    sft_scheduler: str | None = None
    # Rows per optimizer step; None = the recipes' (8 SFT rows, 4 DPO pairs). Quick mode checks
    # the pipeline, not its figures: its steps only have to run.
    sft_rows_per_step: int | None = None
    dpo_pairs_per_step: int | None = None
    # GAD, the paper's other baseline: per seed, its warmup of W steps (the policy's SFT at the SFT
    # run's rate and schedule, while its discriminator learns on live rollouts) and its GAD stage
    # of D steps, as many prompts per step as SODA's SFT rows and DPO pairs
    # (recipes/smollm2_cpu_gad.yml). On these seeds; None = every seed.
    gad_seeds: tuple[int, ...] | None = None
    gad_learning_rate: float | None = None  # the GAD stage's policy rate (recipe: learning_rate)
    discriminator_learning_rate: float | None = None  # D's rate in both GAD stages (recipe: gad.discriminator)
    # Run the stages that do not need each other's output side by side (the ablation's
    # negatives beside SODA's first training, the representation analysis beside the answers).
    # Quick mode: its stages are mostly process start-up, one core each, so two at once take
    # about the time of one. Full mode: training and decoding keep both cores busy, and the
    # cost ratio reads the trainers' own runtimes, which sharing the cores would inflate.
    overlap_stages: bool = False
    # Training runs (and answer passes) at once, each on its share of the cores. On 2 cores an SFT
    # step of 8 rows takes ~6.9 s on one thread beside another run and ~6.5 s alone on two: the
    # second thread buys almost nothing here, a second run doubles the work done.
    concurrent_runs: int = 2
    negatives: int = 1  # q0 answers per training prompt; more than one are sampled, not greedy
    negative_temperature: float = 1.0  # sampling temperature when negatives > 1 (the GPU recipes' setting)

    @property
    def quick(self) -> bool:
        return self.budget == "quick"

    @property
    def gad_run_seeds(self) -> tuple[int, ...]:
        return self.seeds if self.gad_seeds is None else self.gad_seeds

    @property
    def q0_name(self) -> str:
        """Folder name of q0's snapshot and pairs: `q0`, or `q0x<k>` for k sampled answers per prompt."""
        return "q0" if self.negatives == 1 else f"q0x{self.negatives}"

    @property
    def total_steps(self) -> int:
        """SODA's and SeqKD's equal optimizer-step budget: W warmup steps, then D of DPO or of SFT."""
        return self.warmup_steps + self.dpo_steps

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def budget_defaults(budget: str, out_dir: Path) -> MiniatureSettings:
    if budget == "quick":
        # CI: every stage on a few prompts, one seed, two small steps each, stages side by side and the
        # three DPO runs at once (goal 6 min; docs/miniature.md has the measured time).
        return MiniatureSettings(out_dir=out_dir, budget="quick", seeds=(0,), n_train=24, n_val=12, n_test=24,
                                 warmup_steps=2, dpo_steps=2, ablation=True, ablation_seeds=(0,),
                                 analysis_prompts=6, mechanism_prompts=6, sft_rows_per_step=2, dpo_pairs_per_step=1,
                                 overlap_stages=True, concurrent_runs=3)
    if budget == "full":
        # Goal 30 min of stages on 2 cores (docs/miniature.md has the measured stage times): an SFT
        # step of 8 rows takes ~6.5 s, a DPO step of 4 pairs about the same, and greedy
        # answers to 240 prompts 30-60 s per trained model (Base, which rambles, ~90 s). Four
        # seeds: two moved the headline by 17 points between runs. 240 test prompts: one prompt
        # is 0.42 points. W + D = 24 steps x 8 rows = 1.5 epochs of the 128 training prompts; the
        # split W = 12, D = 12 is SODA's pick on validation (71.7 % against 67.9 at W 16 + D 8;
        # docs/miniature.md). The ablation runs on seed 0.
        # GAD on two of the four seeds: its discriminator is the student's size and learns on every
        # rollout (8 per prompt), so a GAD step costs ~10 SFT steps here (~66 s; docs/gad.md), ~26 min
        # a seed. Two seeds train side by side in the time of one; SODA - GAD pairs over those two.
        return MiniatureSettings(out_dir=out_dir, budget="full", seeds=(0, 1, 2, 3), n_train=128, n_val=240,
                                 n_test=240, warmup_steps=12, dpo_steps=12, ablation=True, ablation_seeds=(0,),
                                 analysis_prompts=24, mechanism_prompts=24, gad_seeds=(0, 1))
    if budget == "long":
        # Over two hours: six seeds, 1.5x the data and steps (W + D = 36 steps = 1.5 epochs of 192
        # prompts, split half and half as the full budget's pick), the ablation and GAD on every
        # seed, the mechanism on half the test prompts.
        return MiniatureSettings(out_dir=out_dir, budget="long", seeds=(0, 1, 2, 3, 4, 5), n_train=192, n_val=240,
                                 n_test=240, warmup_steps=18, dpo_steps=18, ablation=True,
                                 ablation_seeds=(0, 1, 2, 3, 4, 5), analysis_prompts=40, mechanism_prompts=120)
    raise ValueError(f"unknown budget `{budget}`; choose one of {', '.join(BUDGETS)}")


def budget_settings(budget: str, out_dir: Path, **overrides: Any) -> MiniatureSettings:
    """Defaults of `budget` with `overrides` (None = keep the default)."""
    settings = replace(budget_defaults(budget, out_dir), **{k: v for k, v in overrides.items() if v is not None})
    for what, subset in (("ablation", settings.ablation_seeds), ("GAD", settings.gad_run_seeds)):
        unknown = set(subset) - set(settings.seeds)
        if unknown:
            raise ValueError(f"{what} seeds {sorted(unknown)} are not training seeds {list(settings.seeds)}")
    # Relative paths are the caller's working directory's; made absolute, they stay right for every
    # stage's subprocess whatever its working directory.
    return replace(settings, out_dir=Path(settings.out_dir).resolve(), model_dir=Path(settings.model_dir).resolve())


def mode_settings(quick: bool, out_dir: Path, **overrides: Any) -> MiniatureSettings:
    """The quick or the full budget (the `--quick` flag of the demo)."""
    return budget_settings("quick" if quick else "full", out_dir, **overrides)
