"""One client core for every call to an OpenAI-compatible API (teacher, judge):
bounded concurrency, retries with backoff and jitter that honour `Retry-After`, typed
errors, an append-only cache, and token accounting."""

from .cache import JsonlCache
from .options import add_client_options, client_settings, warn_if_key_missing
from .core import (ChatClient, ChatResult, ClientSettings, MalformedResponseError, RequestFailedError,
                   RequestRejectedError, Usage)

__all__ = ["ChatClient", "ChatResult", "ClientSettings", "JsonlCache", "MalformedResponseError",
           "RequestFailedError", "RequestRejectedError", "Usage", "add_client_options", "client_settings",
           "warn_if_key_missing"]
