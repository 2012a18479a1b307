"""The prefilter index's fields decoded with an event's key fields (sentinel/okta_fields.py, issue 14 point 9):
the index answers from them exactly what each rule's own prefilter answers on the decoded body; the engine
decodes a body only for a rule that runs; the detector and ``sentinel replay`` decode the fields of the rules
in use (again after a reload), and raise the same alerts as from decoded bodies."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import io
import json
import random
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import make_event
from hypothesis import given, settings
from test_rules_prefilter_index import _EVENT, INDEX, SIGMA, _events, _expected
from test_sigma_import import generated_events

from sentinel import okta
from sentinel.clock import FixedClock
from sentinel.model import Alert, Event
from sentinel.okta import decode_json, event_quickly, parse_delivery
from sentinel.okta_fields import FieldDecoder
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.rules.replay import Replay
from sentinel.rules.replay_input import ReadReport, read_events
from sentinel.rules.testing import event_from_dict
from sentinel.service.detector import Detector
from sentinel.store import Store

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEYS: dict[str, Any] = {"uuid": "f-1", "eventType": "no.rule.reads.this", "published": "2024-05-01T10:00:00.000Z"}
FIELDS = FieldDecoder(INDEX.paths)
PUBLISHED = datetime(2024, 5, 1, 10, tzinfo=UTC)


def _answers_agree(text: str) -> Event | None:
    """Checks, for one element as JSON text, that the index answers from the decoded fields what each rule's
    prefilter answers on the body. Returns the event the fast path made (None: the slow path's to decode)."""
    event = event_quickly(text.encode(), FIELDS)
    if event is None:
        return None
    body = dict(event.data)
    if event.fields:
        assert event.fields is INDEX.paths
        assert INDEX.admitted_values(event.field_values) == _expected(body)
    else:  # fields msgspec would not decode that way: the engine reads the body, as before
        assert event.field_values == ()
    return event


@pytest.mark.parametrize("data", _events(), ids=lambda d: repr(d)[:60])
def test_the_index_answers_from_the_decoded_fields_as_each_prefilter_on_the_body(data: dict[str, Any]) -> None:
    text = json.dumps({**KEYS, **data})
    event = _answers_agree(text)
    if "NaN" in text or "\\udc80" in text:  # msgspec refuses them: the slow path decodes such an element
        assert event is None
    else:
        assert event is not None and event.fields  # the fast path, with the fields


ODD = [
    # the last of duplicate keys counts, as json.loads reads them, at every depth
    '"displayMessage": "x", "displayMessage": "Max sign in attempts exceeded"',
    '"displayMessage": "Max sign in attempts exceeded", "displayMessage": null',
    '"debugContext": {"debugData": {"requestUri": "/admin"}}, "debugContext": 5',
    '"debugContext": 5, "debugContext": {"debugData": {"requestUri": "/admin"}}',
    '"debugContext": {"debugData": {"requestUri": "/admin"}, "debugData": {}}',
    '"debugContext": {"debugData": {"requestUri": "/admin", "requestUri": ["/x"]}}',
    # escapes, numbers past 64 bits, deep nesting below a field, arrays of objects on the way
    '"displayMessage": "Max sign in attempts exceede\\u0064", "legacyEventType": "core.user_auth.login_faile\\u0064"',
    '"displayMessage": "Stra\\u00dfe", "title": "\\u01c5"',
    '"displayMessage": 123456789012345678901234567890, "securityContext": {"isProxy": 1e308}',
    '"debugContext": {"debugData": {"requestUri": {"a": [[[[{"b": "admin"}]]]]}}}',
    '"debugContext": [{"debugData": {"requestUri": "/x"}}, 1, "admin"], "client": {"device": []}',
    '"actor": {"displayName": "\\u212a"}, "securityContext": {"isProxy": "TRUE"}',
    # huge strings: past the kept answers' length, and far past any operand
    f'"displayMessage": "{"x" * 100_000}", "debugContext": {{"debugData": {{"requestUri": "{"y" * 100_000}/ADMIN"}}}}',
    f'"legacyEventType": "{"Straße" * 50_000}"',
]


@pytest.mark.parametrize("fields", ODD, ids=lambda f: f[:50])
def test_odd_and_huge_values_are_answered_as_on_the_body(fields: str) -> None:
    event = _answers_agree('{"uuid": "f-1", "eventType": "x", "published": "2024-05-01T10:00:00.000Z", ' + fields + "}")
    assert event is not None and event.fields


def test_a_value_msgspec_refuses_in_a_field_leaves_the_body_to_the_engine() -> None:
    """1e999 is infinity to json.loads; msgspec's typed decode refuses it: the event keeps no values."""
    event = _answers_agree('{"uuid": "f-1", "eventType": "x", "published": "2024-05-01T10:00:00.000Z", '
                           '"displayMessage": 1e999}')
    assert event is not None and event.fields == () and event.data["displayMessage"] == float("inf")


@settings(max_examples=400, deadline=None)
@given(_EVENT)
def test_the_index_answers_from_decoded_fields_on_generated_events(data: dict[str, Any]) -> None:
    _answers_agree(json.dumps({**KEYS, **data}))


@pytest.mark.parametrize("paths", [
    [("a",), ("a", "b")],  # a path ending where another goes on
    [("eventType",), ("uuid", "upper")],  # key fields: text, so nothing below them (not str.upper)
    [("a", "b", "c")],  # one path alone
])
def test_paths_that_share_keys_or_meet_key_fields_read_as_the_body_does(paths: list[tuple[str, ...]]) -> None:
    decoder = FieldDecoder(paths)
    extras: list[dict[str, Any]] = [{}, {"a": None}, {"a": "admin"}, {"a": {"b": "x"}}, {"a": {"b": {"c": "x"}}},
                                    {"a": [{"b": "x"}]}, {"a": {"b": [1]}}, {"a": {"b": 5}}, {"a": {"c": "x"}}]
    for extra in extras:
        body = {**KEYS, **extra}
        event = event_quickly(json.dumps(body).encode(), decoder)
        assert event is not None
        assert (event.uuid, event.event_type, event.published) == (KEYS["uuid"], KEYS["eventType"], PUBLISHED)
        assert event.fields is decoder.paths
        expected = tuple(_kind(_as_index_reads(body, path)) for path in paths)
        assert tuple(map(_kind, event.field_values)) == expected, extra


def _as_index_reads(body: dict[str, Any], path: tuple[str, ...]) -> Any:
    """What ``PrefilterIndex.admitted`` reads at a path: an array on the way stands for the whole field."""
    node: Any = body
    for key in path[:-1]:
        node = node.get(key)
        if type(node) is not dict:
            return node if type(node) is list else None
    return node.get(path[-1])


def _kind(value: Any) -> Any:
    """What the index makes of a value: its text, nothing, or a value that admits every rule on the field."""
    return value if value is None or type(value) is str else "not text"


EVERY_AND_INDEXED = """
[[rules]]
id = "locked-out"
title = "Locked out"
severity = "medium"
event_types = ["*"]
condition = "selection"
[rules.detection.selection]
displayMessage = "Max sign in attempts exceeded"

[[rules]]
id = "sign-in"
title = "Sign-in"
severity = "low"
event_types = ["user.session.start"]
condition = "selection"
[rules.detection.selection]
"outcome.result" = "FAILURE"
"""


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The uuid of every body the fast path's events decode."""
    seen: list[str] = []

    def counting(document: bytes | str) -> Any:
        data = decode_json(document)
        seen.append(data["uuid"])
        return data

    monkeypatch.setattr(okta, "decode_json", counting)
    return seen


def test_a_body_is_decoded_only_for_a_rule_that_runs(tmp_path: Path, decodes: list[str]) -> None:
    (tmp_path / "rules.toml").write_text(EVERY_AND_INDEXED, encoding="utf-8")
    ruleset = load_rules([tmp_path])
    fields = FieldDecoder(ruleset.field_paths)
    events = parse_delivery(json.dumps({"data": {"events": [
        make_event("ruled-out", "user.account.lock"),  # displayMessage "User login to Okta": no rule runs
        make_event("locked", "user.account.lock", displayMessage="MAX SIGN IN ATTEMPTS EXCEEDED"),
        make_event("signed-in", "user.session.start", outcome={"result": "FAILURE"}),  # the indexed rule runs
    ]}}).encode(), fields).events
    assert [e.fields for e in events] == [ruleset.field_paths] * 3
    state = EngineState()
    raised = []
    for event in events:
        alerts, state = evaluate(ruleset, event, state, NOW)
        raised += [(a.rule_id, a.event_uuids) for a in alerts]
    assert decodes == ["locked", "signed-in"]  # once each, and never the event no rule runs on
    assert raised == [("locked-out", ("locked",)), ("sign-in", ("signed-in",))]


def test_no_body_is_decoded_for_pending_absence_deadlines_alone(tmp_path: Path, decodes: list[str]) -> None:
    """With absence deadlines pending (here one far ahead, one past of a rule that is gone), every event is
    looked at for the watermark, but a body is still decoded only for a rule that runs."""
    (tmp_path / "rules.toml").write_text(EVERY_AND_INDEXED, encoding="utf-8")
    ruleset = load_rules([tmp_path])
    fields = FieldDecoder(ruleset.field_paths)
    events = parse_delivery(json.dumps({"data": {"events": [
        make_event("ruled-out", "user.account.lock"), make_event("no-rule-at-all", "user.lifecycle.nobody"),
    ]}}).encode(), fields).events
    state = EngineState()
    state.deadlines[:] = [(1, "gone-rule/x"), (2**62, "gone-rule/y")]
    for event in events:
        alerts, state = evaluate(ruleset, event, state, NOW)
        assert alerts == []
    assert decodes == []
    assert state.deadlines == [(2**62, "gone-rule/y")]  # the past one was let go, the watermark moved on


def _alerts(ruleset: RuleSet, events: Sequence[Event | None]) -> list[tuple[Alert, object]]:
    state = EngineState()
    found: list[tuple[Alert, object]] = []
    for event in events:
        assert event is not None
        alerts, state = evaluate(ruleset, event, state, event.published)
        found += [(alert, alert.context) for alert in alerts]
    return found


def _sigma_all_on() -> RuleSet:
    return RuleSet([dataclasses.replace(r, enabled=True) for r in load_rules([SIGMA]).rules])


def _bench_mix(count: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "bench"))
    build_events = importlib.import_module("engine").build_events  # a script of bench/, not a package
    return [dict(e.data) for e in build_events(count, random.Random(14), 0)]


