"""Upload a bundle and its card to a Hub model repo, or show exactly what would be uploaded."""

from __future__ import annotations

import io
from typing import Sequence

from ..client.hub_token import hub_token
from ..pairs.card import mask_secrets
from .bundle import BundleFile

CARD = "README.md"


class SecretInBundleError(ValueError):
    """A file to publish holds the value of a credential-like environment variable."""


def _check_no_secret(files: Sequence[BundleFile], card: str) -> None:
    texts = {CARD: card}
    for f in files:
        if f.local.suffix in (".yml", ".yaml", ".json", ".jinja", ".txt") and f.size < 10_000_000:
            texts[f.path_in_repo] = f.local.read_text(errors="replace")
    leaking = [name for name, text in texts.items() if mask_secrets(text) != text]
    if leaking:
        raise SecretInBundleError(
            f"{', '.join(leaking)} contain(s) the value of a credential-like environment variable; "
            "remove it from the file before publishing."
        )


def dry_run_report(repo_id: str, files: Sequence[BundleFile], card: str) -> str:
    lines = [f"would push to https://huggingface.co/{repo_id} (model repo):"]
    lines += [f"  {f.path_in_repo}  <- {f.local}  ({f.size} bytes)" for f in files]
    lines += [f"  {CARD}  <- generated model card ({len(card.encode())} bytes)", "", f"--- {CARD} ---", card]
    return mask_secrets("\n".join(lines))


def publish(repo_id: str, files: Sequence[BundleFile], card: str, *, private: bool = False,
            dry_run: bool = False) -> str:
    """Push `files` and `card` in one commit; with `dry_run`, return the report instead.

    The token is read from `$HF_TOKEN` only (`client.hub_token`, never the cached Hub
    login), handed to `huggingface_hub`, and never printed or written.

    Raises:
        PermissionError: `HF_TOKEN` is unset (not for `dry_run`), before any call to the Hub.
    """
    _check_no_secret(files, card)
    if dry_run:
        return dry_run_report(repo_id, files, card)
    token = hub_token()
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local)) for f in files]
    operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=io.BytesIO(card.encode())))
    api.create_commit(repo_id, operations=operations, repo_type="model",
                      commit_message="Add SODA-distilled model, card and recipe bundle")
    return f"https://huggingface.co/{repo_id}"
