"""Shared by the System Log client's tests: one simulated clock for the fake Okta and the client, whose
sleep moves it (so a 60 s rate-limit wait takes no time and its length is exact), and a client factory."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fake_okta import FakeOkta
from fake_okta_auth import KeyPair, ec_key_pair, rsa_key_pair
from test_fake_okta import NOW

from sentinel.config import OktaApiSettings
from sentinel.okta_api import ApiCredentials, SystemLogClient
from sentinel.secret import Secret

TOKEN = "00abcSSWStokenForTheFake9"
T = TypeVar("T")


class SimClock:
    """``now()``/``monotonic()`` for the client, ``()`` (epoch seconds) for the fake; ``sleep`` advances it."""

    def __init__(self, epoch: float = NOW) -> None:
        self.epoch = epoch
        self.started = epoch
        self.sleeps: list[float] = []
        self.request_times: list[float] = []

    def __call__(self) -> float:
        return self.epoch

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.epoch, UTC)

    def monotonic(self) -> float:
        return self.epoch - self.started

    def advance(self, seconds: float) -> None:
        self.epoch += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.epoch += seconds


def api_settings(fake: FakeOkta, **overrides: Any) -> OktaApiSettings:
    return OktaApiSettings(base_url=fake.base, **overrides)


def ssws(token: str = TOKEN) -> ApiCredentials:
    return ApiCredentials("ssws", Secret(token), "$SENTINEL_OKTA_API_TOKEN")


def make_client(fake: FakeOkta, clock: SimClock, credentials: ApiCredentials | None = None,
                statuses: list[int] | None = None, **settings: Any) -> SystemLogClient:
    give_up = settings.pop("give_up_after", 300.0)
    request_lock = settings.pop("request_lock", None)
    return SystemLogClient(api_settings(fake, **settings), credentials or ssws(), clock=clock,
                           on_response=statuses.append if statuses is not None else None, sleep=clock.sleep,
                           give_up_after=give_up, request_lock=request_lock)


def run(client: SystemLogClient, work: Callable[[SystemLogClient], Awaitable[T]]) -> T:
    """Run ``work(client)`` in a fresh event loop and close the client."""

    async def main() -> T:
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def ago(clock: SimClock, **delta: float) -> datetime:
    return clock.now() - timedelta(**delta)


@functools.cache
def rsa_keys() -> KeyPair:
    """One RSA pair for the whole run: generating 2048-bit keys is the slow part of these tests."""
    return rsa_key_pair()


@functools.cache
def ec_keys() -> KeyPair:
    return ec_key_pair()