@pytest.mark.parametrize("ruleset", [_sigma_all_on(), load_rules([ROOT / "rules"])], ids=["sigma", "pack"])
def test_the_same_alerts_as_from_decoded_bodies(ruleset: RuleSet) -> None:
    """The Sigma rules' generated events (each rule's matches and near misses, the corpus samples) and the
    bench's mix, made by the fast path with the rule set's fields and from dicts: the same alerts."""
    datas = generated_events() + _bench_mix(2_000)
    fields = FieldDecoder(ruleset.field_paths)
    fast = [event_quickly(json.dumps(d).encode(), fields) for d in datas]
    assert all(e is not None and e.fields for e in fast)
    expected = _alerts(ruleset, [event_from_dict(d) for d in datas])
    fired = {a.rule_id for a, _ in expected}
    every = {r.id for r in ruleset.rules if r.enabled and r.prefilter is not None}
    assert len(fired) >= 10 and len(fired & every) >= 3  # many rules fire, those on every type among them
    assert _alerts(ruleset, fast) == expected


def test_replay_reads_json_lines_with_the_rules_fields_and_raises_the_same_alerts() -> None:
    ruleset = _sigma_all_on()
    datas = generated_events()
    lines = b"".join(json.dumps(d).encode() + b"\n" for d in datas)
    report = ReadReport()
    fields = FieldDecoder(ruleset.field_paths)
    read = list(read_events(io.BytesIO(lines), "events.jsonl", report, None, fields))
    assert all(e.fields is ruleset.field_paths for e in read)  # the detector's fast path, with the fields

    def replayed(events: list[Event]) -> list[Alert]:
        run = Replay(ruleset)
        return [a for e in events for a in run.feed(e)] + run.finish()

    assert replayed(read) == replayed([event_from_dict(d) for d in datas])


