"""HTTP: the Okta hook endpoint and health checks. Checks, parses, persists, answers — nothing else.

``/hooks/okta`` is a plain ASGI endpoint (sentinel/web/hook_endpoint.py, the hot path, dispatched before
Starlette's router); health, readiness and metrics are Starlette routes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sentinel.service.daemon import Service
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


def create_app(service: Service) -> ASGIApp:
    settings = service.settings

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Unauthenticated, so terse: check names and ok/failing only; why is in the log."""
        await service.check_store()
        checks = service.ready_checks()
        problems = [name for name in READINESS if not checks[name]]
        body = {
            "status": "ok" if not problems else "unavailable",
            "store": _word(checks["store"]),
            "rules_loaded": checks["rules_loaded"],
            "detector": _word(checks["detector"]),
            "last_reload": _word(checks["last_reload"]),
            "rules": service.metrics_rules(),
            "problems": problems,
        }
        return JSONResponse(body, status_code=200 if not problems else 503)

    metrics_endpoint = metrics_route(service)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if settings.metrics.enabled and settings.metrics.listen is None:
        routes.append(metrics_endpoint)
    return SentinelApp(OktaHookEndpoint(service), Starlette(routes=routes, lifespan=lifespan))


def metrics_route(service: Service) -> Route:
    """``/metrics`` in Prometheus text format, behind a bearer token when configured."""
    settings = service.settings.metrics
    token = settings.token if settings.require_token else None

    async def metrics(request: Request) -> Response:
        if token is not None:
            presented = request.headers.get("authorization", "")
            if not token.matches(presented.removeprefix("Bearer ").encode("utf-8", "surrogateescape")) \
                    or not presented.startswith("Bearer "):
                service.metrics.requests_rejected.labels("metrics_auth").inc()
                return _error(401, "missing or wrong bearer token")
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics, methods=["GET"])


def create_metrics_app(service: Service) -> Starlette:
    """A separate listener for ``[metrics] listen``: only ``/metrics``."""
    return Starlette(routes=[metrics_route(service)])
