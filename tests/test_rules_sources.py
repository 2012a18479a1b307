"""Which event types the System Log poller asks Okta for: a pure function over the loaded rules."""

from __future__ import annotations

from pathlib import Path

from sentinel.rules import RuleSet, load_rules
from sentinel.rules.sources import MAX_FILTERED_TYPES, polled_event_types

REPO = Path(__file__).resolve().parents[1]


def rule(rule_id: str, *types: str, enabled: bool = True) -> str:
    listed = ", ".join(f'"{t}"' for t in types)
    return (f'id = "{rule_id}"\ntitle = "t"\nseverity = "low"\nevent_types = [{listed}]\n'
            f"enabled = {'true' if enabled else 'false'}\n")


def ruleset(tmp_path: Path, *texts: str) -> RuleSet:
    for i, text in enumerate(texts):
        (tmp_path / f"r{i}.toml").write_text(text)
    return load_rules([tmp_path])


def test_exact_types_of_every_enabled_rule_sorted_and_once(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, rule("a", "zone.update", "security.threat.detected"),
                    rule("b", "zone.update", "event_hook.delivery"))
    assert polled_event_types(rules) == ("event_hook.delivery", "security.threat.detected", "zone.update")


def test_a_disabled_rule_reads_nothing(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, rule("a", "zone.update"), rule("b", "user.session.*", enabled=False))
    assert polled_event_types(rules) == ("zone.update",)


def test_a_prefix_or_every_type_means_everything(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    assert polled_event_types(ruleset(tmp_path / "p", rule("a", "zone.update"), rule("b", "user.session.*"))) is None
    (tmp_path / "s").mkdir()
    assert polled_event_types(ruleset(tmp_path / "s", rule("a", "zone.update"), rule("b", "*"))) is None


def test_no_enabled_rule_polls_everything(tmp_path: Path) -> None:
    assert polled_event_types(ruleset(tmp_path, rule("a", "zone.update", enabled=False))) is None


def test_more_types_than_one_filter_holds_polls_everything(tmp_path: Path) -> None:
    many = [f"t.n{i}" for i in range(MAX_FILTERED_TYPES + 1)]
    assert polled_event_types(ruleset(tmp_path, rule("a", *many))) is None
    (tmp_path / "fits").mkdir()
    assert polled_event_types(ruleset(tmp_path / "fits", rule("a", *many[:-1]))) == tuple(sorted(many[:-1]))


def test_the_shipped_pack_gives_a_definite_answer() -> None:
    pack = load_rules([REPO / "rules"])
    types = polled_event_types(pack)
    exact = {t for r in pack.rules if r.enabled for t in r.event_types}
    if any(t == "*" or t.endswith(".*") for t in exact):
        assert types is None
    else:
        assert types is not None and set(types) == exact
