"""The silences view: list (with those ended in the last week, so the team sees what was muted), add
(pre-filled from an alert: "silence alerts like this"), expire. The rules of a silence are
sentinel/silences.py's, as for ``sentinel silence add``; the detector picks a new one up within seconds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sentinel.model import parse_timestamp
from sentinel.rules.durations import duration_seconds
from sentinel.silences import Silence, validate
from sentinel.web.ui.forms import read_form
from sentinel.web.ui.sources import TriageSources
from sentinel.web.ui.views import silence_matchers

# As `sentinel silence add`: a silence is for an incident or a known noise, not for ever.
MAX_SILENCE = timedelta(days=366)
MATCH_ROWS = 4  # blank matcher rows the form offers
Page = Callable[..., Response]


def silence_state(silence: Silence, now: datetime) -> str:
    return "active" if silence.active(now) else "pending" if now < silence.starts_at else "expired"


class SilencePages:
    def __init__(self, sources: TriageSources, page: Page) -> None:
        self.sources = sources
        self.page = page

    def routes(self) -> list[tuple[str, str, Callable[[Request, str], Any]]]:
        return [
            ("/ui/silences", "GET", self.silences),
            ("/ui/silences", "POST", self.add),
            ("/ui/silences/{silence_id:int}/expire", "POST", self.expire),
        ]

    async def silences(self, request: Request, user: str, problems: tuple[str, ...] = (),
                       draft: dict[str, Any] | None = None) -> Response:
        now = self.sources.clock.now()
        listed = await self.sources.store.list_silences(now)
        if draft is None:
            draft = await self._draft(request)
        rows = [(s, silence_state(s, now)) for s in listed]
        return self.page(request, "silences.html", user, status=400 if problems else 200, silences=rows,
                         draft=draft, problems=problems)

    async def _draft(self, request: Request) -> dict[str, Any]:
        """The form's initial values: blank, or from ``?alert=ID`` (its rule and what makes its group)."""
        draft: dict[str, Any] = {"rule": "", "matchers": [], "duration": "2h", "until": "", "comment": ""}
        alert_id = request.query_params.get("alert", "")
        if alert_id.isdigit():
            row = await self.sources.store.get_alert(int(alert_id))
            if row is not None:
                uuids = list(row["event_uuids"] or ())[:1]
                events = await self.sources.store.events_by_uuid(uuids)
                rule = next((r for r in self.sources.rules() if r.id == row["rule_id"]), None)
                draft.update(rule=row["rule_id"], comment=f"like alert {row['id']}: ",
                             matchers=silence_matchers(rule, [e.data for e in events.values()]))
        return draft

    async def add(self, request: Request, user: str) -> Response:
        form = await read_form(request)
        now = self.sources.clock.now()
        paths, values = form.getlist("match_path"), form.getlist("match_value")
        matchers = tuple((p.strip(), v.strip()) for p, v in zip(paths, values, strict=False) if p.strip() or v.strip())
        rule, comment = form.text("rule"), form.text("comment")
        duration, until = form.text("duration"), form.text("until")
        draft = {"rule": rule, "matchers": list(matchers), "duration": duration, "until": until, "comment": comment}
        problems: list[str] = []
        ends = now
        try:
            ends = parse_timestamp(until) if until else now + timedelta(seconds=duration_seconds(duration.lower()))
        except ValueError:
            problems.append("give how long (e.g. 30m, 2h, 1d) or until when (e.g. 2026-03-01T08:00:00Z)")
        if ends - now > MAX_SILENCE:
            problems.append(f"a silence may last at most {MAX_SILENCE.days} days")
        problems += validate(rule, matchers, now, ends, user, comment) if not problems else []
        if problems:
            return await self.silences(request, user, tuple(problems), draft)
        await self.sources.store.add_silence(Silence(None, rule, matchers, now, ends, user, comment, now))
        return RedirectResponse("/ui/silences", status_code=303)

    async def expire(self, request: Request, user: str) -> Response:
        await self.sources.store.expire_silence(int(request.path_params["silence_id"]), self.sources.clock.now())
        return RedirectResponse("/ui/silences", status_code=303)
