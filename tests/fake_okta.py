"""A local fake of Okta's System Log API: a real HTTP server on a free port, in a thread.

What it serves follows docs/okta-system-log-api.md: ``GET /api/v1/logs`` (query semantics in
tests/fake_okta_logs.py), ``POST /oauth2/v1/token`` (client credentials with private_key_jwt, in
tests/fake_okta_auth.py), rate-limit headers with a small bucket per window and 429 when it is empty, an
optional 500 every Nth request, and a record of every request with secrets taken out.

    fake = FakeOkta(api_token="t0k3n").start()
    fake.add(events)                      # LogEvent dicts, as the System Log returns them
    ... point the poller at fake.base ...
    fake.requests                         # what the poller sent
    fake.stop()
"""

from __future__ import annotations

import hmac
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fake_okta_auth import OAuthError, TokenIssuer
from fake_okta_logs import BadRequest, EventLog

LOGS_PATH = "/api/v1/logs"
TOKEN_PATH = "/oauth2/v1/token"


@dataclass(frozen=True)
class Request:
    """One request as the fake saw it; Authorization keeps only its scheme, the client assertion is dropped."""

    method: str
    path: str
    target: str  # path and query exactly as sent, to check that a next link was followed verbatim
    query: dict[str, list[str]]
    headers: dict[str, str]
    form: dict[str, str]
    status: int


@dataclass
class RateBucket:
    """Okta's per-endpoint bucket: ``limit`` requests per ``window`` seconds, reset given in epoch seconds."""

    limit: int
    window: float
    reset: int = 0
    used: int = 0

    def take(self, now: float) -> bool:
        if now >= self.reset:
            self.reset, self.used = math.ceil(now + self.window), 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def headers(self) -> dict[str, str]:
        return {"X-Rate-Limit-Limit": str(self.limit), "X-Rate-Limit-Remaining": str(self.limit - self.used),
                "X-Rate-Limit-Reset": str(self.reset)}


@dataclass
class FakeOkta:
    """``api_token``: the SSWS token accepted (None: no SSWS). ``rate_limit`` per ``rate_window`` seconds
    for /api/v1/logs. ``fail_every``: every Nth logs request answers 500 (E0000009, Okta's timeout).
    ``clock``: epoch seconds, for the Date header, rate windows, token and assertion expiry."""

    api_token: str | None = None
    rate_limit: int = 50
    rate_window: float = 60.0
    fail_every: int | None = None
    clock: Callable[[], float] = time.time
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.log = EventLog()
        self.oauth = TokenIssuer(clock=lambda: self.clock())
        self.bucket = RateBucket(self.rate_limit, self.rate_window)
        self.forbidden = False  # True: valid credentials but no admin role (403 E0000006)
        self._concurrency_429 = 0
        self._logs_requests = 0
        self._lock = threading.Lock()

    # -- what tests call -------------------------------------------------------------------------------
    def start(self) -> FakeOkta:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._handle(self, b"")

            def do_POST(self) -> None:
                owner._handle(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def date_time_string(self, timestamp: float | None = None) -> str:
                return super().date_time_string(owner.clock() if timestamp is None else timestamp)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return self.base + TOKEN_PATH

    def add(self, events: list[dict[str, Any]], persisted: datetime | None = None) -> None:
        self.log.add(events, persisted)

    def expire_cursors(self) -> None:
        """Every ``after`` cursor handed out so far becomes too old (400), as after a long outage."""
        self.log.expire_cursors()

    def concurrency_429(self, times: int) -> None:
        """The next ``times`` logs requests get a concurrency 429: Limit and Remaining 0, Reset an estimate."""
        with self._lock:
            self._concurrency_429 = times

    def register_client(self, client_id: str, public_pem: str, *, kid: str | None = None,
                        scopes: tuple[str, ...] = ("okta.logs.read",)) -> None:
        self.oauth.register(client_id, public_pem, kid=kid, scopes=scopes)

    def to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- serving ---------------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        split = urlsplit(handler.path)
        query = parse_qs(split.query, keep_blank_values=True)
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        auth = handler.headers.get("Authorization", "")
        if handler.command == "GET" and split.path == LOGS_PATH:
            status, headers, payload = self._logs(query, auth)
        elif handler.command == "POST" and split.path == TOKEN_PATH:
            status, headers, payload = self._token(form)
        else:
            status, headers, payload = 404, {}, _error("E0000022", "The endpoint does not exist.")
        safe_headers = {k.lower(): v for k, v in handler.headers.items()}
        if "authorization" in safe_headers:
            safe_headers["authorization"] = auth.split(" ", 1)[0] + " <redacted>"
        safe_form = {k: ("<redacted>" if k == "client_assertion" else v) for k, v in form.items()}
        with self._lock:
            self.requests.append(Request(handler.command, split.path, handler.path, query, safe_headers,
                                         safe_form, status))
        raw = json.dumps(payload).encode()
        handler.send_response(status)
        for name, value in headers.items():
            if name == "Link":
                for link in value.split("\n"):
                    handler.send_header("Link", link)
            else:
                handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    def _logs(self, query: dict[str, list[str]], auth: str) -> tuple[int, dict[str, str], Any]:
        now = self.clock()
        with self._lock:
            self._logs_requests += 1
            count = self._logs_requests
            if self._concurrency_429 > 0:
                self._concurrency_429 -= 1
                return 429, {"X-Rate-Limit-Limit": "0", "X-Rate-Limit-Remaining": "0",
                             "X-Rate-Limit-Reset": str(math.ceil(now + 1))}, _rate_error()
            allowed = self.bucket.take(now)
            rate = self.bucket.headers()
        if not allowed:
            return 429, rate, _rate_error()
        problem = self._auth_problem(auth)
        if problem is not None:
            return problem[0], rate, problem[1]
        if self.fail_every and count % self.fail_every == 0:
            return 500, rate, _error("E0000009", "Internal Server Error")
        params = {k: v[-1] for k, v in query.items()}
        try:
            page = self.log.page(self.base, params, datetime.fromtimestamp(now, UTC))
        except BadRequest as exc:
            return 400, rate, exc.body()
        links = f'<{page.self_url}>; rel="self"'
        if page.next_url is not None:
            links += f'\n<{page.next_url}>; rel="next"'
        return 200, {**rate, "Link": links}, page.events

    def _auth_problem(self, auth: str) -> tuple[int, Any] | None:
        """SSWS (constant-time compare) or a bearer token from the token endpoint; then the admin role."""
        scheme, _, credential = auth.partition(" ")
        status: int | None = 401
        if scheme == "SSWS" and self.api_token is not None:
            status = None if hmac.compare_digest(credential.encode(), self.api_token.encode()) else 401
        elif scheme == "Bearer" and credential:
            found = self.oauth.bearer_problem(credential)
            status = None if found is None else found[0]
        if status is None and self.forbidden:
            status = 403
        if status is None:
            return None
        if status == 403:
            return 403, _error("E0000006", "You do not have permission to perform the requested action")
        return 401, _error("E0000011", "Invalid token provided")

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        try:
            return 200, {"Cache-Control": "no-store"}, self.oauth.exchange(form, self.token_url)
        except OAuthError as exc:
            return exc.status, {}, exc.body()


def _error(code: str, summary: str) -> dict[str, Any]:
    return {"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaefake",
            "errorCauses": []}


def _rate_error() -> dict[str, Any]:
    return _error("E0000047", "API call exceeded rate limit due to too many requests.")
