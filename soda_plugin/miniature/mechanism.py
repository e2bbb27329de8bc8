"""The paper's mechanism, q0-pattern suppression, measured as log-probabilities.

Each trained model scores fixed answers (e.g. q0's own greedy answer to each prompt); the
log-probability it assigns, per token and relative to another model (the warmup, SeqKD),
shows whether SODA pushed the student away from q0's patterns.

An answer is tokenized exactly as DPO sees it (`soda_plugin.train.views.dpo_example`,
then TRL): the templated prompt, then the answer with its end-of-turn token. The
end-of-turn (and an EOS that TRL appends) is scored only for an answer that stopped; a
truncated answer (finish_reason "length") never emitted it, so only its own tokens count.

CLI:
    python -m soda_plugin.miniature.mechanism --model NAME=DIR [--model ...] \\
        --rows ROWS.jsonl --out OUT.json [--head 16]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..format.chat_format import assistant_turn_suffix, plain_tokenizer_adds_bos, render_final_turn, strip_template_bos
from ..format.fileio import atomic_write_text, iter_json_lines
from ..format.rows import BadRowError, parse_messages
from ..snapshot.decode import shared_prefix_length

ROW_FIELDS = ("prompt_id", "messages", "response", "stopped")


@dataclass(frozen=True)
class ScoredAnswer:
    """One answer's log-probability under one model (nats, summed over scored tokens)."""

    prompt_id: str
    logp: float
    n_tokens: int
    logp_head: float  # over the first `n_head` scored tokens
    n_head: int


