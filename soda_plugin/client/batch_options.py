"""The `--batch` command-line options of every command that can go through the batch API
(`soda judge score`, `soda pairs --judge-filter`; `soda teacher` declares the same flags):
their defaults are `BatchOptions`' and are declared there only."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .batch_core import BatchOptions

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(BatchOptions)}
_FLAGS = {  # setting -> (flag, type, help)
    "poll_s": ("--batch-poll", float, "seconds between polls of the open batches"),
    "max_wait_s": ("--batch-max-wait", float, "seconds this run waits for its batches in all, then exits 4 "
                                             "(re-run to resume them)"),
    "max_requests": ("--batch-max-requests", int, "requests per uploaded file"),
    "max_bytes": ("--batch-max-bytes", int, "bytes per uploaded file"),
    "rounds": ("--batch-rounds", int, "batches a request is sent in per run (failed/expired items are resubmitted)"),
    "discount": ("--batch-discount", float, "batch price / online price, applied to the online prices given "
                                           "(1: they are batch prices)"),
}


def add_batch_options(parser: Any, what: str) -> None:
    """`--batch` (send `what` through the batch API) and the `--batch-*` settings."""
    parser.add_argument("--batch", action="store_true",
                        help=f"send {what} through the provider's batch API (files + batches): about half the "
                             "price, answers within 24 h; journaled, a re-run resumes and pays nothing twice")
    for name, (flag, kind, text) in _FLAGS.items():
        parser.add_argument(flag, dest=f"batch_{name}", type=kind, default=_DEFAULTS[name],
                            metavar=flag.removeprefix("--batch-").replace("-", "_").upper(),
                            help=f"{text} (default: {_DEFAULTS[name]})")


def batch_options(args: argparse.Namespace) -> BatchOptions | None:
    """The `BatchOptions` of `--batch`, or None without it (checked: out of range raises)."""
    if not args.batch:
        return None
    options = BatchOptions(**{name: getattr(args, f"batch_{name}") for name in _FLAGS})
    options.check()
    return options


__all__ = ["add_batch_options", "batch_options"]
