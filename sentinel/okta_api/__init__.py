"""Okta's System Log API client (issue 13): HTTP through httpx, SSWS or OAuth ``private_key_jwt``, rate
limits, retries. The poll loop (``sentinel.service``) and ``sentinel check --probe`` use it; only the daemon's
main process holds its credential."""

from sentinel.okta_api.client import LogPage, SystemLogClient, event_type_filter, okta_time, request_lock_path
from sentinel.okta_api.credentials import ApiCredentials, load_api_credentials
from sentinel.okta_api.errors import ApiError, AuthFailed, CursorRejected, RetryableError

__all__ = [
    "ApiCredentials",
    "ApiError",
    "AuthFailed",
    "CursorRejected",
    "LogPage",
    "RetryableError",
    "SystemLogClient",
    "event_type_filter",
    "load_api_credentials",
    "okta_time",
    "request_lock_path",
]
