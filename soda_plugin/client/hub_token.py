"""The Hugging Face Hub token soda uploads with: `$HF_TOKEN`, and nothing else.

`soda pairs --push-to-hub` and `soda share` both read it here and hand it to
`huggingface_hub` explicitly (`HfApi(token=...)`), so the login cached by
`huggingface-cli login` (`$HF_HOME/token`) is never used: what a push runs as is decided
by the environment of the command, which a user can see. The value is never logged,
printed or written.
"""

from __future__ import annotations

import os

TOKEN_ENV = "HF_TOKEN"


def hub_token() -> str:
    """The Hub token from `$HF_TOKEN`.

    Returns:
        The token, stripped of surrounding whitespace.

    Raises:
        PermissionError: `HF_TOKEN` is unset or empty; the message names it and says how to set it.
    """
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise PermissionError(
            f"set `{TOKEN_ENV}` (a Hub write token) in the environment to push; soda reads the token from "
            f"`{TOKEN_ENV}` only and never uses the login cached by `huggingface-cli login`."
        )
    return token
