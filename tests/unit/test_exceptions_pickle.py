"""Every soda exception crosses a process boundary (a dataset-map worker, a spawned rank)
with its type, message and fields: an exception that cannot be rebuilt from its pickle
kills the pool's result thread and the parent waits forever."""

import ast
import pickle
from pathlib import Path

import pytest

import soda_plugin
from soda_plugin.format.chat_format import ChatTemplateError
from soda_plugin.cost.table import CostFileError
from soda_plugin.client.core import MalformedResponseError, RequestFailedError, RequestRejectedError
from soda_plugin.evalsets import BadEvalRowError
from soda_plugin.verdict.template import UnparsableVerdictError
from soda_plugin.miniature.pipeline import StageError
from soda_plugin.pairs.builder import NoPairsError
from soda_plugin.pairs.judge_filter import UnjudgedPairsError
from soda_plugin.format.rows import BadRowError, BadRowReason
from soda_plugin.share.publish import SecretInBundleError
from soda_plugin.snapshot.data_parallel import DataParallelError
from soda_plugin.snapshot.ray_launcher import RaySnapshotError, RayUnavailableError
from soda_plugin.snapshot.runner import SnapshotMismatchError
from soda_plugin.train.reference_pass import ReferenceLogpsMissingError
from soda_plugin.train.merge import QuantizedAdapterError
from soda_plugin.train.reference_store import ReferenceStoreMismatchError
from soda_plugin.train.stages import WarmupConfigChangedError
from soda_plugin.teacher.output import OutputMismatchError
from soda_plugin.teacher.batch import BatchWaitError

INSTANCES = [
    (BadRowError(3, "teacher_response", BadRowReason.EMPTY, "is empty", "data.jsonl:4"),
     ("index", "field", "reason", "detail", "where")),
    (RequestFailedError("gave up", 6, "timeout: read"), ("attempts", "last_error")),
    (RequestRejectedError("rejected", 1, "bad_request: 400"), ("attempts", "last_error")),
    (DataParallelError("rank 1 died", {0: 0, 1: -9}), ("exit_codes",)),
    (BadEvalRowError("row 2 has no prompt", "no_prompt"), ("reason",)),
    (MalformedResponseError("no choices"), ()),
    (ChatTemplateError("no template"), ()),
    (UnparsableVerdictError("no scores"), ()),
    (StageError("snapshot failed; see log"), ()),
    (RaySnapshotError("no shard in 60 s"), ()),
    (RayUnavailableError("pip install ray"), ()),
    (QuantizedAdapterError("soda: `adapter: qlora` is not supported"), ()),
    (NoPairsError("nothing kept"), ()),
    (UnjudgedPairsError("2 of 9 judged pairs have no verdict"), ()),
    (SecretInBundleError("secret"), ()),
    (SnapshotMismatchError("other settings"), ()),
    (WarmupConfigChangedError("changed"), ()),
    (ReferenceLogpsMissingError("3 of 8 train pairs"), ()),
    (ReferenceStoreMismatchError("weights: a -> b"), ()),
    (OutputMismatchError("other settings"), ()),
    (BatchWaitError("2 batches still unfinished", ("batch-1", "batch-2")), ("batch_ids",)),
    (CostFileError("runs/x: no cost.json in it or its sub-folders"), ()),
]


def _declared_exception_classes() -> set[str]:
    names = set()
    for path in Path(soda_plugin.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", getattr(base, "attr", "")).endswith(("Error", "Exception")) for base in node.bases
            ):
                names.add(node.name)
    return names


def test_the_table_covers_every_exception_soda_declares():
    assert {type(error).__name__ for error, _ in INSTANCES} == _declared_exception_classes()


@pytest.mark.parametrize("error, fields", INSTANCES, ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "")
def test_exception_survives_pickling_with_its_fields(error, fields):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    for name in fields:
        assert getattr(copy, name) == getattr(error, name)
