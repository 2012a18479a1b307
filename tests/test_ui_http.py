"""The triage page over HTTP: who gets in (login form, HTTP Basic, rate limit), CSRF, the security headers,
and what the pages show. The app runs in-process on a real store holding an alert the shipped rules made from
a real sample event; one test starts the real daemon and reads back what went through /hooks/okta."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import envelope, wait_for
from daemon import Daemon, free_port, write_config
from starlette.testclient import TestClient

from sentinel.clock import SystemClock
from sentinel.config import RulesSettings, Settings, load_config
from sentinel.delivery.apprise_channel import build_channels
from sentinel.delivery.routing import route
from sentinel.okta import parse_delivery
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.rules.model import RuleSet
from sentinel.secret import Secret
from sentinel.store import Store
from sentinel.web.ui.app import COOKIE, create_ui_app
from sentinel.web.ui.auth import LimitPolicy, LoginLimiter
from sentinel.web.ui.sources import ReloadState, TriageSources

ROOT = Path(__file__).parent.parent
# The real sample the shipped pack's tests use (stix-shifter's, see rules/data/README.md).
SAMPLE = ROOT / "rules" / "data" / "suspicious-activity-report.json"
PASSWORD = "correct horse battery staple"
HOSTILE = '<script>alert("owned")</script>'


def sample_event(uuid: str, display_name: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    event["uuid"] = uuid
    if display_name is not None:
        event["actor"]["displayName"] = display_name
    return event


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Ui:
    client: TestClient
    store: Store
    time: FakeTime
    alert_id: int


@pytest.fixture(scope="module")
def shipped_rules() -> RuleSet:
    """The shipped rule pack, loaded once for the module (each test gets a fresh engine state)."""
    return RuleEvaluator.from_settings(RulesSettings(paths=(ROOT / "rules",))).ruleset


def _record_alert(store: Store, settings: Settings, rules: RuleSet, event: dict[str, Any]) -> int:
    """Store the event and the alert the shipped rules make of it, as the detector does."""
    delivery = parse_delivery(json.dumps(envelope(event)).encode())
    evaluator = RuleEvaluator(rules, settings.rules.max_groups)
    now = SystemClock().now()

    async def run() -> int:
        await store.ingest(delivery.events, delivery.quarantined, now)
        alerts = [a for e in delivery.events for a in evaluator.evaluate(e, now)]
        assert alerts, "the shipped rules must alert on the sample"
        result = await store.record_evaluation([e.uuid for e in delivery.events], alerts,
                                               lambda a: route(a, settings.channels), {}, set(), now)
        return result.new_alerts[0]

    return asyncio.run(run())


@pytest.fixture
def ui(tmp_path: Path, shipped_rules: RuleSet) -> Iterator[Ui]:
    config = write_config(tmp_path, rules=str(ROOT / "rules"))
    settings = load_config(config)
    store = Store(settings.storage.path)
    store.start(SystemClock().now())
    alert_id = _record_alert(store, settings, shipped_rules, sample_event("ui-1", HOSTILE))
    channels = build_channels(settings)
    time = FakeTime()
    sources = TriageSources(
        password=Secret(PASSWORD), store=store, clock=SystemClock(), settings=lambda: settings,
        channels=lambda: channels, rules=lambda: shipped_rules.rules,
        ready_checks=lambda: {"store": True, "rules_loaded": True, "detector": True, "last_reload": True},
        queues=lambda: store.monitor_snapshot(list(channels), 0), last_reload=lambda: ReloadState(None, True))
    app = create_ui_app(sources, limiter=LoginLimiter(LimitPolicy(failures=3, window_seconds=60), clock=time))
    with TestClient(app, base_url="http://127.0.0.1:8081", follow_redirects=False) as client:
        yield Ui(client, store, time, alert_id)
    store.close()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "every form carries a CSRF token"
    return match.group(1)


def log_in(client: TestClient, name: str = "Dana", password: str = PASSWORD) -> Any:
    token = csrf_of(client.get("/ui/login").text)
    return client.post("/ui/login", data={"csrf": token, "name": name, "password": password, "next": "/ui/"})


def test_without_credentials_a_browser_is_sent_to_the_login_and_a_script_gets_401(ui: Ui) -> None:
    page = ui.client.get("/ui/", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=/ui/"
    for path in ("/ui/", f"/ui/alerts/{ui.alert_id}", "/ui/rules", "/ui/health"):
        answer = ui.client.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Basic ")
        assert "owned" not in answer.text


def test_http_basic_with_any_user_name_reads_the_pages(ui: Ui) -> None:
    for user in ("script", "anyone"):
        page = ui.client.get("/ui/", auth=(user, PASSWORD))
        assert page.status_code == 200
        assert f'href="/ui/alerts/{ui.alert_id}"' in page.text
    assert ui.client.get("/ui/", auth=("script", PASSWORD + "x")).status_code == 401


def test_the_login_form_gives_a_strict_httponly_session(ui: Ui) -> None:
    answer = log_in(ui.client)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith(f"{COOKIE}=") and "httponly" in cookie and "samesite=strict" in cookie
    assert "path=/ui" in cookie
    page = ui.client.get("/ui/")
    assert page.status_code == 200 and "Dana" in page.text


def test_a_wrong_password_is_refused_then_the_address_is_held_off(ui: Ui) -> None:
    for _ in range(3):
        wrong = log_in(ui.client, password="guess")
        assert wrong.status_code == 401 and "Wrong password" in wrong.text
        assert ui.client.get("/ui/").status_code == 401  # not logged in
    # Past the limit even the right password waits, by form and by Basic alike.
    held = log_in(ui.client)
    assert held.status_code == 429 and int(held.headers["retry-after"]) > 0
    assert ui.client.get("/ui/", auth=("x", PASSWORD)).status_code == 429
    ui.time.now += 61
    assert log_in(ui.client).status_code == 303


def test_failed_basic_attempts_count_too(ui: Ui) -> None:
    for _ in range(3):
        assert ui.client.get("/ui/", auth=("x", "guess")).status_code == 401
    assert ui.client.get("/ui/", auth=("x", PASSWORD)).status_code == 429


def test_a_form_without_its_csrf_token_is_rejected(ui: Ui) -> None:
    log_in(ui.client)
    ack = f"/ui/alerts/{ui.alert_id}/ack"
    assert ui.client.post(ack, data={}).status_code == 403
    assert ui.client.post(ack, data={"csrf": "forged"}).status_code == 403
    assert "Acknowledge</button>" in ui.client.get(f"/ui/alerts/{ui.alert_id}").text
    # Basic credentials alone (a browser may replay them cross-site) never make a form valid.
    assert TestClient(ui.client.app, base_url="http://127.0.0.1:8081").post(
        ack, data={"csrf": "x"}, auth=("x", PASSWORD)).status_code == 403
    # The login form needs its token too.
    assert ui.client.post("/ui/login", data={"password": PASSWORD}).status_code == 403


def test_acknowledge_records_who_and_when(ui: Ui) -> None:
    log_in(ui.client, name="Dana Scully")
    detail = ui.client.get(f"/ui/alerts/{ui.alert_id}")
    answer = ui.client.post(f"/ui/alerts/{ui.alert_id}/ack", data={"csrf": csrf_of(detail.text)})
    assert answer.status_code == 303
    after = ui.client.get(f"/ui/alerts/{ui.alert_id}").text
    assert "by Dana Scully at " in after and "Acknowledge</button>" not in after
    listed = ui.client.get("/ui/?status=acknowledged").text
    assert f'href="/ui/alerts/{ui.alert_id}"' in listed


def test_every_answer_carries_the_security_headers(ui: Ui) -> None:
    answers = [ui.client.get("/ui/login"), ui.client.get("/ui/"), ui.client.get("/ui/", auth=("x", PASSWORD)),
               ui.client.get(f"/ui/alerts/{ui.alert_id}", auth=("x", PASSWORD)), ui.client.get("/ui/static/style.css")]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_pages_carry_no_inline_script_or_style(ui: Ui) -> None:
    for path in ("/ui/login", "/ui/", f"/ui/alerts/{ui.alert_id}", "/ui/rules", "/ui/health"):
        html = ui.client.get(path, auth=("x", PASSWORD)).text
        assert "<script" not in html.lower(), path
        assert " style=" not in html and " on" + "click=" not in html, path


def test_after_login_only_a_page_of_ours_is_the_next_one(ui: Ui) -> None:
    for target, expected in (("/ui/rules", "/ui/rules"), ("https://evil.example/", "/ui/"),
                             ("//evil.example/ui/", "/ui/"), ("/ui/..//evil", "/ui/")):
        client = TestClient(ui.client.app, base_url="http://127.0.0.1:8081", follow_redirects=False)
        token = csrf_of(client.get("/ui/login").text)
        answer = client.post("/ui/login", data={"csrf": token, "password": PASSWORD, "next": target})
        assert answer.headers["location"] == expected, target


def test_the_alert_page_shows_channels_events_and_deliveries(ui: Ui) -> None:
    html = ui.client.get(f"/ui/alerts/{ui.alert_id}", auth=("x", PASSWORD)).text
    # The log channel's record, as the log channel writes it; the event's fields by rule path.
    assert "log://" in html and "JSON line" in html
    assert "<th>client.ipAddress</th><td>1.0.0.1</td>" in html
    assert "<th>target[0].alternateId</th><td>user@login.com</td>" in html
    assert "<th>channel</th>" in html and "<td>log</td>" in html


def test_a_hostile_display_name_is_shown_as_text(ui: Ui) -> None:
    html = ui.client.get(f"/ui/alerts/{ui.alert_id}", auth=("x", PASSWORD)).text
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in html


def test_filters_narrow_the_alerts(ui: Ui) -> None:
    def listed(query: str) -> bool:
        return f'href="/ui/alerts/{ui.alert_id}"' in ui.client.get(f"/ui/?{query}", auth=("x", PASSWORD)).text

    assert listed("rule=okta-user-reported-suspicious-activity") and not listed("rule=okta-api-token-created")
    assert listed("severity=high") and not listed("severity=critical")
    assert listed("since=1h") and not listed("until=2001-01-01T00:00:00Z")
    assert not listed("status=dead")
    problem = ui.client.get("/ui/?since=yesterday-ish", auth=("x", PASSWORD)).text
    assert "since: use e.g." in problem


def test_the_chart_counts_alerts_per_rule(ui: Ui) -> None:
    html = ui.client.get("/ui/", auth=("x", PASSWORD)).text
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert "<title>okta-user-reported-suspicious-activity: 1</title>" in svg


def test_rules_and_health_pages(ui: Ui) -> None:
    rules = ui.client.get("/ui/rules", auth=("x", PASSWORD)).text
    assert "okta-user-reported-suspicious-activity" in rules and "user.account.report_suspicious_activity_by" in rules
    row = rules[rules.index("okta-user-reported-suspicious-activity</a>"):]
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>\s*<td>1</td>\s*<td>yes</td>", row)
    # The feed that brings each rule its events: without [okta.api], a hook rule is "hook" and a rule on
    # types no hook delivers is "poll" (it sees nothing until the poller runs).
    assert re.search(r"okta-user-reported-suspicious-activity</a></td>\s*<td>.*?</td>\s*<td>hook</td>", rules)
    assert re.search(r"okta-network-zone-changed</a></td>\s*<td>.*?</td>\s*<td>poll</td>", rules)
    health = ui.client.get("/ui/health", auth=("x", PASSWORD)).text
    assert "detector backlog" in health and "<td>log</td>" in health
    assert "<th>System Log poller</th><td>off (no [okta.api] table)</td>" in health


def test_the_real_daemon_serves_the_page_on_its_own_port_only(tmp_path: Path) -> None:
    """One real daemon: the page is off the hook's port, refuses without credentials, and shows an event
    posted through /hooks/okta with its hostile display name as text; the password is never logged."""
    ui_port = free_port()
    config = write_config(tmp_path, extra=f'\n[ui]\nlisten = "127.0.0.1:{ui_port}"\n', rules=str(ROOT / "rules"))
    daemon = Daemon(config, env={"SENTINEL_UI_PASSWORD": PASSWORD}).start()
    try:
        assert daemon.post(envelope(sample_event("ui-real-1", HOSTILE))).status_code == 204
        base = f"http://127.0.0.1:{ui_port}"
        assert httpx.get(f"{daemon.url}/ui/", auth=("x", PASSWORD)).status_code == 404
        assert httpx.get(f"{base}/ui/").status_code == 401
        listing: list[str] = []

        def alert_listed() -> bool:
            listing[:] = [httpx.get(f"{base}/ui/", auth=("x", PASSWORD)).text]
            return "/ui/alerts/1" in listing[0]

        wait_for(alert_listed, detail=daemon.log)
        detail = httpx.get(f"{base}/ui/alerts/1", auth=("x", PASSWORD))
        assert detail.status_code == 200 and "content-security-policy" in detail.headers
        assert HOSTILE not in detail.text
        assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in detail.text
        assert httpx.get(f"{base}/ui/", auth=("x", "wrong")).status_code == 401
    finally:
        daemon.stop()
    assert PASSWORD not in daemon.log()


def test_silence_alerts_like_this_prefills_the_form_and_adds_a_silence(ui: Ui) -> None:
    log_in(ui.client, name="Dana")
    detail = ui.client.get(f"/ui/alerts/{ui.alert_id}").text
    assert f'href="/ui/silences?alert={ui.alert_id}"' in detail
    form = ui.client.get(f"/ui/silences?alert={ui.alert_id}").text
    # The rule and the alert's actor (the rule has no group_by), escaped like every event value.
    assert 'name="rule" value="okta-user-reported-suspicious-activity"' in form
    assert 'name="match_path" value="actor.alternateId"' in form and 'value="user@login.com"' in form
    data = {"csrf": csrf_of(form), "rule": "okta-user-reported-suspicious-activity",
            "match_path": ["actor.alternateId", ""], "match_value": ["user@login.com", ""],
            "duration": "2h", "until": "", "comment": "known test account"}
    assert ui.client.post("/ui/silences", data={**data, "csrf": "forged"}).status_code == 403
    added = ui.client.post("/ui/silences", data=data)
    assert added.status_code == 303
    silences = asyncio.run(ui.store.list_silences(SystemClock().now()))
    assert [(s.rule, s.matchers, s.author, s.comment) for s in silences] == [
        ("okta-user-reported-suspicious-activity", (("actor.alternateId", "user@login.com"),), "Dana",
         "known test account")]
    listed = ui.client.get("/ui/silences").text
    assert "<td>active</td>" in listed and "known test account" in listed
    expire = ui.client.post(f"/ui/silences/{silences[0].id}/expire", data={"csrf": csrf_of(listed)})
    assert expire.status_code == 303
    assert "<td>expired</td>" in ui.client.get("/ui/silences").text  # still listed, so the team sees it


def test_a_bad_silence_is_refused_with_the_reasons(ui: Ui) -> None:
    log_in(ui.client)
    token = csrf_of(ui.client.get("/ui/silences").text)
    answer = ui.client.post("/ui/silences", data={"csrf": token, "rule": "okta-*", "match_path": "actor[",
                                                  "match_value": "x", "duration": "soon", "comment": ""})
    assert answer.status_code == 400 and "give how long" in answer.text
    answer = ui.client.post("/ui/silences", data={"csrf": token, "rule": "okta-*", "match_path": "actor[",
                                                  "match_value": "x", "duration": "1h", "comment": ""})
    assert answer.status_code == 400 and "a silence needs a comment" in answer.text and "match" in answer.text
    assert asyncio.run(ui.store.list_silences(SystemClock().now())) == []


def test_a_form_too_large_is_refused_before_it_is_read(ui: Ui) -> None:
    token = csrf_of(ui.client.get("/ui/login").text)
    answer = ui.client.post("/ui/login", data={"csrf": token, "password": PASSWORD, "junk": "x" * 70_000})
    assert answer.status_code == 413
    assert answer.headers["x-frame-options"] == "DENY"
    assert log_in(ui.client).status_code == 303  # a normal one still works