def _ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` without special tokens, as `views._ids`."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's ids as TRL trains on them.

    TRL 1.14 tokenizes the string prompt with `processing_class(text=input)`
    (trl/data_utils.py:433, called from trl/trainer/dpo_trainer.py:1069), i.e. with special
    tokens, so a tokenizer that prepends BOS (Llama) gets exactly one BOS before the
    prompt `strip_template_bos` left without one.
    """
    ids = _ids(tokenizer, prompt)
    if plain_tokenizer_adds_bos(tokenizer):
        ids = [tokenizer.bos_token_id] + ids
    return ids


def _stopped_completion(tokenizer: Any, completion: str) -> str:
    """The completion text with the EOS TRL appends when it does not end with one.

    trl/trainer/dpo_trainer.py:1033-1040 (`add_eos`) appends `tokenizer.eos_token` to a
    string `chosen`/`rejected` that does not end with it (e.g. ChatML `<|im_end|>` under an
    `<|endoftext|>` EOS).
    """
    eos = getattr(tokenizer, "eos_token", None)
    if eos and not completion.endswith(eos):
        return completion + eos
    return completion


def answer_token_ids(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], response: str, stopped: bool
) -> tuple[list[int], list[int]]:
    """`(prompt ids, scored completion ids)` of `response` after `messages`.

    The prompt is `dpo_example`'s; the completion is `render_final_turn`'s (answer plus
    end-of-turn) when the answer stopped, else the answer's own tokens only.

    Raises:
        ValueError: when nothing would be scored (an empty truncated answer).
    """
    # dpo_example strips both answers; score the same text.
    turn = render_final_turn(tokenizer, list(messages), response.strip())
    prompt_ids = _prompt_ids(tokenizer, strip_template_bos(tokenizer, turn.prompt))
    end_of_turn, _ = assistant_turn_suffix(tokenizer)
    if stopped:
        completion_ids = _ids(tokenizer, _stopped_completion(tokenizer, turn.completion))
    else:
        completion_ids = _ids(tokenizer, turn.completion[: len(turn.completion) - len(end_of_turn)])
    if not completion_ids:
        raise ValueError("the answer is empty and was truncated: it has no token to score")
    return prompt_ids, completion_ids


def check_row(row: Any, where: str) -> dict[str, Any]:
    """Validate one answer row (`prompt_id`, `messages`, `response`, `stopped`).

    Raises:
        ValueError: naming `where` and the offending field.
    """
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: is a JSON {type(row).__name__}, not an object with fields {list(ROW_FIELDS)}")
    missing = [field for field in ROW_FIELDS if field not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; each row needs {list(ROW_FIELDS)}")
    if not isinstance(row["prompt_id"], str) or not row["prompt_id"]:
        raise ValueError(f"{where}: field `prompt_id` must be a non-empty string, got {row['prompt_id']!r}")
    if not isinstance(row["response"], str):
        raise ValueError(f"{where}: field `response` is {type(row['response']).__name__}, not a string")
    if not isinstance(row["stopped"], bool):
        raise ValueError(f"{where}: field `stopped` must be true or false, got {row['stopped']!r}")
    try:
        messages = parse_messages(row, "messages", 0)
    except BadRowError as error:
        raise ValueError(f"{where}: field `{error.field}` {error.detail}") from None
    return {"prompt_id": row["prompt_id"], "messages": list(messages), "response": row["response"],
            "stopped": row["stopped"]}


def _encode(tokenizer: Any, row: Mapping[str, Any], where: str) -> tuple[list[int], list[int]]:
    try:
        return answer_token_ids(tokenizer, row["messages"], row["response"], row["stopped"])
    except ValueError as error:
        raise ValueError(f"{where} (prompt_id {row['prompt_id']}): {error}") from error


def _pad_id(tokenizer: Any) -> int:
    """Any id works under the attention mask; prefer the tokenizer's own pad."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def _batch_logps(model: Any, encoded: Sequence[tuple[list[int], list[int]]], pad_id: int) -> list[list[float]]:
    """Per-token log-probs of each completion after its prompt: the prompts' shared opening
    (the chat template's system turn) runs once, then one right-padded forward of the rest."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    prefix = shared_prefix_length([prompt for prompt, _ in encoded])
    cache = DynamicCache(config=model.config)
    if prefix:
        model(input_ids=torch.tensor([encoded[0][0][:prefix]], device=device), past_key_values=cache, use_cache=True,
              logits_to_keep=1)
        cache.batch_repeat_interleave(len(encoded))
    rests = [(prompt + completion)[prefix:] for prompt, completion in encoded]
    width = max(len(rest) for rest in rests)
    input_ids = torch.full((len(rests), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rests), prefix + width), dtype=torch.long)
    attention_mask[:, :prefix] = 1
    for i, rest in enumerate(rests):
        input_ids[i, : len(rest)] = torch.tensor(rest)
        attention_mask[i, prefix : prefix + len(rest)] = 1
    positions = torch.arange(prefix, prefix + width)[None, :].expand(len(rests), -1)
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                   position_ids=positions.to(device), past_key_values=cache, use_cache=True).logits
    result = []
    for i, (prompt, completion) in enumerate(encoded):
        # Position t predicts token t+1; slicing before log_softmax keeps float32 memory to
        # the completion rows, not batch x width x vocab.
        start = len(prompt) - 1 - prefix
        rows = torch.log_softmax(logits[i, start : start + len(completion)].float(), dim=-1)
        targets = torch.tensor(completion, device=rows.device)[:, None]
        result.append(rows.gather(1, targets)[:, 0].tolist())
    return result


def _scored(prompt_id: str, token_logps: Sequence[float], head: int) -> ScoredAnswer:
    n_head = min(head, len(token_logps))
    return ScoredAnswer(prompt_id=prompt_id, logp=math.fsum(token_logps), n_tokens=len(token_logps),
                        logp_head=math.fsum(token_logps[:n_head]), n_head=n_head)


def score_answers(
    model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], head: int = 16, batch_size: int = 8
) -> list[ScoredAnswer]:
    """Score each row's `response` under `model`, in row order.

    Raises:
        ValueError: naming a malformed row, or one whose prompt renders to no token.
    """
    import torch

    if head < 1 or batch_size < 1:
        raise ValueError(f"head ({head}) and batch_size ({batch_size}) must be positive")
    checked = [check_row(row, f"row {index}") for index, row in enumerate(rows)]
    encoded = [_encode(tokenizer, row, f"row {index}") for index, row in enumerate(checked)]
    for index, (prompt, _) in enumerate(encoded):
        if not prompt:
            raise ValueError(f"row {index}: the prompt renders to no token; the first answer token has no context")
    model.eval()
    pad_id = _pad_id(tokenizer)
    scored: list[ScoredAnswer] = []
    with torch.no_grad():
        for begin in range(0, len(encoded), batch_size):
            chunk = encoded[begin : begin + batch_size]
            for row, token_logps in zip(checked[begin : begin + batch_size], _batch_logps(model, chunk, pad_id)):
                scored.append(_scored(row["prompt_id"], token_logps, head))
    return scored


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score_models(
    models: Mapping[str, Path], rows: Sequence[Mapping[str, Any]], head: int = 16,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[ScoredAnswer]]:
    """Load each model in turn (float32, GPU when there is one), score `rows`, free it.

    Raises:
        FileNotFoundError: naming a model directory that does not exist, before any load.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name, directory in models.items():
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"model {name!r}: directory {str(directory)!r} does not exist")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict[str, list[ScoredAnswer]] = {}
    for name, directory in models.items():
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).to(device)
        results[name] = score_answers(model, tokenizer, rows, head=head)
        del model
        _release_memory()
        if progress is not None:
            mean = sum(s.logp for s in results[name]) / max(1, sum(s.n_tokens for s in results[name]))
            progress(f"mechanism: scored {len(rows)} answers under {name} ({directory}): {mean:.4f} nats/token")
    return results


def _by_prompt(name: str, answers: Sequence[ScoredAnswer]) -> dict[str, ScoredAnswer]:
    by_prompt = {answer.prompt_id: answer for answer in answers}
    if len(by_prompt) != len(answers):
        raise ValueError(f"model {name!r}: duplicate prompt ids; each prompt must be scored once")
    return by_prompt


def _check_alike(name: str, answers: Mapping[str, ScoredAnswer], reference: Mapping[str, ScoredAnswer]) -> None:
    if answers.keys() != reference.keys():
        extra, lacking = sorted(answers.keys() - reference.keys()), sorted(reference.keys() - answers.keys())
        raise ValueError(f"model {name!r} scored other prompts than the reference (extra {extra[:5]}, "
                         f"missing {lacking[:5]})")
    for prompt_id, answer in answers.items():
        ref = reference[prompt_id]
        if (answer.n_tokens, answer.n_head) != (ref.n_tokens, ref.n_head):
            raise ValueError(f"model {name!r}, prompt {prompt_id}: {answer.n_tokens} tokens vs the reference's "
                             f"{ref.n_tokens}; models must share one tokenizer to be compared")


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def relative_logps(scored: Mapping[str, Sequence[ScoredAnswer]], reference: str) -> dict[str, dict]:
    """Per model, log p(answer) minus the reference's, in nats per token.

    Returns `{name: {"mean", "mean_head", "prompt_ids", "per_prompt", "per_prompt_head"}}`,
    per-prompt lists ordered by prompt id (for bootstrapping); the reference maps to zeros.

    Raises:
        ValueError: when `reference` is absent, or models differ in prompts or token counts.
    """
    if reference not in scored:
        raise ValueError(f"reference model {reference!r} is not among the scored models {sorted(scored)}")
    ref = _by_prompt(reference, scored[reference])
    if not ref:
        raise ValueError(f"reference model {reference!r} scored no answers")
    prompt_ids = sorted(ref)
    out: dict[str, dict] = {}
    for name, answers in scored.items():
        mine = _by_prompt(name, answers)
        _check_alike(name, mine, ref)
        per_prompt = [(mine[p].logp - ref[p].logp) / ref[p].n_tokens for p in prompt_ids]
        per_head = [(mine[p].logp_head - ref[p].logp_head) / ref[p].n_head for p in prompt_ids]
        out[name] = {"mean": _mean(per_prompt), "mean_head": _mean(per_head), "prompt_ids": prompt_ids,
                     "per_prompt": per_prompt, "per_prompt_head": per_head}
    return out


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file, each validated; any bad line raises naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"rows file {str(path)!r} does not exist")
    rows = []
    for number, value in iter_json_lines(path):
        where = f"{path}:{number}"
        if isinstance(value, json.JSONDecodeError):
            raise ValueError(f"{where}: not a JSON line ({value})")
        rows.append(check_row(value, where))
    if not rows:
        raise ValueError(f"{path}: has no rows to score")
    return rows


def _parse_model(spec: str) -> tuple[str, Path]:
    name, sep, directory = spec.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"--model {spec!r}: expected NAME=DIR")
    return name, Path(directory)


def _models(specs: Iterable[tuple[str, Path]]) -> dict[str, Path]:
    models: dict[str, Path] = {}
    for name, directory in specs:
        if name in models:
            raise ValueError(f"--model {name!r} is given twice")
        models[name] = directory
    return models


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m soda_plugin.miniature.mechanism",
                                     description="Score fixed answers' log-probabilities under each model.")
    parser.add_argument("--model", action="append", type=_parse_model, required=True, metavar="NAME=DIR",
                        help="a model to score with (repeatable)")
    parser.add_argument("--rows", type=Path, required=True,
                        help="JSON lines of {prompt_id, messages, response, stopped}")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--head", type=int, default=16, help="also sum the first HEAD scored tokens")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 with a message on stderr on bad input)."""
    args = _parser().parse_args(argv)
    try:
        models = _models(args.model)
        rows = read_rows(args.rows)
        scored = score_models(models, rows, head=args.head, progress=lambda line: print(line, file=sys.stderr))
    except (FileNotFoundError, ValueError) as error:
        print(f"mechanism: error: {error}", file=sys.stderr)
        return 2
    payload = {"head": args.head, "models": {name: [asdict(a) for a in answers] for name, answers in scored.items()}}
    atomic_write_text(args.out, json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
