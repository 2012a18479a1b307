"""The ingest baselines: a bare Starlette endpoint that reads and parses the body, then answers 204
(``json.loads``; with ``--check``, Sentinel's own parse; with ``--durable``, that parse and a durable
commit of the body).

Served by uvicorn with the settings ``sentinel serve`` uses (loop and HTTP implementation ``auto``, so
uvloop + httptools when installed, one worker, no access log, keep-alive 5 s), so the only difference
measured by ``bench/ingest.py`` is what Sentinel does on the request path: auth, checks, the durable
group-committed SQLite write, metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sentinel.okta import check_delivery


async def hook(request: Request) -> Response:
    json.loads(await request.body())
    return Response(status_code=204)


async def checking_hook(request: Request) -> Response:
    """The bare endpoint with Sentinel's own parse (``check_delivery``: msgspec, validating every byte
    but decoding only the envelope) instead of ``json.loads``."""
    check_delivery(await request.body())
    return Response(status_code=204)


def durable_app(path: Path) -> Starlette:
    """The bare endpoint plus the one thing Sentinel must add: committing the body durably before the
    answer, with Sentinel's own inbox writer (SQLite WAL, synchronous=FULL, group commits). The floor
    for any endpoint that stores what it acknowledges, measured beside the two others."""
    from datetime import UTC, datetime

    from sentinel.model import format_timestamp
    from sentinel.store import inbox
    from sentinel.store.appender import Appender
    from sentinel.store.database import connect

    conn = connect(path)
    inbox.prepare(conn)
    conn.close()
    # One stamp a round, as Sentinel. No detector checkpoints this WAL: SQLite's default automatic
    # checkpoint (every 1000 pages, in the COMMIT that crosses them), on the endpoint's core.
    appender = Appender(path, lambda: format_timestamp(datetime.now(UTC)), autocheckpoint_pages=1000,
                        checkpoint_in_commit=True)

    async def durable_hook(request: Request) -> Response:
        body = await request.body()
        check_delivery(body)
        await appender.append(body)
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        appender.start()
        yield
        appender.close()

    return Starlette(routes=[Route("/hooks/okta", durable_hook, methods=["POST"]), Route("/healthz", healthz)],
                     lifespan=lifespan)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def bare_app(endpoint: Callable[[Request], Awaitable[Response]]) -> Starlette:
    return Starlette(routes=[Route("/hooks/okta", endpoint, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--check", action="store_true", help="parse with Sentinel's check_delivery, not json.loads")
    parser.add_argument("--durable", metavar="DB", type=Path,
                        help="parse with check_delivery and commit each body to this SQLite file")
    args = parser.parse_args()
    app = durable_app(args.durable) if args.durable else bare_app(checking_hook if args.check else hook)
    uvicorn.run(app, host="127.0.0.1", port=args.port,
                access_log=False, lifespan="on", timeout_keep_alive=5,
                server_header=False, log_level="warning")


if __name__ == "__main__":
    main()
