"""Real test doubles for delivery: an HTTP server that records requests, an SMTP server, sample alerts."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sentinel.alert_context import AlertContext
from sentinel.model import Alert, Severity


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CaptureServer:
    """Records every request. ``fail(path_prefix, n)`` makes the next n matching requests answer 500.

    Slack's webhook check needs 200 with body ``ok``; PagerDuty wants 202; anything else gets 200.
    """

    requests: list[Captured] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_request: Callable[[Captured], None] | None = None

    def start(self) -> CaptureServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = Captured(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                               self.rfile.read(length))
                status, body = owner._answer(req)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _answer(self, req: Captured) -> tuple[int, bytes]:
        with self.lock:
            self.requests.append(req)
            for prefix, left in self.failures.items():
                if req.path.startswith(prefix) and left > 0:
                    self.failures[prefix] = left - 1
                    return 500, b"boom"
        if self.on_request:
            self.on_request(req)
        if req.path.startswith("/services/"):
            return 200, b"ok"
        if req.path.startswith("/v2/enqueue"):
            return 202, b'{"status":"success","message":"Event processed"}'
        return 200, b"{}"

    def fail(self, path_prefix: str, times: int) -> None:
        with self.lock:
            self.failures[path_prefix] = times

    def to(self, path_prefix: str) -> list[Captured]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SmtpCapture:
    """A real SMTP server (aiosmtpd) on a free port that keeps every message it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        owner = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                owner.messages.append(msg)
                return "250 OK"

        self.port = free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpCapture:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def url(self) -> str:
        return (f"mailto://127.0.0.1:{self.port}?from=Sentinel<alerts@example.org>&to=oncall@example.org"
                "&mode=insecure")


def body_text(message: EmailMessage, subtype: str) -> str:
    """The ``text/<subtype>`` body of a captured mail; fails when the mail has none."""
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part in {message['Subject']!r}"
    return str(part.get_content())


def sample_alert(**overrides: Any) -> Alert:
    context: dict[str, Any] = {
        "event_type": "user.account.privilege.grant",
        "actor": {"alternateId": "mallory@example.com", "displayName": "Mallory Admin"},
        "targets": [
            {"type": "User", "alternateId": "bob@example.com", "displayName": "Bob Builder"},
            {"type": "ROLE", "alternateId": "SUPER_ADMIN", "displayName": "Super administrator"},
        ],
        "client_ip": "203.0.113.9",
        "city": "Lisbon",
        "country": "Portugal",
        "user_agent": "Mozilla/5.0 (Macintosh) Firefox/133.0",
        "outcome_result": "SUCCESS",
        "outcome_reason": None,
        "published": "2026-11-26T10:15:30.123Z",
        "event_uuid": "f1e2d3c4-0000-4000-8000-000000000001",
        "runbook": "Confirm the grant with the actor's manager; revoke it if unexpected.",
        "references": ["https://attack.mitre.org/techniques/T1098/"],
        "tags": ["attack.t1098"],
    }
    context.update(overrides.pop("context", {}))
    moment = datetime(2026, 11, 26, 10, 15, 30, tzinfo=UTC)
    fields: dict[str, Any] = {
        "key": "okta-admin-grant:bob@example.com:1",
        "rule_id": "okta-admin-grant",
        "severity": Severity.CRITICAL,
        "title": "Super administrator granted",
        "summary": "Mallory Admin granted Super administrator to Bob Builder",
        "group_key": "bob@example.com",
        "first_seen": moment,
        "last_seen": moment,
        "count": 1,
        "event_uuids": ("f1e2d3c4-0000-4000-8000-000000000001",),
        # The stored JSON form, read back as the store does: overrides may be any (hostile) values.
        "context": AlertContext.from_dict(context),
    }
    fields.update(overrides)
    return Alert(**fields)
