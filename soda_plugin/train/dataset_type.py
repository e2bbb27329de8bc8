"""The `soda` dataset type, in the loader shapes Axolotl expects.

- SFT (`load`): a `DatasetWrappingStrategy` that validates every row first (in the
  main process, so skipped rows are counted once per dataset), then tokenizes.
- DPO (`default`): the transform contract of `axolotl.prompt_strategies.dpo`, returning
  the row function plus `map` kwargs. It is batched so that skipped rows can be dropped.
- GRPO (`default` with `rl: grpo`, GAD): the same contract, rows of prompt + teacher answer.

`host_patches.register_dataset_type` makes these reachable as `type: soda` and `type: soda_plugin.soda`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from ..constants import FINISH_REASON_FIELD, GRPO_TEACHER_COLUMN
from ..log import get_logger
from ..format.rows import BadRowError, BadRowReason, BadRowTally, OnBadRow, SodaFields, parse_row, teacher_flags
from ..format.flags import FLAGS_FIELD
from .args import rl_method
from .views import dpo_example, grpo_example, sft_example

LOG = get_logger(__name__)

FLAG_COLUMNS = (FLAGS_FIELD, FINISH_REASON_FIELD)

try:  # Axolotl's abstract base; the strategy works without it (e.g. in unit tests).
    from axolotl.prompt_tokenizers import DatasetWrappingStrategy
except ImportError:  # pragma: no cover - axolotl is a hard dependency of the plugin
    DatasetWrappingStrategy = object  # type: ignore[misc,assignment]


def bad_row_policy(cfg: Mapping[str, Any] | None) -> OnBadRow:
    block = (cfg or {}).get("soda") or (cfg or {}).get("gad") or {}  # a GAD recipe has `gad:`, not `soda:`
    return OnBadRow(block.get("on_bad_row") or OnBadRow.ERROR)


def _check_columns(column_names: list[str], fields: SodaFields, need_student: bool) -> None:
    wanted = {"messages (`field_messages`)": fields.messages, "teacher (`field_chosen`)": fields.teacher}
    if need_student:
        wanted["student (`field_rejected`)"] = fields.student
    for role, column in wanted.items():
        if column not in column_names:
            raise BadRowError(
                0, column, BadRowReason.MISSING_FIELD,
                f"is not a column of the dataset (columns: {sorted(column_names)}); set the "
                f"{role} column name in the dataset entry",
            )


class SodaSFTStrategy(DatasetWrappingStrategy):
    """Warmup view: the teacher answer is the final assistant turn; prompt tokens masked."""

    def __init__(self, tokenizer: Any, fields: SodaFields, policy: OnBadRow, source: str | None = None):
        self.tokenizer = tokenizer
        self.fields = fields
        self.policy = policy
        self.source = source

    def valid_indices(self, dataset: Any) -> list[int]:
        """Indices of trainable rows; raises on the first bad row under `error`."""
        _check_columns(dataset.column_names, self.fields, need_student=False)
        tally = BadRowTally(self.policy)
        keep = []
        flagged: Counter[str] = Counter()
        wanted = [self.fields.messages, self.fields.teacher]
        columns = dataset.select_columns(wanted + [c for c in FLAG_COLUMNS if c in dataset.column_names])
        for index, row in enumerate(columns):
            if flags := teacher_flags(row):  # never trained on, as the pair builder never pairs them
                flagged[flags[0]] += 1
                continue
            try:
                parse_row(row, self.fields, index=index, need_student=False, where=_where(self.source, index))
            except BadRowError as error:
                tally.record(error)
                continue
            keep.append(index)
        if flagged:
            LOG.warning("soda: %d teacher answers flagged by the teacher tool are not trained on (%s)",
                        sum(flagged.values()), ", ".join(f"{k}={v}" for k, v in sorted(flagged.items())))
        if tally.total:
            LOG.warning(tally.summary(len(dataset), "the warmup dataset"))
        if not keep:
            raise ValueError("soda: every row of the warmup dataset was skipped; nothing to train on.")
        return keep

    def tokenize_row(self, row: Mapping[str, Any]) -> dict[str, list[int]]:
        return sft_example(self.tokenizer, parse_row(row, self.fields, index=-1, need_student=False))

    def wrap_dataset(self, dataset, process_count=None, keep_in_memory=False, **kwargs):
        keep = self.valid_indices(dataset)
        if len(keep) < len(dataset):
            dataset = dataset.select(keep)
        return dataset.map(
            self.tokenize_row,
            remove_columns=dataset.column_names,
            num_proc=process_count,
            keep_in_memory=keep_in_memory,
            desc="soda: tokenizing warmup rows",
        )


def load(tokenizer: Any, cfg: Mapping[str, Any], ds_cfg: Mapping[str, Any] | None = None) -> SodaSFTStrategy:
    """SFT loader, called by `axolotl.prompt_strategies.load`."""
    fields = SodaFields.from_dataset_config(ds_cfg, (cfg or {}).get("soda"))
    return SodaSFTStrategy(tokenizer, fields, bad_row_policy(cfg), (ds_cfg or {}).get("path"))


def _where(source: str | None, index: int) -> str | None:
    return f"{source} row {index}" if source else None


def dpo_rows_to_triples(
    batch: dict[str, list[Any]], indices: list[int], tokenizer: Any, fields: SodaFields, policy: OnBadRow,
    source: str | None = None, grpo: bool = False,
) -> dict[str, list[str]]:
    """Batched transform body: validate each row, keep the good ones as DPO triples (or, for
    GRPO, as prompt + teacher answer: no student answer needed)."""
    out: dict[str, list[str]] = {"prompt": [], GRPO_TEACHER_COLUMN: []} if grpo else \
        {"prompt": [], "chosen": [], "rejected": []}
    view = grpo_example if grpo else dpo_example
    tally = BadRowTally(policy)
    flagged: Counter[str] = Counter()
    columns = list(batch)
    for position, index in enumerate(indices):
        row = {column: batch[column][position] for column in columns}
        if grpo and (flags := teacher_flags(row)):  # as the warmup view: never trained on
            flagged[flags[0]] += 1
            continue
        try:
            parsed = parse_row(row, fields, index=index, need_student=not grpo, where=_where(source, index))
        except BadRowError as error:
            tally.record(error)
            continue
        for key, value in view(tokenizer, parsed).items():
            out[key].append(value)
    if flagged:
        LOG.warning("soda: %d teacher answers flagged by the teacher tool are not trained on (%s)",
                    sum(flagged.values()), ", ".join(f"{k}={v}" for k, v in sorted(flagged.items())))
    if tally.total:
        LOG.warning(tally.summary(len(indices), f"{'GRPO' if grpo else 'preference'} rows {indices[0]}-{indices[-1]}"))
    return out


def _host_passes_row_indices() -> bool:
    """Axolotl 0.19/0.20 call the transform as `datasets.map` does, so `with_indices`
    gives exact row numbers. Axolotl 0.21 wraps it in `_with_source_columns(sample,
    **kwargs)`, which cannot take the positional indices."""
    try:
        from axolotl.utils.data import rl
    except ImportError:
        return True
    return not hasattr(rl, "_with_source_columns")


def default(cfg: Mapping[str, Any], dataset_idx: int = 0, **kwargs: Any):
    """DPO loader, called by `axolotl.prompt_strategies.dpo.load` (and as `soda_plugin.soda`).

    Returns:
        `(transform, map_kwargs)`: Axolotl calls `dataset.map(transform, **map_kwargs)` with
        the student's tokenizer bound to `tokenizer`. Row numbers in errors are exact
        where the host passes indices; otherwise they count rows in this map worker.
    """
    datasets = (cfg or {}).get("datasets") or [{}]
    entry = datasets[dataset_idx] if dataset_idx < len(datasets) else {}
    fields = SodaFields.from_dataset_config(entry, (cfg or {}).get("soda"))
    policy = bad_row_policy(cfg)
    source = entry.get("path")
    grpo = rl_method(cfg) == "grpo"
    map_kwargs: dict[str, Any] = {"batched": True, "remove_columns": "__all__"}

    if _host_passes_row_indices():

        def transform(batch, indices, tokenizer=None):
            return dpo_rows_to_triples(batch, indices, tokenizer, fields, policy, source, grpo)

        return transform, {**map_kwargs, "with_indices": True}

    seen = [0]  # rows this worker has transformed so far

    def transform_counting(batch, tokenizer=None):
        size = len(next(iter(batch.values()))) if batch else 0
        indices = list(range(seen[0], seen[0] + size))
        seen[0] += size
        return dpo_rows_to_triples(batch, indices, tokenizer, fields, policy, source, grpo)

    return transform_counting, map_kwargs

