"""Batched decoding for the `transformers` engine that spends compute only on live rows.

`model.generate` decodes every row of a batch until its longest answer ends, and runs the
chat template's shared opening (SmolLM2's system turn: 24 of ~41 prompt tokens) once per
prompt. On CPU both dominate: SmolLM2-135M on 2 cores takes ~200 ms per decode step at
batch 24 and ~70 ms at batch 1, so one rambling answer holds 23 finished rows to 40 steps.

Here the tokens all rows start with are run once and their cache is repeated over the
batch, and a row leaves the batch (and the cache) as soon as it emits a stop token. The
choice at every step is the argmax of the same last-position logits `generate` uses with
`do_sample=False` (or of a processor's scores, e.g. the per-row Gumbel sampler), so the
answers are `generate`'s; tests/unit/test_snapshot_decode.py compares them token for token.
Processors a model's `generation_config` would add (a repetition penalty, say) are not
applied: a snapshot's settings are the ones it records, as with the vLLM and API engines.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

# scores(logits of the live rows [live, vocab], the live rows' indices into the batch) -> scores
ScoreFn = Callable[[Any, list[int]], Any]


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row has in common, leaving each row at least one of its own
    (the last prompt token's logits are the first answer token's distribution)."""
    if not rows:
        return 0
    shortest = min(len(row) for row in rows)
    length = 0
    while length < shortest - 1 and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def decode(model: Any, rows: Sequence[Sequence[int]], *, max_new_tokens: int, stop_ids: set[int],
           score_fn: ScoreFn | None = None) -> list[list[int]]:
    """New tokens of each prompt row: up to and including its first stop token, else `max_new_tokens`.

    Raises:
        ValueError: for an empty prompt row or a non-positive `max_new_tokens`.
    """
    import torch
    from transformers import DynamicCache

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if any(len(row) == 0 for row in rows):
        raise ValueError("a prompt renders to no token; the first answer token has no context")
    generated: list[list[int]] = [[] for _ in rows]
    if not rows:
        return generated
    device = model.device
    cache = DynamicCache(config=model.config)
    prefix = shared_prefix_length(rows)
    with torch.no_grad():
        if prefix:
            model(input_ids=torch.tensor([list(rows[0][:prefix])], device=device), past_key_values=cache,
                  use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(len(rows))
        suffixes = [list(row[prefix:]) for row in rows]
        width = max(len(s) for s in suffixes)
        # Left padding after the shared prefix: the pads sit between it and each row's own tokens,
        # masked out, and the positions count real tokens only (as generate's cumsum does).
        input_ids = torch.zeros((len(rows), width), dtype=torch.long)
        own_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, suffix in enumerate(suffixes):
            input_ids[i, width - len(suffix):] = torch.tensor(suffix)
            own_mask[i, width - len(suffix):] = 1
        mask = torch.cat([torch.ones((len(rows), prefix), dtype=torch.long), own_mask], dim=1).to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, prefix:]
        out = model(input_ids=input_ids.to(device), attention_mask=mask, position_ids=positions,
                    past_key_values=cache, use_cache=True, logits_to_keep=1)
        next_position = positions[:, -1] + 1
        live = list(range(len(rows)))
        for step in range(max_new_tokens):
            logits = out.logits[:, -1, :].float()
            scores = logits if score_fn is None else score_fn(logits, live)
            tokens = scores.argmax(dim=-1)
            still = []
            for slot, (row, token) in enumerate(zip(live, tokens.tolist())):
                generated[row].append(token)
                if token not in stop_ids:
                    still.append(slot)
            if step == max_new_tokens - 1 or not still:
                break
            if len(still) < len(live):
                keep = torch.tensor(still, device=device)
                cache.batch_select_indices(keep)
                mask, tokens, next_position = mask[keep], tokens[keep], next_position[keep]
                live = [live[slot] for slot in still]
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=device)], dim=1)
            out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position[:, None],
                        past_key_values=cache, use_cache=True)
            next_position = next_position + 1
    return generated
