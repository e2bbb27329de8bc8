"""Loggers for soda_plugin that stay visible inside `axolotl train`.

Axolotl's logging config drops INFO records of loggers outside the `axolotl` namespace
(a filter added to every logger it creates). soda's own progress messages (which stage
runs and why, how many rows were skipped) must reach the user, so the `soda_plugin`
loggers get their own handler and no such filter. INFO is printed by rank 0 only.
"""

from __future__ import annotations

import logging
import os
import sys

_ROOT = "soda_plugin"


class _MainRankInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or os.environ.get("RANK", "0") == "0"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (pytest and tee swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_root() -> None:
    root = logging.getLogger(_ROOT)
    if getattr(root, "_soda_configured", False):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] [%(name)s] %(message)s"))
    handler.addFilter(_MainRankInfo())
    root.addHandler(handler)
    root.setLevel(os.environ.get("SODA_LOG_LEVEL", "INFO").upper())
    root.propagate = False
    root._soda_configured = True  # type: ignore[attr-defined]


def get_logger(name: str) -> logging.Logger:
    _configure_root()
    logger = logging.getLogger(name)
    logger.filters.clear()
    return logger
