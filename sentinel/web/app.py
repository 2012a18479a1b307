"""HTTP: the Okta hook endpoint and health checks. Checks, parses, persists, answers — nothing else.

``/hooks/okta`` is a plain ASGI endpoint (sentinel/web/hook_endpoint.py, the hot path, dispatched before
Starlette's router); health, readiness and metrics are Starlette routes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sentinel.secret import Secret
from sentinel.service.metrics import Metrics
from sentinel.web.hook_endpoint import PATH as HOOK_PATH
from sentinel.web.hook_endpoint import OktaHookEndpoint

# The checks that make /readyz answer 503; a failed reload does not (the previous configuration runs on).
READINESS = ("store", "rules_loaded", "detector")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _word(ok: bool) -> str:
    return "ok" if ok else "failing"


class SentinelApp:
    """``/hooks/okta`` straight to its endpoint; everything else (lifespan included) to Starlette."""

    def __init__(self, hook: OktaHookEndpoint, rest: Starlette) -> None:
        self.hook = hook
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == HOOK_PATH:
            await self.hook(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


class Readiness(Protocol):
    """What ``/readyz`` reads (sentinel/service/health.py)."""

    rule_count: int

    async def check_store(self) -> None: ...

    def ready_checks(self) -> dict[str, bool]: ...

    def poll_readiness(self) -> dict[str, Any] | None: ...


class Lifespan(Protocol):
    """What the server's lifespan starts and stops (sentinel/service/lifecycle.py)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def create_app(hook: OktaHookEndpoint, health: Readiness, lifecycle: Lifespan, metrics: Route | None) -> ASGIApp:
    """The main listener; ``metrics`` is the ``/metrics`` route when it is served here (not on its own)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Unauthenticated, so terse: check names and ok/failing only; why is in the log."""
        await health.check_store()
        checks = health.ready_checks()
        problems = [name for name in READINESS if not checks[name]]
        body: dict[str, Any] = {
            "status": "ok" if not problems else "unavailable",
            "store": _word(checks["store"]),
            "rules_loaded": checks["rules_loaded"],
            "detector": _word(checks["detector"]),
            "last_reload": _word(checks["last_reload"]),
            "rules": health.rule_count,
            "problems": problems,
        }
        poll = health.poll_readiness()
        if poll is not None:  # reported, never a reason for 503: hook intake works without the poller
            body["okta_poll"] = poll
        return JSONResponse(body, status_code=200 if not problems else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await lifecycle.start()
        try:
            yield
        finally:
            await lifecycle.stop()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if metrics is not None:
        routes.append(metrics)
    return SentinelApp(hook, Starlette(routes=routes, lifespan=lifespan))


def metrics_route(metrics: Metrics, token: Secret | None) -> Route:
    """``/metrics`` in Prometheus text format, behind a bearer token when one is given."""

    async def scrape(request: Request) -> Response:
        if token is not None:
            presented = request.headers.get("authorization", "")
            if not token.matches(presented.removeprefix("Bearer ").encode("utf-8", "surrogateescape")) \
                    or not presented.startswith("Bearer "):
                metrics.requests_rejected.labels("metrics_auth").inc()
                return _error(401, "missing or wrong bearer token")
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", scrape, methods=["GET"])


def create_metrics_app(route: Route) -> Starlette:
    """A separate listener for ``[metrics] listen``: only ``/metrics``."""
    return Starlette(routes=[route])
