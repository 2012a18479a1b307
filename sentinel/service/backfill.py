"""``sentinel backfill``: read a chosen window of the System Log with bounded requests (``since`` and
``until``, on ``published``) into the inbox, beside a running daemon. Its detector unpacks the pages like
any other delivery; events already stored (from the hook or the poller) are dropped on ``uuid``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sentinel.clock import Clock
from sentinel.service.poller import PAGE_LIMIT, LogClient, newest_published


@dataclass
class BackfillProgress:
    pages: int = 0
    events: int = 0
    newest: datetime | None = None  # the newest ``published`` read so far


async def backfill(client: LogClient, since: datetime, until: datetime, event_types: Sequence[str] | None,
                   append_page: Callable[[bytes, datetime], None], clock: Clock,
                   progress: Callable[[BackfillProgress], None]) -> BackfillProgress:
    """Follow the bounded request's next links to the end; each page with events appended as it comes
    (durable before the next request), ``progress`` told after each page. Raises ApiError / StoreError."""
    done = BackfillProgress()
    url: str | None = client.first_url(since, until, event_types=event_types, limit=PAGE_LIMIT)
    while url is not None:
        page = await client.get_page(url)
        now = clock.now()
        if page.count:
            append_page(page.body, now)
        done.pages += 1
        done.events += page.count
        done.newest = newest_published(page.published, done.newest, now)
        progress(done)
        # A bounded request ends without a next link; a next equal to self would repeat the page forever.
        url = page.next_url if page.next_url != page.self_url else None
    return done
