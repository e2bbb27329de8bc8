"""The command-line options of every API client (teacher, judge, pair filter, the snapshot's
`openai` backend): their defaults are `ClientSettings`' and are declared there only."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from ..log import get_logger
from .core import ClientSettings

LOG = get_logger(__name__)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ClientSettings) if f.default is not dataclasses.MISSING}
_HELP = {
    "api_key_env": "environment variable holding the API key (never logged or written)",
    "concurrency": "requests in flight",
    "timeout_s": "seconds per request attempt",
    "max_attempts": "attempts per request (429/5xx/timeouts retried)",
}
_TYPES = {"api_key_env": str, "concurrency": int, "timeout_s": float, "max_attempts": int}


def _dest(prefix: str, name: str) -> str:
    return f"{prefix.replace('-', '_')}{name}"


def add_client_options(parser: Any, prefix: str = "", only: tuple[str, ...] = tuple(_HELP),
                       aliases: dict[str, str] | None = None) -> None:
    """Add `--{prefix}api-key-env`, `--{prefix}concurrency`, `--{prefix}timeout-s` and
    `--{prefix}max-attempts` (those named in `only`) to a parser or argument group;
    `aliases` maps a setting to an extra flag kept for older command lines."""
    for name in only:
        flags = [f"--{prefix}{name.replace('_', '-')}"]
        if aliases and name in aliases:
            flags.append(aliases[name])
        parser.add_argument(*flags, dest=_dest(prefix, name), type=_TYPES[name], default=_DEFAULTS[name],
                            help=f"{_HELP[name]} (default: {_DEFAULTS[name]})")


def client_settings(args: argparse.Namespace, *, base_url: str, model: str, prefix: str = "") -> ClientSettings:
    """The `ClientSettings` of the options `add_client_options(parser, prefix)` added."""
    given = {name: getattr(args, _dest(prefix, name)) for name in _HELP if hasattr(args, _dest(prefix, name))}
    return ClientSettings(base_url=base_url, model=model, **given)


def warn_if_key_missing(settings: ClientSettings, caller: str, flag: str) -> None:
    """A warning, not an error: a local server needs no key; a hosted API will answer 401."""
    if not os.environ.get(settings.api_key_env):
        LOG.warning("`$%s` is not set: %s is called without a key (fine for a local server; set it, or name "
                    "another variable with `%s`, for a hosted API).", settings.api_key_env, caller, flag)
