"""GAD's discriminator and trainer, in process on a tiny model: the Bradley-Terry loss and
its gradient by hand, the reward the policy sees, and verl's discriminator-only steps."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from soda_plugin.gad.args import GADConfig, recipe_problems
from soda_plugin.gad.discriminator import Discriminator, bradley_terry_loss, bradley_terry_score_grads

TEACHER = torch.tensor([1.0, -0.5])
ROLLOUTS = torch.tensor([0.0, 2.0, -1.0])
GROUP = torch.tensor([0, 0, 1])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bradley_terry_loss_by_hand():
    # -log sigmoid(t - s) = softplus(s - t), for (t0, 0.0), (t0, 2.0), (t1, -1.0)
    expected = (softplus(0.0 - 1.0) + softplus(2.0 - 1.0) + softplus(-1.0 + 0.5)) / 3
    assert bradley_terry_loss(TEACHER, ROLLOUTS, GROUP).item() == pytest.approx(expected, rel=1e-6)


def test_bradley_terry_gradient_by_hand_and_by_autograd():
    teacher_grads, rollout_grads = bradley_terry_score_grads(TEACHER, ROLLOUTS, GROUP)
    by_hand_rollouts = [sigmoid(0.0 - 1.0) / 3, sigmoid(2.0 - 1.0) / 3, sigmoid(-1.0 + 0.5) / 3]
    by_hand_teacher = [-(by_hand_rollouts[0] + by_hand_rollouts[1]), -by_hand_rollouts[2]]
    assert rollout_grads.tolist() == pytest.approx(by_hand_rollouts, rel=1e-6)
    assert teacher_grads.tolist() == pytest.approx(by_hand_teacher, rel=1e-6)
    teacher, rollouts = TEACHER.clone().requires_grad_(), ROLLOUTS.clone().requires_grad_()
    bradley_terry_loss(teacher, rollouts, GROUP).backward()
    assert torch.allclose(teacher.grad, teacher_grads) and torch.allclose(rollouts.grad, rollout_grads)


def _discriminator(model_dir, micro_batch_size=2) -> Discriminator:
    return Discriminator.load(str(model_dir), pad_token_id=0, device="cpu", dtype=torch.float32, seed=0,
                              learning_rate=1e-3, weight_decay=0.01, max_grad_norm=1e9,
                              micro_batch_size=micro_batch_size)


def test_discriminator_update_has_the_loss_gradient_in_its_weights(tiny_model_dirs):
    """D's update forwards each sequence once with fixed weights; its parameter gradient must be
    that of the Bradley-Terry loss over (teacher, rollout) pairs computed directly."""
    d = _discriminator(tiny_model_dirs["qwen2"])
    teacher = [[5, 6, 7, 8], [9, 10, 11]]
    rollouts = [[5, 6, 7, 20, 21], [5, 6, 7, 22], [9, 10, 23, 24, 25, 26]]
    group = [0, 0, 1]
    d.accumulate_gradients(teacher, rollouts, group)
    surrogate = {n: p.grad.clone() for n, p in d.model.named_parameters() if p.grad is not None}
    d.model.zero_grad(set_to_none=True)
    direct = bradley_terry_loss(d._forward(teacher), d._forward(rollouts), torch.tensor(group))
    direct.backward()
    assert surrogate, "no gradient reached D"
    for name, parameter in d.model.named_parameters():
        assert torch.allclose(surrogate[name], parameter.grad, atol=1e-6, rtol=1e-4), name


def test_scores_read_the_last_token_whatever_the_padding(tiny_model_dirs):
    d = _discriminator(tiny_model_dirs["qwen2"], micro_batch_size=3)
    sequences = [[5, 6, 7], [5, 6, 7, 8, 9, 10, 11], [12]]
    together = d.scores(sequences)
    alone = torch.cat([d.scores([s]) for s in sequences])
    assert torch.allclose(together, alone, atol=1e-5)


# -- the trainer, in process ----------------------------------------------------------------

def _trainer(tiny_model_dirs, tmp_path, **config):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from axolotl.core.trainers.grpo.args import AxolotlGRPOConfig
    from soda_plugin.gad.trainer import GADTrainer

    model_dir = tiny_model_dirs["qwen2"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [{"prompt": f"<|im_start|>user\nWhat is {i} plus 1?<|im_end|>\n<|im_start|>assistant\n",
             "teacher_completion": f"{i + 1}<|im_end|>"} for i in range(8)]
    args = AxolotlGRPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=2,
        num_generations=4, max_completion_length=8, temperature=0.8, beta=0.0, learning_rate=1e-3, max_steps=1,
        report_to=[], use_cpu=True, logging_steps=1, save_strategy="no", seed=3, weight_decay=0.01)
    trainer = GADTrainer(AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    gad = GADConfig.model_validate({"discriminator": {"learning_rate": 1e-2, "micro_batch_size": 4}, **config})
    trainer.attach_discriminator(gad, str(model_dir), seed=0)
    return trainer, tokenizer


def test_the_policy_is_rewarded_with_d_scores_from_before_d_moves(tiny_model_dirs, tmp_path):
    trainer, _ = _trainer(tiny_model_dirs, tmp_path)
    before = copy.deepcopy(trainer.discriminator.model.state_dict())
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    output = trainer._generate_and_score_completions(batch)

    fresh = _discriminator(tiny_model_dirs["qwen2"])
    fresh.model.load_state_dict(before)
    rollouts = [p[pm.bool()].tolist() + c[cm.bool()].tolist() for p, pm, c, cm in
                zip(output["prompt_ids"], output["prompt_mask"], output["completion_ids"], output["completion_mask"])]
    expected = fresh.scores(rollouts)
    seen = torch.tensor(list(trainer._logs["rewards"]["discriminator_reward"]))  # TRL's record of the rewards
    assert torch.allclose(seen, expected, atol=1e-5)
    grouped = expected.view(-1, trainer.num_generations)
    advantages = (grouped - grouped.mean(dim=1, keepdim=True)) / (grouped.std(dim=1, keepdim=True) + 1e-4)
    assert torch.allclose(output["advantages"], advantages.flatten(), atol=1e-4)
    moved = [n for n, p in trainer.discriminator.model.state_dict().items() if not torch.equal(p, before[n])]
    assert moved, "D did not update after scoring"


def test_discriminator_only_steps_leave_the_policy_untouched(tiny_model_dirs, tmp_path):
    trainer, _ = _trainer(tiny_model_dirs, tmp_path, critic_warmup=3, policy_loss="sft")
    policy_before = copy.deepcopy(trainer.model.state_dict())
    d_before = copy.deepcopy(trainer.discriminator.model.state_dict())
    trainer.args.max_steps = 2
    trainer.train()
    assert all(torch.equal(p, policy_before[n]) for n, p in trainer.model.state_dict().items())
    assert any(not torch.equal(p, d_before[n]) for n, p in trainer.discriminator.model.state_dict().items())
    assert not trainer.optimizer.state_dict()["state"], "AdamW kept state for a policy that did not train"


def test_the_warmup_policy_learns_the_teacher_answers(tiny_model_dirs, tmp_path):
    trainer, tokenizer = _trainer(tiny_model_dirs, tmp_path, critic_warmup=1, policy_loss="sft")
    policy_before = copy.deepcopy(trainer.model.state_dict())
    trainer.args.max_steps = 2
    trainer.train()
    assert any(not torch.equal(p, policy_before[n]) for n, p in trainer.model.state_dict().items())


def test_the_warmup_tokenizes_each_teacher_answer_once(tiny_model_dirs, tmp_path):
    """D's update and the SFT loss both read the teacher's answers in a warmup step."""
    trainer, tokenizer = _trainer(tiny_model_dirs, tmp_path, critic_warmup=1, policy_loss="sft")
    answers = {f"{i + 1}<|im_end|>" for i in range(8)}
    calls: list[str] = []
    original = type(tokenizer).__call__

    def counting(self, text=None, *args, **kwargs):
        if isinstance(text, str) and text in answers:
            calls.append(text)
        return original(self, text, *args, **kwargs)

    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    type(tokenizer).__call__ = counting
    try:
        output = trainer._generate_and_score_completions(batch)
    finally:
        type(tokenizer).__call__ = original
    seen = {row["teacher_completion"] for row in batch}
    assert sorted(calls) == sorted(seen), "a teacher answer was tokenized more than once (or never)"
    expected = [tokenizer(row["teacher_completion"], add_special_tokens=False)["input_ids"][:8] for row in batch]
    assert [ids[mask.bool()].tolist() for ids, mask in zip(output["teacher_ids"], output["teacher_mask"])] == expected


def test_a_gad_recipe_names_what_stops_it():
    problems = recipe_problems({"rl": "dpo", "trainer_cls": None, "trl": {"reward_funcs": ["x.y"]}, "adapter": "lora"})
    assert len(problems) == 4
    assert any("rl: grpo" in p for p in problems) and any("GADTrainer" in p for p in problems)
    assert recipe_problems({"rl": "grpo", "trainer_cls": "soda_plugin.gad.trainer.GADTrainer"}) == []
