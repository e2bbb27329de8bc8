"""A Hub that records calls instead of making them, and a cached `huggingface-cli login`.

soda's rule: the Hub token comes from `$HF_TOKEN` only. `cached_login_and_fake_hub` sets
up the case that rule exists for: no `HF_TOKEN`, but a token file in `$HF_HOME` that
`huggingface_hub` itself would fall back to (checked, so the test proves something), and
`huggingface_hub.HfApi` replaced by a recorder. No network call is ever made.
"""

from __future__ import annotations

from pathlib import Path

CACHED_TOKEN = "hf_CACHEDloginFAKE0123456789"  # a fake, never a real token


class FakeHub:
    """`calls`: one tuple per constructor or method call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        hub = self

        class FakeApi:
            def __init__(self, token=None, **kwargs):
                hub.calls.append(("HfApi", token))

            def create_repo(self, repo_id, **kwargs):
                hub.calls.append(("create_repo", repo_id, kwargs))

            def upload_folder(self, **kwargs):
                hub.calls.append(("upload_folder", kwargs["repo_id"], kwargs["repo_type"]))

            def create_commit(self, repo_id, operations, **kwargs):
                hub.calls.append(("create_commit", repo_id, sorted(op.path_in_repo for op in operations)))

        self.api = FakeApi


def cached_login_and_fake_hub(tmp_path: Path, monkeypatch) -> FakeHub:
    import huggingface_hub
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    home.mkdir()
    (home / "token").write_text(CACHED_TOKEN)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))  # read from HF_HOME at import
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    assert huggingface_hub.get_token() == CACHED_TOKEN, "huggingface_hub must see the cached login here"
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", hub.api)
    return hub
