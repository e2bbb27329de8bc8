"""The evaluation prompt sets of the paper, as one typed list per benchmark.

SODA (like GAD) reports the GPT-4o Score on LMSYS (in distribution: the held-out split of
the GAD data) and on the MiniLLM test sets Dolly, SelfInst and Vicuna (out of
distribution). `BENCHMARKS` is the one table of where each set lives on the Hub and which
columns hold what. The Hub ids are the public copies (GAD's LMSYS data; MiniLLM's
`valid.jsonl` test files); their column names are facts to verify on first download, so
each spec lists the candidate columns in order and a row is read from the first one
present.

A local `.jsonl`, `.json` (JSON lines or one JSON array) or `.parquet` file overrides
the Hub. It may use the benchmark's native columns (Dolly `instruction`/`context`/
`response`, MiniLLM `instruction`/`input`/`output` or `prompt`, Vicuna `text`/`question`)
or a `messages` list of `{role, content}` turns (a final assistant turn becomes the
reference). A row that cannot be read is an error naming the file, row and field; with
`on_bad_row="skip"` it is dropped and counted per reason in the log.

Examples:
    The Dolly row `{"instruction": "Name a prime.", "context": "Primes: 2, 3", "response": "2"}`
    reads as `EvalPrompt("dolly", prompt_id(messages), messages, reference="2")` with
    `messages == [{"role": "user", "content": "Name a prime.\\n\\nPrimes: 2, 3"}]`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .log import get_logger
from .format.prompt_id import prompt_id as compute_prompt_id

LOG = get_logger(__name__)

ROLES = ("system", "user", "assistant")
MESSAGES_COLUMN = "messages"


@dataclass(frozen=True)
class EvalPrompt:
    benchmark: str
    prompt_id: str  # soda_plugin.format.prompt_id.prompt_id(messages)
    messages: list[dict]  # [{"role": "user", "content": ...}] (+ optional system)
    reference: str | None  # the dataset's own reference answer, when it has one


@dataclass(frozen=True)
class EvalSetSpec:
    """Where one benchmark lives and how its rows read.

    Columns are tried in order; the first present with a non-empty string wins.
    `messages_columns` hold a list of `{role, content}` turns (the prompt itself).
    """

    hub_id: str
    split: str
    messages_columns: tuple[str, ...] = ()
    prompt_columns: tuple[str, ...] = ()
    context_columns: tuple[str, ...] = ()  # appended to the prompt after a blank line
    reference_columns: tuple[str, ...] = ()
    description: str = ""
    title: str = ""  # the column heading of the judged table


_INSTRUCTION_COLUMNS = ("instruction", "prompt", "text", "question")
_CONTEXT_COLUMNS = ("context", "input")
_REFERENCE_COLUMNS = ("response", "output", "reference", "answer")

BENCHMARKS: dict[str, EvalSetSpec] = {
    "lmsys": EvalSetSpec(
        title="LMSYS",
        hub_id="ytz20/LMSYS-Chat-GPT-5-Chat-Response", split="test",
        messages_columns=("content", MESSAGES_COLUMN), prompt_columns=_INSTRUCTION_COLUMNS,
        reference_columns=("teacher_response",) + _REFERENCE_COLUMNS,
        description="LMSYS-Chat-1M-Clean held-out split curated by GAD (~479 prompts); in distribution.",
    ),
    "dolly": EvalSetSpec(
        title="Dolly",
        hub_id="MiniLLM/dolly", split="validation",
        messages_columns=(MESSAGES_COLUMN,), prompt_columns=_INSTRUCTION_COLUMNS,
        context_columns=_CONTEXT_COLUMNS, reference_columns=_REFERENCE_COLUMNS,
        description="databricks-dolly-15k, the 500 prompts MiniLLM holds out (`valid.jsonl`).",
    ),
    "selfinst": EvalSetSpec(
        title="SelfInst",
        hub_id="MiniLLM/self-inst", split="validation",
        messages_columns=(MESSAGES_COLUMN,), prompt_columns=_INSTRUCTION_COLUMNS,
        context_columns=_CONTEXT_COLUMNS, reference_columns=_REFERENCE_COLUMNS,
        description="Self-Instruct user-oriented instructions (252) as packaged by MiniLLM.",
    ),
    "vicuna": EvalSetSpec(
        title="Vicuna",
        hub_id="MiniLLM/Vicuna", split="validation",
        messages_columns=(MESSAGES_COLUMN,), prompt_columns=_INSTRUCTION_COLUMNS,
        context_columns=_CONTEXT_COLUMNS, reference_columns=_REFERENCE_COLUMNS,
        description="The 80 Vicuna evaluation questions (lm-sys/vicuna-blog-eval) as packaged by MiniLLM.",
    ),
}


class BadEvalRowError(ValueError):
    """A row of an evaluation set that cannot become an `EvalPrompt`."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # rebuilt with its fields after crossing a process boundary
        return (type(self), (str(self), self.reason))


