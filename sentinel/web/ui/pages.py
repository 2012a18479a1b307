"""The triage page's views: alerts (filtered, charted), one alert (as each channel renders it, its events,
its delivery attempts, acknowledge, "silence alerts like this"), rules and health. Each handler gets the
request and the logged-in user; app.py checks the login and the CSRF token first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from sentinel.delivery.apprise_channel import render_options
from sentinel.model import Severity, parse_timestamp
from sentinel.rules.durations import duration_seconds
from sentinel.rules.sources import rule_source
from sentinel.store import AlertFilter
from sentinel.store.deliveries import alert_from_row
from sentinel.store.triage import STATUSES
from sentinel.web.ui import auth
from sentinel.web.ui.chart import rule_chart
from sentinel.web.ui.silence_pages import SilencePages
from sentinel.web.ui.sources import TriageSources
from sentinel.web.ui.views import event_fields, renderings, silence_matchers

Handler = Callable[[Request, str], Awaitable[Response]]
PAGE_SIZE = 200
MAX_EVENTS_SHOWN = 20
SEVERITIES = tuple(s.label for s in Severity)


def parse_time(text: str, now: datetime) -> datetime:
    """``30m``, ``2h``, ``7d`` (ago) or an ISO-8601 time; ValueError otherwise."""
    try:
        return now - timedelta(seconds=duration_seconds(text.strip().lower()))
    except ValueError:
        return parse_timestamp(text.strip())


class Pages:
    def __init__(self, sources: TriageSources, views: Jinja2Templates) -> None:
        self.sources = sources
        self.views = views

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [*SilencePages(self.sources, self.page).routes(),
            ("/ui/", "GET", self.alerts),
            ("/ui/alerts/{alert_id:int}", "GET", self.alert),
            ("/ui/alerts/{alert_id:int}/ack", "POST", self.acknowledge),
            ("/ui/rules", "GET", self.rules),
            ("/ui/health", "GET", self.health),
        ]

    def page(self, request: Request, name: str, user: str, status: int = 200, **context: Any) -> Response:
        return self.views.TemplateResponse(request, name, {
            "user": user, "csrf": auth.csrf_token(request), "path": request.url.path, **context},
            status_code=status)

    async def alerts(self, request: Request, user: str) -> Response:
        now = self.sources.clock.now()
        query = request.query_params
        problems: list[str] = []
        shown = {key: query.get(key, "").strip()[:200] for key in ("rule", "severity", "status", "since", "until")}

        def time_of(key: str) -> datetime | None:
            if not shown[key]:
                return None
            try:
                return parse_time(shown[key], now)
            except ValueError:
                problems.append(f"{key}: use e.g. 30m, 2h, 7d or an ISO-8601 time")
                return None

        severity = Severity.parse(shown["severity"]) if shown["severity"] in SEVERITIES else None
        status = shown["status"] if shown["status"] in STATUSES else None
        where = AlertFilter(rule=shown["rule"] or None, severity=severity, status=status,
                            since=time_of("since"), until=time_of("until"))
        store = self.sources.store
        rows = await store.triage_alerts(where, PAGE_SIZE)
        counts = await store.alert_counts_by_rule(now - timedelta(hours=24))
        return self.page(request, "alerts.html", user, alerts=rows, chart=rule_chart(counts), filters=shown,
                         problems=problems, severities=SEVERITIES, statuses=STATUSES,
                         rules=sorted({r.id for r in self.sources.rules()} | set(counts)), page_size=PAGE_SIZE)

    async def alert(self, request: Request, user: str) -> Response:
        alert_id = int(request.path_params["alert_id"])
        store = self.sources.store
        row = await store.get_alert(alert_id)
        if row is None:
            return PlainTextResponse(f"no alert {alert_id}", status_code=404)
        alert = alert_from_row(row)
        uuids = list(alert.event_uuids[:MAX_EVENTS_SHOWN])
        found = await store.events_by_uuid(uuids)
        events = [found[u] for u in uuids if u in found]
        settings = self.sources.settings()
        options = render_options(settings.delivery.timezone, settings.okta.org_url)
        rule = next((r for r in self.sources.rules() if r.id == alert.rule_id), None)
        return self.page(
            request, "alert.html", user, alert=alert, row=row,
            events=[(e, event_fields(e.data)) for e in events], missing=len(uuids) - len(events),
            more=max(0, len(alert.event_uuids) - MAX_EVENTS_SHOWN),
            deliveries=await store.deliveries_for_alert(alert_id),
            renderings=renderings(alert, self.sources.channels(), options),
            matchers=silence_matchers(rule, [e.data for e in events]))

    async def acknowledge(self, request: Request, user: str) -> Response:
        alert_id = int(request.path_params["alert_id"])
        await self.sources.store.acknowledge(alert_id, user, self.sources.clock.now())
        return RedirectResponse(f"/ui/alerts/{alert_id}", status_code=303)

    async def rules(self, request: Request, user: str) -> Response:
        now = self.sources.clock.now()
        activity = await self.sources.store.rule_activity(now - timedelta(days=7))
        polling = self.sources.settings().okta_api is not None
        rows = [{"id": r.id, "severity": r.severity.label, "source": rule_source(r, polling),
                 "event_types": ", ".join(r.event_types),
                 "last_fired": activity.get(r.id, (None, 0))[0], "week": activity.get(r.id, (None, 0))[1],
                 "enabled": r.enabled} for r in sorted(self.sources.rules(), key=lambda r: r.id)]
        return self.page(request, "rules.html", user, rules=rows)

    async def health(self, request: Request, user: str) -> Response:
        queues = await self.sources.queues()
        per_channel = await self.sources.store.deliveries_by_channel()
        channels = {name: per_channel.get(name, {"pending": 0, "dead": 0}) for name in self.sources.channels()}
        channels.update({name: counts for name, counts in per_channel.items() if name not in channels})
        last_hook = max((t for t in (queues.last_received, queues.last_in_inbox) if t), default=None)
        return self.page(request, "health.html", user, checks=self.sources.ready_checks(), queues=queues,
                         last_hook=last_hook, poll=self.sources.poll_state(), channels=channels,
                         reload=self.sources.last_reload())
