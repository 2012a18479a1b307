"""Write docs/coverage.md: for each public Okta detection in the project's corpus catalog (ML and scheduled-SQL
ones left out), whether Sentinel's rule language can express it, which source feeds it, and whether the default
pack or rules/sigma covers it.

    .venv/bin/python tools/coverage_ledger.py [--catalog PATH] [--check]

Expressibility is derived from the catalog's "constructs needed" (``feats``) mapped to Sentinel constructs;
the constructs the loader does not know yet (e.g. ``first_seen`` before its branch is merged) count as missing,
so the ledger follows the language. Coverage: a rules/sigma rule with the catalog's Sigma id; else the curated
table below (judged by event types and intent); else "types only" when a shipped rule reads the same event
types (named, intent not judged); else "no". ``--check`` exits 1 if docs/coverage.md is not what this script writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
CATALOG = CORPUS / "public-okta-rule-catalog.jsonl"
ELIGIBLE = ROOT / "sentinel" / "data" / "hook-eligible-types.txt"
OUTPUT = ROOT / "docs" / "coverage.md"
EXCLUDED_KINDS = {"ML": "machine learning", "sched-sql": "scheduled SQL over a warehouse"}

# feat -> (Sentinel construct, what the loader must know for it: a top-level rule key, "threshold.KEY" (a key of
# [threshold]) or "operator.NAME"; "" for always there)
CONSTRUCTS: dict[str, tuple[str, str]] = {
    "EQ": ("selection (equals)", ""), "IN": ("selection (in-list)", ""), "NOT": ("condition (not)", ""),
    "OR": ("condition (or)", ""), "CONTAINS": ("contains", ""), "PREFIX": ("startswith", ""),
    "SUFFIX": ("endswith", ""), "EXISTS": ("exists", ""), "BOOL": ("lenient booleans", ""),
    "CASEI": ("case-insensitive default", ""), "REGEX": ("regex (RE2)", ""), "ARRAY": ("any-element paths", ""),
    "ARRAY_IDX": ("key[N] paths", ""), "ARRAY_ELEM": ("key[field=value] paths", ""),
    "JSON_STR": ("|json / |kv decoders", ""), "FIELD_CMP": ("equals_field", ""),
    "SEVMAP": ("severity_when", ""), "LIST_PARAM": ("named lists", ""),
    "THRESH": ("threshold", "threshold"), "DISTINCT": ("threshold distinct", "threshold"),
    "SEQ": ("sequence", "sequence"), "ABSENCE": ("sequence absent step", "sequence"),
    "NEWTERM": ("first_seen", "first_seen"),
    "ARITH": ("threshold measures and when (ratios, sums, counts compared)", "threshold.measures"),
    "TIME": ("hour_between / weekday_in", "operator.hour_between"),
}
# feats no Sentinel construct covers, and why; "partly" unless the detection is nothing but these
GAPS: dict[str, str] = {
    "ENRICH": "needs enrichment from outside the event (IP reputation, geolocation or entity services); "
              "a named list of networks or countries can stand in",
    "STATE": "needs free-form state across events (e.g. user-agent similarity within a session)",
    "ALERT_CHAIN": "correlates alerts of other rules or other log sources (Sentinel reads Okta events only)",
    "ML": "machine learning",
}
NO_ALONE = {"ALERT_CHAIN"}  # a detection needing one of these cannot be expressed even in part

# Coverage judged by hand (catalog name -> coverage, rule ids, why), where the event types alone say too little.
CURATED: dict[str, tuple[str, str, str]] = {
    "Okta.AdminRoleAssigned": ("yes", "okta-admin-privilege-granted-user", "same intent; critical for Super admin"),
    "Okta.Group.Admin.Role.Assigned": ("yes", "okta-admin-privilege-granted-group", "same intent"),
    "Okta.APIKeyCreated": ("yes", "okta-api-token-created", "same intent"),
    "Okta.APIKeyRevoked": ("yes", "cf1dbc6b-6205-41b4-9b88-a83980d2255b", "rules/sigma, shipped off"),
    "Okta.Identity.Provider.Created.Modified": ("yes", "okta-identity-provider-changed", "same intent"),
    "Okta.Phishing.Attempt.Blocked.FastPass": ("yes", "okta-fastpass-phishing-blocked", "same intent"),
    "Okta.User.Account.Locked": ("partly", "okta-user-account-locked", "user.account.lock only; "
                                 "user.account.lock.limit is not read"),
    "Okta.User.MFA.Reset.All": ("yes", "okta-mfa-factors-reset-all", "same intent"),
    "Okta.User.Reported.Suspicious.Activity": ("yes", "okta-user-reported-suspicious-activity", "same intent"),
    "Okta.Rate.Limits": ("partly", "okta-org-rate-limit-warning, okta-org-rate-limit-violation",
                         "org-wide limits; per-client and per-integration limits are not read"),
    "Okta.ThreatInsight.Security.Threat.Detected": ("yes", "5c82f0b9-3c6d-477f-a318-0e14a1df73e0",
                                                    "rules/sigma (needs the poller)"),
    "Okta.New.Behavior.Accessing.Admin.Console": ("partly", "a0b38b70-3cb5-484b-a4eb-c4d8e7bcc0a9",
                                                  "rules/sigma: any POSITIVE behaviour, not New Device and New IP"),
    "Okta.Anonymizing.VPN.Login": ("yes", "bde30855-5c53-4c18-ae90-1ff79ebc9578", "rules/sigma: isProxy"),
    "Okta.Support.Access": ("partly", "fe04b26b-0ac4-45d7-9404-4b9f16a440a9",
                            "rules/sigma: grant only, not initiate"),
    "Standard.BruteForceByUser (Okta via data model)": ("yes", "okta-brute-force-user", "10 in 15m (docs/rules.md)"),
    "Standard.BruteForceByIP (Okta via data model)": ("partly", "okta-password-spraying",
                                                     "distinct users per IP, not raw failures per IP"),
    "Okta Fast Pass phishing Detection": ("yes", "okta-fastpass-phishing-blocked", "allow-list not applied"),
    "Okta AiTM Phishing Detection with FastPass": ("yes", "okta-fastpass-phishing-blocked", "same intent"),
    "New Okta API Token Created": ("yes", "okta-api-token-created", "same intent"),
    "Creation of a new Okta Identity Provider": ("yes", "okta-identity-provider-changed", "same intent"),
    "User Reported Suspicious Activity": ("yes", "okta-user-reported-suspicious-activity", "same intent"),
    "Potential Password Spray Attack": ("yes", "okta-password-spraying", "same intent"),
    "Okta User Session Impersonation": ("partly", "fe04b26b-0ac4-45d7-9404-4b9f16a440a9",
                                        "rules/sigma reads grant, this reads initiate"),
    "MFA Fatigue (OKTA)": ("yes", "okta-mfa-push-exhaustion", "pushes against accepts (shipped off)"),
    "Okta MFA Exhaustion Hunt": ("yes", "okta-mfa-push-exhaustion", "pushes against accepts (shipped off)"),
    "Potential Okta Credential Stuffing (Single Source)": ("yes", "okta-credential-stuffing",
                                                           "same measures (shipped off)"),
    "Potential Okta Password Spray (Single Source)": ("yes", "okta-password-spray-paced",
                                                      "same measures (shipped off)"),
    "Okta User Login Out Of Hours": ("yes", "okta-login-out-of-hours", "weekend or night (shipped off)"),
}


def hook_eligible() -> set[str]:
    lines = ELIGIBLE.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def event_types(text: str) -> list[str]:
    """The event types a catalog row names: ``a.b.c/.d`` is a.b.c and a.b.d; ``x.*`` a prefix."""
    found: list[str] = []
    for token in re.split(r"[,\s+;()]+", text):
        parts = token.split("/")
        if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-zA-Z0-9_*]+)+", parts[0]):
            continue
        found.append(parts[0])
        for suffix in parts[1:]:
            if suffix.startswith("."):
                depth = suffix.count(".")
                found.append(".".join(parts[0].split(".")[:-depth]) + suffix)
    return list(dict.fromkeys(found))


def source(types: list[str], eligible: set[str]) -> str:
    if not types:
        return "both"  # any event type: the hook delivers the eligible ones, the poller the rest
    hooked = [t for t in types if (t.endswith(".*") and any(e.startswith(t[:-1]) for e in eligible)) or t in eligible]
    if len(hooked) == len(types):
        return "hook"
    return "poller" if not hooked else "both"


def expressible(feats: list[str], known_keys: set[str]) -> tuple[str, str]:
    missing = []
    for feat in feats:
        construct, key = CONSTRUCTS.get(feat, ("", "?"))
        if feat in GAPS:
            missing.append((feat, GAPS[feat]))
        elif key == "?":
            missing.append((feat, f"unknown construct {feat}"))
        elif key and key not in known_keys:
            missing.append((feat, f"{construct} is not in this build's language"))
    if not missing:
        return "yes", ", ".join(CONSTRUCTS[f][0] for f in feats)
    why = "; ".join(reason for _, reason in missing)
    names = {f for f, _ in missing}
    if names & NO_ALONE or not set(feats) - names:
        return "no", why
    return "partly", why


def coverage(row: dict[str, object], types: list[str], rules: list[tuple[str, tuple[str, ...], bool, str]]
             ) -> tuple[str, str]:
    by_id = {rule_id: (enabled, where) for rule_id, _, enabled, where in rules}
    if row["id"] in by_id:
        enabled, where = by_id[str(row["id"])]
        return "yes", f"`{where}`" + ("" if enabled else " (shipped off)")
    name = str(row["name"])
    if name in CURATED:
        level, ids, why = CURATED[name]
        return level, ", ".join(f"`{i}`" for i in ids.split(", ")) + f": {why}"
    wanted = set(types)
    overlapping = [rid for rid, rtypes, _, _ in rules
                   if any(t in wanted or (t.endswith(".*") and any(w.startswith(t[:-1]) for w in wanted))
                          for t in rtypes if t != "*")]
    if overlapping:
        return "types only", "reads the same event types: " + ", ".join(f"`{r}`" for r in overlapping[:3]) + \
            " (intent not judged)"
    return "no", ""


def build(catalog: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from sentinel.rules import load_rules
    from sentinel.rules.loader import RULE_KEYS, THRESHOLD_KEYS  # the keys the loader knows
    from sentinel.rules.operators import OPERATORS

    rows = [json.loads(line) for line in catalog.read_text(encoding="utf-8").splitlines() if line.strip()]
    ruleset = load_rules([ROOT / "rules"])
    rules = [(r.id, r.event_types, r.enabled, str(Path(r.source).relative_to(ROOT))) for r in ruleset.rules]
    eligible = hook_eligible()
    known = {*RULE_KEYS, *(f"threshold.{k}" for k in THRESHOLD_KEYS), *(f"operator.{k}" for k in OPERATORS)}
    kept = [r for r in rows if r["kind"] not in EXCLUDED_KINDS]
    table, counts, covered = [], Counter(), Counter()
    gaps: list[str] = []
    for row in kept:
        types = event_types(str(row["evts"]))
        level, why = expressible(list(row["feats"]), known)
        cover, by = coverage(row, types, rules)
        counts[level] += 1
        covered[cover] += 1
        if level != "yes":
            gaps.append(f"- **{row['name']}** ({row['src']}): {level}: {why}")
        table.append(f"| {row['src']} | {_cell(str(row['name']))} | {row['kind']} | {level} | {_cell(why)} | "
                     f"{source(types, eligible)} | {cover} | {_cell(by)} |")
    total = len(kept)
    lines = [
        "# Coverage ledger: public Okta detections",
        "",
        "Generated by `tools/coverage_ledger.py` from the project's corpus catalog",
        "(`../shared/corpus/public-okta-rule-catalog.jsonl`: 220 public Okta rules from Sigma, Elastic, Panther,",
        "Splunk, Chronicle, Okta's catalog, Microsoft Sentinel and Datadog). Do not edit by hand; `make test` checks",
        "it is current (`tests/test_coverage_ledger.py`).",
        "",
        f"Left out: {sum(1 for r in rows if r['kind'] in EXCLUDED_KINDS)} rules that are "
        + " or ".join(EXCLUDED_KINDS.values()) + f". Of the other **{total}**:",
        "",
        f"- expressible in Sentinel's language: **{counts['yes']} yes**, {counts['partly']} partly, "
        f"{counts['no']} no — yes or partly: {100 * (counts['yes'] + counts['partly']) / total:.0f}%, "
        f"fully: {100 * counts['yes'] / total:.0f}%;",
        f"- covered by the default pack or `rules/sigma`: {covered['yes']} yes, {covered['partly']} partly "
        f"(judged), {covered['types only']} read the same event types only (intent not judged), "
        f"{covered['no']} no.",
        "",
        "**Expressible** comes from the constructs each detection needs (the catalog's `feats`) mapped to Sentinel's:",
        "selections and conditions, regex, cidr, field paths and decoders, named lists, severity_when, thresholds,",
        "distinct counts, threshold measures (ratios, sums, several counts compared), time of day and weekday,",
        "sequences (with absence), first-seen; a construct this build's loader does not know counts as missing. **Source**: `hook` = every event type it reads is event-hook-eligible (the System Log poller",
        "delivers them too), `poller` = none is (only the poller feeds it), `both` = some are, or it reads any type.",
        "**Covered**: a `rules/sigma` rule with the same Sigma id; else judged by hand (event types and intent);",
        "else `types only` when a shipped rule reads the same event types (named; intent not judged); else `no`.",
        "",
        "## Gaps (every detection not fully expressible)",
        "",
        *gaps,
        "",
        "## Ledger",
        "",
        "| source | detection | kind | expressible | constructs / why not | feed | covered | by |",
        "|---|---|---|---|---|---|---|---|",
        *table,
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=CATALOG)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/coverage.md is out of date")
    args = parser.parse_args()
    text = build(args.catalog)
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print("docs/coverage.md is out of date: run tools/coverage_ledger.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
