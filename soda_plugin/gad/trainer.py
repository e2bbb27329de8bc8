"""GADTrainer: Axolotl's GRPO trainer with GAD's discriminator as the reward and a second learner.

One optimizer step, in verl's order (docs/gad.md):
  generate n rollouts per prompt -> reward = D's score of each rollout (before D moves)
  -> group-normalised advantages (TRL) -> D's Bradley-Terry update -> the policy's update.
The reward call does the two D steps, so the policy update that follows sees rewards from
the D it was scored by. In the warmup (`gad.policy_loss: sft`) the policy's loss is SFT on
the teacher's answers instead of GRPO; for the first `critic_warmup - 1` steps only D trains.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from axolotl.core.trainers.grpo.trainer import AxolotlGRPOTrainer

from ..constants import GRPO_TEACHER_COLUMN as TEACHER_COLUMN
from ..log import get_logger
from .args import GADConfig, PolicyLoss
from .discriminator import WEIGHTS_DIRNAME, Discriminator

LOG = get_logger(__name__)


class GADTrainer(AxolotlGRPOTrainer):
    """The recipe names it in `trainer_cls`; `GADPlugin` attaches D after construction."""

    def __init__(self, model, *args: Any, **kwargs: Any):
        # TRL's reward functions are frozen models or plain callables: D is neither, so the
        # one reward is this trainer's method, which also trains D.
        self.discriminator: Discriminator | None = None
        self.gad = GADConfig()
        # The warmup reads each teacher answer twice per step (D's update, then the SFT loss):
        # tokenize it once. Bounded: a step holds a few hundred distinct answers at most.
        self._teacher_ids = functools.lru_cache(maxsize=4096)(self._tokenize_teacher_answer)
        super().__init__(model, [self.discriminator_reward], *args, **kwargs)

    # -- set-up -------------------------------------------------------------------------

    def attach_discriminator(self, gad: GADConfig, path: str, seed: int) -> None:
        d = gad.discriminator
        self.gad = gad
        self.discriminator = Discriminator.load(
            path, pad_token_id=self._pad_token_id(), device=self.accelerator.device,
            dtype=self._model_dtype(), seed=seed, learning_rate=d.learning_rate, weight_decay=d.weight_decay,
            max_grad_norm=d.max_grad_norm, micro_batch_size=d.micro_batch_size or self.args.per_device_train_batch_size,
            gradient_checkpointing=bool(self.args.gradient_checkpointing))
        if self.is_deepspeed_enabled:
            ds_config = self.accelerator.state.deepspeed_plugin.deepspeed_config
            self.discriminator.shard_with_deepspeed(dict(ds_config.get("zero_optimization") or {}),
                                                    bf16=bool(self.args.bf16))
        LOG.info("gad: discriminator from %s; policy loss %s; policy frozen for the first %d steps",
                 path, gad.policy_loss.value, max(gad.critic_warmup - 1, 0))

    def _pad_token_id(self) -> int:
        tokenizer = self._text_tokenizer()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("gad: the tokenizer has neither a pad nor an end-of-sequence token")
        return int(pad)

    def _model_dtype(self) -> torch.dtype:
        return next(self.accelerator.unwrap_model(self.model).parameters()).dtype

    def _text_tokenizer(self) -> Any:
        return getattr(self.processing_class, "tokenizer", self.processing_class)

    # -- reward and D's update ------------------------------------------------------------

    def discriminator_reward(self, prompts: list[str], completions: list[Any], completion_ids: list[list[int]],
                             **columns: Any) -> list[float]:
        """D's score of each rollout, read before D's update; in training, then D's update."""
        if self.discriminator is None:
            raise RuntimeError("GADTrainer has no discriminator: list `soda_plugin.GADPlugin` under `plugins:` "
                               "(it attaches D when the trainer is built).")
        if TEACHER_COLUMN not in columns:
            raise KeyError(f"gad: the dataset rows carry no `{TEACHER_COLUMN}` column; read the teacher file with "
                           "`type: soda` (columns `content` and `teacher_response`).")
        # As TRL tokenizes string prompts for generation (`GRPOTrainer._tokenize_prompts`).
        prompt_ids = self.processing_class(text=list(prompts))["input_ids"]
        rollouts = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
        scores = self.discriminator.scores(rollouts)
        if self.model.training:
            teacher, group_of = self._teacher_sequences(prompt_ids, columns[TEACHER_COLUMN])
            stats = self.discriminator.update(teacher, rollouts, group_of, rollout_scores=scores)
            self._metrics["train"]["discriminator/loss"].append(stats.loss)
            self._metrics["train"]["discriminator/accuracy"].append(stats.accuracy)
            self._metrics["train"]["discriminator/grad_norm"].append(stats.grad_norm)
        return scores.tolist()

    def _tokenize_teacher_answer(self, text: str) -> tuple[int, ...]:
        """The teacher's answer as D sees it: its text and the template's end of turn (a rollout
        that stopped on its own ends with the end-of-sequence token too), cut at the rollout
        limit as a long rollout is. Read through `self._teacher_ids`, its cache."""
        return tuple(self._text_tokenizer()(text, add_special_tokens=False)["input_ids"][: self.max_completion_length])

    def _teacher_sequences(self, prompt_ids: list[list[int]], answers: list[str]) -> tuple[list[list[int]], list[int]]:
        """Each distinct (prompt, teacher answer) once, and which one each rollout pairs with."""
        index: dict[tuple[tuple[int, ...], str], int] = {}
        sequences, group_of = [], []
        for prompt, answer in zip(prompt_ids, answers):
            key = (tuple(prompt), answer)
            if key not in index:
                index[key] = len(sequences)
                sequences.append(list(prompt) + list(self._teacher_ids(answer)))
            group_of.append(index[key])
        return sequences, group_of

    # -- the warmup's SFT policy loss ---------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.gad.policy_loss is PolicyLoss.SFT and self.model.training:
            output.update(self._teacher_batch(inputs))
        return output

    def _teacher_batch(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Teacher answers for the SFT loss, one trained row per prompt: the generation batch
        repeats each prompt n times, in groups of n consecutive rows across the processes."""
        answers = [self._teacher_ids(row[TEACHER_COLUMN]) for row in inputs]
        longest = max(1, max(len(a) for a in answers))
        pad = self._pad_token_id()
        ids = torch.full((len(answers), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(answers), longest), dtype=torch.long)
        for row, answer in enumerate(answers):
            ids[row, : len(answer)] = torch.tensor(answer, dtype=torch.long)
            mask[row, : len(answer)] = 1
        first = self.accelerator.process_index * len(inputs)
        weight = torch.tensor([float((first + row) % self.num_generations == 0) for row in range(len(inputs))])
        tokens = float((mask.sum(dim=1) * weight).sum().clamp(min=1))
        device = self.accelerator.device
        return {"teacher_ids": ids.to(device), "teacher_mask": mask.to(device), "sft_weight": weight.to(device),
                "sft_tokens": torch.full((len(inputs),), tokens, device=device)}

    def _compute_loss(self, model, inputs):
        if self.gad.policy_loss is not PolicyLoss.SFT:
            return super()._compute_loss(model, inputs)
        rows = inputs["sft_weight"] > 0
        if not rows.any():  # a forward of one row times 0: every rank still runs backward
            rows = torch.zeros_like(rows)
            rows[0] = True
            scale = 0.0
        else:
            scale = 1.0
        prompt_ids, prompt_mask = inputs["prompt_ids"][rows], inputs["prompt_mask"][rows]
        teacher_ids, teacher_mask = inputs["teacher_ids"][rows], inputs["teacher_mask"][rows]
        per_token_logps, _, _ = self._get_per_token_logps_and_entropies(
            model, torch.cat([prompt_ids, teacher_ids], dim=1), torch.cat([prompt_mask, teacher_mask], dim=1),
            teacher_ids.size(1))
        nll = -(per_token_logps * teacher_mask).sum()
        # Token mean over the local generation batch once the Trainer divides by accumulation.
        steps = self.current_gradient_accumulation_steps / self.args.steps_per_generation
        loss = scale * nll / inputs["sft_tokens"][0] * steps
        self._metrics["train"]["sft_loss"].append(float(nll.detach() / teacher_mask.sum().clamp(min=1)))
        return loss

    # -- verl's critic warmup: D trains, the policy does not ----------------------------

    def policy_frozen(self) -> bool:
        """verl updates the actor once `global_steps >= critic_warmup` (its steps count from 1)."""
        return self.state.global_step + 1 < self.gad.critic_warmup

    def training_step(self, model, inputs, num_items_in_batch=None):
        if not self.policy_frozen():
            return super().training_step(model, inputs, num_items_in_batch)
        # Generation, reward and D's update happen in `_prepare_inputs`; no backward, so the
        # policy's gradients stay None and AdamW leaves its weights and moments untouched.
        model.train()
        self._prepare_inputs(inputs)
        self._step += 1
        return torch.zeros((), device=self.accelerator.device)

    # -- checkpoints: both models ------------------------------------------------------------

    def train(self, *args: Any, **kwargs: Any):
        output = super().train(*args, **kwargs)
        # Only a finished run gets here: its D is the stage's, beside the student Axolotl saves next.
        if self.discriminator is not None:
            self.discriminator.save(self.args.output_dir, is_main=self.args.should_save)
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if _internal_call and self.discriminator is not None:  # a checkpoint; every rank is here
            self.discriminator.save(output_dir or self.args.output_dir, is_main=self.args.should_save)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.discriminator is not None:
            self.discriminator.save_optimizer(output_dir, is_main=self.args.should_save)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and self.discriminator is not None:
            self.discriminator.restore(checkpoint)


def discriminator_dir(stage_dir: str) -> str:
    return os.path.join(stage_dir, WEIGHTS_DIRNAME)
