"""HTTP: the Okta hook endpoint and health checks. Checks, parses, persists, answers — nothing else.

Order on POST: declared size (413) → auth, constant time (401) → content type (415) → body read with
the cap enforced while reading (413) → parse (400) → durable store of the body in the inbox (503 on
failure) → 204. Splitting the body into events, checking each one and evaluating them happen after
the answer, in the detector (see sentinel/store/inbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sentinel.errors import PayloadError, StoreError
from sentinel.okta import VERIFICATION_HEADER, check_delivery, valid_challenge, verification_answer
from sentinel.service import Service

log = logging.getLogger("sentinel.intake")
BODY_READ_TIMEOUT_SECONDS = 10.0
READY_CHECK_TIMEOUT_SECONDS = 2.0


class _TooLarge(Exception):
    pass


def _error(status: int, message: str, path: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if path:
        body["path"] = path
    return JSONResponse(body, status_code=status)


def create_app(service: Service) -> Starlette:
    settings = service.settings
    okta = settings.okta
    header = okta.auth_header.lower()
    max_body = settings.server.max_body_bytes
    metrics = service.metrics
    clock = service.clock

    def reject(reason: str, status: int, message: str, request: Request, path: str | None = None) -> Response:
        metrics.requests_rejected.labels(reason).inc()
        client = request.client.host if request.client else "?"
        log.warning("rejected %s %s from %s: %d %s", request.method, request.url.path, client, status, reason)
        return _error(status, message, path)

    def authorized(request: Request) -> bool:
        if not okta.secrets:
            return okta.allow_unauthenticated
        presented = request.headers.get(header)
        if presented is None:
            return False
        candidate = presented.encode("utf-8", "surrogateescape")
        # Check every secret so the time taken does not say which one (or whether any) is close.
        results = [secret.matches(candidate) for secret in okta.secrets]
        return any(results)

    async def read_body(request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def okta_hook(request: Request) -> Response:
        if request.method == "GET":
            if not authorized(request):
                return reject("auth", 401, "missing or wrong authentication header", request)
            challenge = request.headers.get(VERIFICATION_HEADER)
            if not valid_challenge(challenge):
                return reject("no_challenge", 400, f"missing or oversized {VERIFICATION_HEADER} header", request)
            log.info("answered Okta verification challenge")
            return JSONResponse(verification_answer(challenge or ""))

        started = clock.monotonic()
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            return reject("bad_length", 400, "Content-Length is not a number", request)
        if declared is not None and int(declared) > max_body:
            return reject("too_large", 413, f"body larger than {max_body} bytes", request)
        if not authorized(request):
            return reject("auth", 401, "missing or wrong authentication header", request)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            return reject("content_type", 415, "Content-Type must be application/json", request)
        try:
            async with asyncio.timeout(BODY_READ_TIMEOUT_SECONDS):
                body = await read_body(request)
        except _TooLarge:
            return reject("too_large", 413, f"body larger than {max_body} bytes", request)
        except TimeoutError:
            return reject("slow_body", 408, "body not received in time", request)
        except ClientDisconnect:
            metrics.requests_rejected.labels("disconnect").inc()
            return Response(status_code=400)
        try:
            elements = check_delivery(body)
        except PayloadError as e:
            return reject("bad_payload", 400, str(e), request, e.location)
        if elements:
            received_at = clock.now()
            try:
                await service.store.receive(body, received_at)
            except StoreError as e:
                service.health.store_ok = False
                log.error("store failed: %s", e)
                return reject("store", 503, "could not store the delivery; retry", request)
            service.health.store_ok = True
            metrics.last_event_time.set(received_at.timestamp())
            service.delivery_stored()
        elapsed = clock.monotonic() - started
        metrics.ingest_seconds.observe(elapsed)
        # Per-delivery counts (new, duplicate, quarantined) are logged when the detector unpacks it.
        log.debug("okta delivery stored: %d elements, %d bytes, %.1f ms", elements, len(body), elapsed * 1000)
        return Response(status_code=204)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problems: list[str] = []
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_SECONDS):
                await service.store.check_writable()
            service.health.store_ok = True
        except (StoreError, TimeoutError) as e:
            service.health.store_ok = False
            problems.append(f"store not writable: {str(e) or 'timed out'}")
        health = service.health
        if not health.rules_loaded:
            problems.append("rules not loaded")
        elif not service.detector_running():
            problems.append("detector process not running (restarting; events are kept in the store)")
        body = {
            "status": "ok" if not problems else "unavailable",
            "store": "ok" if health.store_ok else "failing",
            "rules_loaded": health.rules_loaded,
            "last_reload": "ok" if health.last_reload_ok else f"failed: {health.last_reload_error}",
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
        Route("/hooks/okta", okta_hook, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if settings.metrics.enabled and settings.metrics.listen is None:
        routes.append(metrics_endpoint)
    return Starlette(routes=routes, lifespan=lifespan)


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
