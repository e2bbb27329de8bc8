"""Publishing a pair-builder output folder as a Hub dataset."""

from __future__ import annotations

import os

from ..client.hub_token import hub_token


def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Upload `folder` (data, card, report) to the dataset repo `repo_id`; returns its URL.

    The token comes from `$HF_TOKEN` only (`client.hub_token`), never from the cached Hub
    login; it is never written or logged.

    Raises:
        PermissionError: `HF_TOKEN` is unset, raised before any call to the Hub.
    """
    token = hub_token()
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                      commit_message="Add SODA preference pairs")
    return f"https://huggingface.co/datasets/{repo_id}"
