"""Each operator of the rule language, its type leniency, and its behaviour on hostile input."""

from __future__ import annotations

import pytest
import re2

from sentinel.rules import operators, values
from sentinel.rules.operators import OPERATORS, Options
from sentinel.rules.values import as_number, as_text, decode_java_map, decode_json


def compiled(name: str, operand: object, **options: bool):
    return OPERATORS[name].compile(operand, Options(ignore_case=options.get("ignore_case", False),
                                                    all=options.get("all", False)))


@pytest.mark.parametrize(
    ("operand", "value", "expected"),
    [
        ("SUCCESS", "SUCCESS", True),
        ("SUCCESS", "success", False),
        (["A", "B"], "B", True),
        (["A", "B"], "C", False),
        ("true", True, True),  # Sigma writes isProxy: 'true'; Okta sends a JSON boolean
        (True, "true", True),  # debugData writes booleans as strings
        (True, "True", True),
        (True, "false", False),
        (60, "60", True),  # numbers as strings
        (60, "60.0", True),
        (60, 60.0, True),
        ("60", 60, True),
        (60, "sixty", False),
        ("x", None, False),
        ("x", {"x": 1}, False),
        ("x", ["x"], False),
        (1, True, False),  # a boolean is not the number 1
    ],
)
def test_equals_is_type_lenient(operand, value, expected):
    assert compiled("equals", operand)(value) is expected


def test_equals_ignore_case():
    assert compiled("equals", ["Super Administrator"], ignore_case=True)("super administrator")
    assert not compiled("equals", ["Super Administrator"])("super administrator")


def test_text_operators():
    assert compiled("contains", "New Device=POSITIVE")("{New Device=POSITIVE, New IP=NEGATIVE}")
    assert not compiled("contains", "POSITIVE")("{New IP=NEGATIVE}")
    assert compiled("contains", ["a", "zz"])("abc")
    assert not compiled("contains", ["a", "zz"], all=True)("abc")
    assert compiled("contains", ["a", "c"], all=True)("abc")
    assert compiled("startswith", "okta")("okta-admin")
    assert compiled("startswith", "OKTA", ignore_case=True)("okta-admin")
    assert not compiled("startswith", "okta")("Okta-admin")
    assert compiled("endswith", ["@example.com", "@example.org"])("a@example.org")
    assert not compiled("endswith", "@example.com")("a@example.com.evil")
    assert compiled("contains", "6")(60)  # numbers are looked at in their text form


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("user.authentication.*", "user.authentication.sso", True),
        ("user.authentication.*", "user.session.start", False),
        ("svc_?", "svc_1", True),
        ("svc_?", "svc_12", False),
        ("[ab]*", "banana", True),
        ("[!ab]*", "banana", False),
        ("a.b", "axb", False),  # dots are literal
        ("*(all)", "Application administrator (all)", True),
    ],
)
def test_glob(pattern, value, expected):
    assert compiled("glob", pattern)(value) is expected


def test_regex_is_a_search_and_honours_ignore_case():
    assert compiled("regex", r"^0oa")("0oa1234")
    assert compiled("regex", r"admin")("superadmin!")
    assert not compiled("regex", r"^admin$")("Admin")
    assert compiled("regex", r"^admin$", ignore_case=True)("Admin")


def test_regex_compiles_through_re2_with_a_memory_cap(monkeypatch):
    seen = []
    real = re2.compile

    def spy(pattern, options=None):
        seen.append(options.max_mem)
        return real(pattern, options)

    monkeypatch.setattr("sentinel.rules.operators.re2.compile", spy)
    compiled("regex", "a+b")
    assert seen == [operators.MAX_REGEX_MEMORY]


@pytest.mark.parametrize("pattern", [r"(?<=a)b", r"(a)\1", "[z-a]", "(unclosed"])
def test_bad_regexes_are_rejected_at_load(pattern):
    with pytest.raises(ValueError, match="bad regex"):
        compiled("regex", pattern)


@pytest.mark.timeout(10)
def test_pathological_regex_on_a_megabyte_stays_linear():
    predicate = compiled("regex", r"(a+)+$")
    hostile = "a" * 1_000_000 + "!"
    for _ in range(20):
        assert predicate(hostile) is False


@pytest.mark.timeout(10)
def test_text_operators_cap_what_they_look_at():
    huge = "x" * 5_000_000 + "needle"
    assert not compiled("contains", "needle")(huge)  # past the cap: not looked at
    assert len(as_text(huge) or "") == values.MAX_TEXT_CHARS


def test_cidr_v4_and_v6():
    inside = compiled("cidr", ["10.0.0.0/8", "2001:db8::/32"])
    assert inside("10.1.2.3")
    assert inside("2001:db8::1")
    assert not inside("192.0.2.1")
    assert not inside("not an ip")
    assert not inside(None)
    assert not inside("1" * 10_000)
    with pytest.raises(ValueError, match="not a CIDR"):
        compiled("cidr", "10.0.0.0/33")


@pytest.mark.parametrize(
    ("name", "limit", "value", "expected"),
    [
        ("gt", 5, "6", True),
        ("gt", 5, 5, False),
        ("gte", 5, "5", True),
        ("lt", 5, 4.5, True),
        ("lte", 5, "5.0", True),
        ("gt", 5, "NaN", False),
        ("gt", 5, "inf", False),
        ("gt", 5, True, False),
        ("gt", 5, "12345678901234567890123456789012345678901234567890123456789012345678901", False),
    ],
)
def test_numeric_comparisons(name, limit, value, expected):
    assert compiled(name, limit)(value) is expected


def test_comparisons_need_numbers():
    with pytest.raises(ValueError, match="expects a number"):
        compiled("gt", "many")
    with pytest.raises(ValueError, match="expects a number"):
        compiled("lt", True)


def test_text_operators_need_text_operands():
    with pytest.raises(ValueError, match="expects text"):
        compiled("contains", 5)
    with pytest.raises(ValueError, match="at least one value"):
        compiled("equals", [])


def test_as_number_and_as_text():
    assert as_number("  60 ") == 60.0
    assert as_number(True) is None
    assert as_number(10**400) is None
    assert as_text(3.0) == "3"
    assert as_text(False) == "false"
    assert as_text(float("nan")) is None


def test_decoders():
    assert decode_json('{"Password Spray":"HIGH"}') == {"Password Spray": "HIGH"}
    assert decode_json("{not json") is None
    assert decode_json("[" * 100_000) is None  # deep nesting: None, not RecursionError
    behaviors = decode_java_map("{New Geo-Location=NEGATIVE, New Device=POSITIVE, Velocity=NEGATIVE}")
    assert behaviors == {"New Geo-Location": "NEGATIVE", "New Device": "POSITIVE", "Velocity": "NEGATIVE"}
    assert decode_java_map("{reasons=Anomalous Device, level=MEDIUM}") == {
        "reasons": "Anomalous Device",
        "level": "MEDIUM",
    }
    assert decode_java_map("{outer={inner=1, b=2}, c=3}") == {"outer": {"inner": "1", "b": "2"}, "c": "3"}
    assert decode_java_map("plain text") is None