@dataclass
class EvalSetRead:
    """The prompts of one set and the rows that could not be read, per reason."""

    prompts: list[EvalPrompt] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    rows: int = 0


def normalize_prompt_text(text: str) -> str:
    """Runs of whitespace collapsed to one space, ends stripped, casefolded: two prompts
    that differ only in spacing or case compare equal."""
    return " ".join(str(text).split()).casefold()


def prompt_text(messages: list[dict]) -> str:
    """The user turns of a conversation joined: the text that overlap checks compare
    (through `normalize_prompt_text`), so a system prompt does not hide a match."""
    return "\n\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")


# A set of the user's own (any other name, always from a local file): the columns of
# every known set are tried, `content`/`messages` lists first.
LOCAL_SPEC = EvalSetSpec(
    hub_id="", split="", messages_columns=("content", MESSAGES_COLUMN), prompt_columns=_INSTRUCTION_COLUMNS,
    context_columns=_CONTEXT_COLUMNS, reference_columns=("teacher_response",) + _REFERENCE_COLUMNS,
    description="an evaluation set of your own, read from a local file",
)


def get_spec(name: str, path: str | os.PathLike | None = None) -> EvalSetSpec:
    """The spec of a known benchmark, or `LOCAL_SPEC` for another name given with a file."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    if path is not None:
        return LOCAL_SPEC
    raise ValueError(f"unknown evaluation set `{name}`; choose one of {sorted(BENCHMARKS)}, or give a local "
                     f"file for a set of your own (`{name}=PATH`).")


def _first_text(row: dict, columns: tuple[str, ...]) -> tuple[str, str] | None:
    for column in columns:
        value = row.get(column)
        if isinstance(value, str) and value.strip():
            return column, value
    return None


def _parse_messages(value: Any, where: str) -> tuple[list[dict], str | None]:
    if not isinstance(value, list) or not value:
        raise BadEvalRowError(f"{where}: must be a non-empty list of {{role, content}} messages.", "bad_messages")
    messages = []
    for turn, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise BadEvalRowError(f"{where}[{turn}]: needs `role` in {ROLES} and a string `content`, got {message!r:.120}.",
                                  "bad_messages")
        messages.append({"role": message["role"], "content": message["content"]})
    reference = None
    if messages[-1]["role"] == "assistant":
        reference = messages.pop()["content"]
    if not messages or messages[-1]["role"] != "user":
        raise BadEvalRowError(f"{where}: the prompt must end with a `user` turn.", "bad_messages")
    return messages, reference


def eval_prompt_from_row(benchmark: str, row: Any, where: str, spec: EvalSetSpec | None = None) -> EvalPrompt:
    """One `EvalPrompt` from a row in the benchmark's native columns or a messages list.

    Raises:
        BadEvalRowError: naming `where` and the field, with a `reason` for counting.
    """
    spec = spec or get_spec(benchmark)
    if not isinstance(row, dict):
        raise BadEvalRowError(f"{where}: a row must be a JSON object, got {type(row).__name__}.", "not_an_object")
    reference = _first_text(row, spec.reference_columns)
    reference = reference[1] if reference else None
    column = next((c for c in spec.messages_columns if row.get(c) is not None), None)
    if column is not None:
        messages, final_turn = _parse_messages(row[column], f"{where}: `{column}`")
        reference = reference if reference is not None else final_turn
    else:
        prompt = _first_text(row, spec.prompt_columns)
        if prompt is None:
            expected = ", ".join(f"`{c}`" for c in spec.messages_columns + spec.prompt_columns)
            raise BadEvalRowError(f"{where}: no prompt; expected a non-empty one of {expected}.", "no_prompt")
        context = _first_text(row, spec.context_columns)
        text = prompt[1] if context is None else f"{prompt[1]}\n\n{context[1]}"
        messages = [{"role": "user", "content": text}]
    return EvalPrompt(benchmark, compute_prompt_id(messages), messages, reference)


def _iter_local_rows(path: Path) -> Iterator[Any]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            yield from json.loads(text)
            return
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                yield BadEvalRowError(f"{path}:{number}: not a JSON line ({error}).", "not_json")
    else:
        raise ValueError(f"unsupported evaluation file `{path}`: use `.jsonl`, `.json` or `.parquet`.")


def _iter_hub_rows(spec: EvalSetSpec) -> Iterator[Any]:
    import datasets

    yield from datasets.load_dataset(spec.hub_id, split=spec.split)


def read_eval_set(name: str, path: str | os.PathLike | None = None, *, on_bad_row: str = "error") -> EvalSetRead:
    """Like `load_eval_set`, also returning the skipped-row counts."""
    spec = get_spec(name, path)
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"`on_bad_row` must be `error` or `skip`, got {on_bad_row!r}.")
    source = str(path) if path is not None else f"{spec.hub_id}[{spec.split}]"
    rows = _iter_local_rows(Path(path)) if path is not None else _iter_hub_rows(spec)
    read = EvalSetRead()
    for index, row in enumerate(rows):
        read.rows += 1
        try:
            if isinstance(row, BadEvalRowError):
                raise row
            read.prompts.append(eval_prompt_from_row(name, row, f"{source} row {index}", spec))
        except BadEvalRowError as error:
            if on_bad_row == "error":
                raise BadEvalRowError(f"{error} Fix the row, or pass `on_bad_row='skip'` to drop and count it.",
                                      error.reason) from None
            read.skipped[error.reason] += 1
    if read.skipped:
        LOG.warning("evaluation set `%s` (%s): skipped %d of %d rows: %s", name, source,
                    sum(read.skipped.values()), read.rows, dict(read.skipped))
    return read


def load_eval_set(name: str, path: str | os.PathLike | None = None, *, on_bad_row: str = "error") -> list[EvalPrompt]:
    """The prompts of benchmark `name` (a key of `BENCHMARKS`).

    Args:
        name: `lmsys`, `dolly`, `selfinst` or `vicuna`; any other name is a set of your
            own and needs `path`.
        path: a local `.jsonl`/`.json`/`.parquet` file; without it the set is loaded from
            the Hub with `datasets.load_dataset(spec.hub_id, split=spec.split)`.
        on_bad_row: `error` (default) raises on the first unreadable row; `skip` drops
            such rows and logs their count per reason.

    Raises:
        BadEvalRowError: a row could not be read (names the file, row and field).
    """
    return read_eval_set(name, path, on_bad_row=on_bad_row).prompts


__all__ = ["BENCHMARKS", "BadEvalRowError", "EvalPrompt", "EvalSetRead", "EvalSetSpec", "load_eval_set",
           "normalize_prompt_text", "prompt_text", "read_eval_set"]