RELOADED = EVERY_AND_INDEXED.replace('displayMessage = "Max sign in attempts exceeded"',
                                     'legacyEventType = "core.user_auth.login_failed"')


class _Recording(RuleEvaluator):
    raised: list[tuple[str, str]]

    def evaluate(self, event: Event, now: datetime) -> list[Alert]:
        alerts = super().evaluate(event, now)
        self.raised += [(a.rule_id, event.uuid) for a in alerts]
        return alerts


def test_the_detector_decodes_the_fields_of_the_rules_in_use_again_after_a_reload(
        tmp_path: Path, decodes: list[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "rules.toml").write_text(EVERY_AND_INDEXED, encoding="utf-8")
    (tmp_path / "b" / "rules.toml").write_text(RELOADED, encoding="utf-8")
    first = _Recording(load_rules([tmp_path / "a"]), 1000)
    second = _Recording(load_rules([tmp_path / "b"]), 1000, first.state)  # as a reload carries the state over
    first.raised, second.raised = [], []
    assert second.field_paths != first.field_paths
    quiet = {"displayMessage": "User login to Okta", "legacyEventType": "core.user_auth.login_success"}

    locked = {**quiet, "displayMessage": "Max sign in attempts exceeded"}
    failed = {**quiet, "legacyEventType": "core.user_auth.login_failed"}

    def body(tag: str) -> bytes:
        return json.dumps({"data": {"events": [make_event(f"{tag}-quiet", "user.account.lock", **quiet),
                                               make_event(f"{tag}-locked", "user.account.lock", **locked),
                                               make_event(f"{tag}-failed", "user.account.lock", **failed)]}}).encode()

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            detector = Detector(store, first, lambda a: ["log"], FixedClock(NOW))
            await detector.load_state()
            await store.receive(body("before"), NOW)
            while await detector.unpack_once(evaluate=True) or await detector.run_once():
                pass
            detector.swap(second, lambda a: ["log"])
            await store.receive(body("after"), NOW)
            while await detector.unpack_once(evaluate=True) or await detector.run_once():
                pass
        finally:
            store.close()

    asyncio.run(scenario())
    assert first.raised == [("locked-out", "before-locked")]
    assert second.raised == [("locked-out", "after-failed")]
    # Each side decodes only the body of the event its every-type rule admits.
    assert decodes == ["before-locked", "after-failed"]
