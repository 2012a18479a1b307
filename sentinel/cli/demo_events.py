"""Realistic sample Okta deliveries for ``sentinel demo``: each should raise an alert with the default pack."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sentinel.model import format_timestamp

_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
       "Chrome/131.0.0.0 Safari/537.36")


def _event(event_type: str, at: datetime, actor: dict[str, str], targets: list[dict[str, str]],
           result: str = "SUCCESS", reason: str | None = None, ip: str = "198.51.100.23",
           city: str = "Amsterdam", country: str = "Netherlands", debug: dict[str, str] | None = None,
           display: str = "") -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()), "published": format_timestamp(at), "eventType": event_type, "version": "0",
        "severity": "WARN" if result != "SUCCESS" else "INFO", "displayMessage": display,
        "actor": {"id": "00u" + uuid.uuid4().hex[:17], "type": "User", **actor},
        "client": {"ipAddress": ip, "userAgent": {"rawUserAgent": _UA, "os": "Mac OS X", "browser": "CHROME"},
                   "geographicalContext": {"city": city, "country": country}, "zone": "null", "device": "Computer"},
        "outcome": {"result": result, "reason": reason},
        "target": targets,
        "transaction": {"type": "WEB", "id": uuid.uuid4().hex[:20], "detail": {}},
        "debugContext": {"debugData": debug or {}},
        "authenticationContext": {"authenticationStep": 0, "externalSessionId": uuid.uuid4().hex[:24]},
        "securityContext": {}, "request": {"ipChain": []},
    }


def _user(login: str, name: str) -> dict[str, str]:
    return {"alternateId": login, "displayName": name}


def _target_user(login: str, name: str) -> dict[str, str]:
    return {"id": "00u" + uuid.uuid4().hex[:17], "type": "User", "alternateId": login, "displayName": name}


def demo_events(now: datetime) -> list[tuple[str, list[dict[str, Any]]]]:
    """(label, events) per delivery, stamped ``now`` so time windows line up."""
    jane = _user("jane.doe@example.com", "Jane Doe")
    suspicious = _event(
        "user.account.report_suspicious_activity_by_enduser", now, jane,
        [_target_user("jane.doe@example.com", "Jane Doe")], display="User report suspicious activity",
        debug={"suspiciousActivityEventType": "system.email.new_device_notification.sent_message",
               "suspiciousActivityEventIp": "203.0.113.77", "suspiciousActivityEventCity": "Lagos",
               "suspiciousActivityEventCountry": "Nigeria", "suspiciousActivityBrowser": "CHROME"})
    rate = _event(
        "system.org.rate_limit.warning", now, _user("svc-provisioning@example.com", "Provisioning bot"),
        [{"id": "/api/v1/users", "type": "URL Pattern", "alternateId": "/api/v1/users", "displayName": ""},
         {"id": "6b3a1e4c-0000-4000-8000-00000000b0c7", "type": "Bucket Uuid", "alternateId": "bucket"}],
        display="Rate limit warning",
        debug={"warningPercent": "60", "threshold": "600", "timeSpan": "1", "timeUnit": "MINUTES",
               "rateLimitScopeType": "ORG", "urlPattern": "/api/v1/users"})
    grant = _event(
        "user.account.privilege.grant", now, _user("it-admin@example.com", "IT Admin"),
        [_target_user("bob.builder@example.com", "Bob Builder"),
         {"id": "SUPER_ADMIN", "type": "ROLE", "alternateId": "SUPER_ADMIN", "displayName": "Super administrator"}],
        display="Grant user privilege", debug={"privilegeGranted": "Super administrator"})
    spray = [
        _event("user.session.start", now - timedelta(seconds=20 * (11 - i)),
               _user(f"user{i:02d}@example.com", f"User {i:02d}"), [], result="FAILURE",
               reason="INVALID_CREDENTIALS", ip="203.0.113.66", city="Sofia", country="Bulgaria",
               display="User login to Okta")
        for i in range(12)
    ]
    return [("suspicious-activity report", [suspicious]), ("org rate-limit warning", [rate]),
            ("Super administrator grant", [grant]), ("password spray (12 users, one IP)", spray)]


def envelope(events: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    return {
        "eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
        "source": "https://example.okta.com/api/v1/eventHooks/whodemo0000000000000",
        "eventId": str(uuid.uuid4()), "eventTime": format_timestamp(now), "contentType": "application/json",
        "data": {"events": events},
    }
