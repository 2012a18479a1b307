"""The suite's wait helpers fail loudly: a wait that times out raises, naming what it waited for."""

from __future__ import annotations

import pytest
from conftest import WaitTimeout, wait_for
from proof_helpers import wait_until


def test_wait_for_returns_once_the_condition_holds() -> None:
    calls = iter([0, 0, 3])
    assert wait_for(lambda: next(calls), timeout=5) is True


def test_wait_for_raises_naming_the_condition_its_last_value_and_the_detail() -> None:
    with pytest.raises(WaitTimeout) as raised:
        wait_for(lambda: [] == ["never"], timeout=0.1, detail=lambda: "daemon log tail")
    message = str(raised.value)
    assert '[] == ["never"]' in message and "last value False" in message and "daemon log tail" in message


def test_wait_until_raises_too_and_is_an_assertion_error() -> None:
    with pytest.raises(AssertionError, match=r"waited 0\.05 s for"):
        wait_until(lambda: None, timeout=0.05, interval=0.01)
