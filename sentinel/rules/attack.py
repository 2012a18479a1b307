"""MITRE ATT&CK tags (``attack.credential_access``, ``attack.t1110.003``) as names and links.

A small table: the Enterprise tactics and the techniques the default pack tags. An unknown technique id
still gets its link (ids are stable), only without a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TACTICS: dict[str, tuple[str, str]] = {
    "reconnaissance": ("TA0043", "Reconnaissance"),
    "resource_development": ("TA0042", "Resource Development"),
    "initial_access": ("TA0001", "Initial Access"),
    "execution": ("TA0002", "Execution"),
    "persistence": ("TA0003", "Persistence"),
    "privilege_escalation": ("TA0004", "Privilege Escalation"),
    "defense_evasion": ("TA0005", "Defense Evasion"),
    # ATT&CK v19 split Defense Evasion in two; Sigma rules already use the new tactics. Stealth kept
    # TA0005's page, Defense Impairment is the new TA0112.
    "stealth": ("TA0005", "Stealth"),
    "defense_impairment": ("TA0112", "Defense Impairment"),
    "credential_access": ("TA0006", "Credential Access"),
    "discovery": ("TA0007", "Discovery"),
    "lateral_movement": ("TA0008", "Lateral Movement"),
    "collection": ("TA0009", "Collection"),
    "command_and_control": ("TA0011", "Command and Control"),
    "exfiltration": ("TA0010", "Exfiltration"),
    "impact": ("TA0040", "Impact"),
}

TECHNIQUES: dict[str, str] = {
    "T1078": "Valid Accounts",
    "T1078.004": "Valid Accounts: Cloud Accounts",
    "T1098": "Account Manipulation",
    "T1098.001": "Account Manipulation: Additional Cloud Credentials",
    "T1098.003": "Account Manipulation: Additional Cloud Roles",
    "T1110": "Brute Force",
    "T1110.001": "Brute Force: Password Guessing",
    "T1110.003": "Brute Force: Password Spraying",
    "T1110.004": "Brute Force: Credential Stuffing",
    "T1136": "Create Account",
    "T1136.003": "Create Account: Cloud Account",
    "T1484": "Domain or Tenant Policy Modification",
    "T1484.002": "Domain or Tenant Policy Modification: Trust Modification",
    "T1498": "Network Denial of Service",
    "T1499": "Endpoint Denial of Service",
    "T1531": "Account Access Removal",
    "T1539": "Steal Web Session Cookie",
    "T1550.004": "Use Alternate Authentication Material: Web Session Cookie",
    "T1556": "Modify Authentication Process",
    "T1556.006": "Modify Authentication Process: Multi-Factor Authentication",
    "T1557": "Adversary-in-the-Middle",
    "T1562": "Impair Defenses",
    "T1562.001": "Impair Defenses: Disable or Modify Tools",
    "T1566": "Phishing",
    "T1586.003": "Compromise Accounts: Cloud Accounts",
    "T1621": "Multi-Factor Authentication Request Generation",
}

_TECHNIQUE = re.compile(r"t(\d{4})(?:\.(\d{3}))?")
_OTHER = re.compile(r"[gs]\d{4}")  # groups and software: known to Sigma, not linked here


@dataclass(frozen=True, slots=True)
class AttackRef:
    id: str  # TA0006, T1110.003
    name: str  # "" when the technique is not in the table
    url: str

    def label(self) -> str:
        return f"{self.id} {self.name}" if self.name else self.id


def attack_ref(tag: str) -> AttackRef | None:
    """The ATT&CK tactic or technique an ``attack.*`` tag names; None for other tags and unknown names.
    Tactics may be written with ``_`` (Sigma) or ``-`` (``attack.credential-access``)."""
    head, _, rest = tag.strip().lower().partition(".")
    if head != "attack" or not rest:
        return None
    tactic = TACTICS.get(rest.replace("-", "_"))
    if tactic is not None:
        return AttackRef(tactic[0], tactic[1], f"https://attack.mitre.org/tactics/{tactic[0]}/")
    match = _TECHNIQUE.fullmatch(rest)
    if match is None:
        return None
    number, sub = match.groups()
    technique = f"T{number}" + (f".{sub}" if sub else "")
    path = f"T{number}/" + (f"{sub}/" if sub else "")
    return AttackRef(technique, TECHNIQUES.get(technique, ""), f"https://attack.mitre.org/techniques/{path}")


def unknown_attack_tag(tag: str) -> bool:
    """An ``attack.*`` tag that is neither a tactic, a technique id, nor a group/software id (a typo)."""
    head, _, rest = tag.strip().lower().partition(".")
    return head == "attack" and attack_ref(tag) is None and not _OTHER.fullmatch(rest)
