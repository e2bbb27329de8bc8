"""Publishing a pair-builder output folder as a Hub dataset."""

from __future__ import annotations

import os


def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Upload `folder` (data, card, report) to the dataset repo `repo_id`; returns its URL.

    The token comes from the `HF_TOKEN` environment variable only (or the cached login when
    unset); it is never written or logged.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=os.environ.get("HF_TOKEN"))
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                      commit_message="Add SODA preference pairs")
    return f"https://huggingface.co/datasets/{repo_id}"
