"""What ``sentinel check`` says about ``[okta.api]``: the credential it would use (never its value) and, with
``--probe``, the outcome of one real System Log request."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sentinel.clock import SystemClock
from sentinel.config import OktaApiSettings
from sentinel.okta_api import ApiCredentials, ApiError, SystemLogClient

PROBE_LOOKBACK = timedelta(minutes=5)


def describe(api: OktaApiSettings, credentials: ApiCredentials) -> str:
    return (f"okta api: polling {api.base_url} every {api.poll_interval_seconds} s (the first start reads "
            f"{api.backfill_hours:g} h back, using at most {api.rate_limit_share:.0%} of the rate limit); "
            f"credential: {credentials.describe()}")


def probe(api: OktaApiSettings, credentials: ApiCredentials) -> tuple[bool, str]:
    """One polling request for one event (no retry): (worked, the line to print)."""
    return asyncio.run(_probe(api, credentials))


async def _probe(api: OktaApiSettings, credentials: ApiCredentials) -> tuple[bool, str]:
    statuses: list[int] = []
    client = SystemLogClient(api, credentials, on_response=statuses.append, give_up_after=0)
    try:
        url = client.first_url(SystemClock().now() - PROBE_LOOKBACK, limit=1)
        page = await client.get_page(url)
    except ApiError as e:
        answered = f" (answers: {', '.join(map(str, statuses))})" if statuses else ""
        return False, f"probe: failed: {e}{answered}"
    finally:
        await client.aclose()
    rate = client.rate_limit
    budget = f"; rate limit {rate.remaining} of {rate.limit} left" if rate is not None else ""
    return True, (f"probe: ok: HTTP {page.status} from {client.logs_url}, {len(page.events)} event(s) in the last "
                  f"{PROBE_LOOKBACK.seconds // 60} minutes{budget}")
