"""The triage page's ASGI app (its own listener, ``[ui] listen``; never the hook's): login, the security
headers every answer carries, and the routes of sentinel/web/ui/pages.py behind the login."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentinel.web.ui import auth
from sentinel.web.ui.auth import LoginLimiter
from sentinel.web.ui.forms import MAX_FORM_BYTES, FormTooLarge, read_form
from sentinel.web.ui.pages import Pages
from sentinel.web.ui.sources import TriageSources

COOKIE = "sentinel_ui"
SESSION_SECONDS = 12 * 3600
LOGIN = "/ui/login"
# No inline script or style, nothing from elsewhere, no framing: an event field that slipped through the
# escaping still could not run.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
Handler = Callable[[Request, str], Awaitable[Response]]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def templates() -> Jinja2Templates:
    # Autoescape everything: event fields are attacker-controlled, in HTML text, attributes and SVG alike.
    env = jinja2.Environment(loader=jinja2.PackageLoader("sentinel.web.ui", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return Jinja2Templates(env=env)


def create_ui_app(sources: TriageSources, *, limiter: LoginLimiter | None = None,
                  session_key: str | None = None) -> Starlette:
    """The triage page. Sessions are signed with a key made at start (a restart logs everyone out)."""
    limiter = limiter or LoginLimiter()
    views = templates()
    pages = Pages(sources, views)

    def refuse(status: int, text: str, **headers: str) -> Response:
        return PlainTextResponse(text, status_code=status, headers=headers)

    def too_many(wait: int) -> Response:
        return PlainTextResponse("too many failed logins from this address; try again later", status_code=429,
                                 headers={"Retry-After": str(wait)})

    def who(request: Request) -> str | Response:
        """The user of this request (session, else HTTP Basic), or the answer to send instead."""
        user = request.session.get(auth.SESSION_USER)
        if isinstance(user, str):
            return user
        address = auth.client_address(request)
        basic = auth.basic_credentials(request)
        if basic is not None:
            wait = limiter.retry_after(address)
            if wait:
                return too_many(wait)
            if auth.password_matches(sources.password, basic[1]):
                return auth.display_user(basic[0])
            limiter.failed(address)
        elif request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"{LOGIN}?next={quote(request.url.path)}", status_code=303)
        return refuse(401, "log in at /ui/login, or send the password as HTTP Basic",
                      **{"WWW-Authenticate": 'Basic realm="Sentinel triage", charset="UTF-8"'})

    def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = who(request)
            if isinstance(user, Response):
                return user
            if request.method == "POST":
                form = await read_form(request)
                if not auth.csrf_ok(request, form.get(auth.CSRF_FIELD)):
                    return refuse(403, "missing or wrong CSRF token: reload the page and try again")
            return await handler(request, user)
        return endpoint

    async def login_form(request: Request) -> Response:
        return views.TemplateResponse(request, "login.html", _login_context(request, ""))

    async def login(request: Request) -> Response:
        address = auth.client_address(request)
        wait = limiter.retry_after(address)
        if wait:
            return too_many(wait)
        form = await read_form(request)
        if not auth.csrf_ok(request, form.get(auth.CSRF_FIELD)):
            return refuse(403, "missing or wrong CSRF token: reload the login page and try again")
        password = form.get("password")
        if password is None or not auth.password_matches(sources.password, password):
            limiter.failed(address)
            return views.TemplateResponse(request, "login.html", _login_context(request, "Wrong password."),
                                          status_code=401)
        name = form.get("name")
        request.session.clear()  # a fresh session (and CSRF token) for the logged-in user
        request.session[auth.SESSION_USER] = auth.display_user(name or "")
        auth.csrf_token(request)
        return RedirectResponse(_next(form.get("next")), status_code=303)

    async def logout(request: Request, user: str) -> Response:
        request.session.clear()
        return RedirectResponse(LOGIN, status_code=303)

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    routes = [
        Route("/", root, methods=["GET"]),
        Route(LOGIN, login_form, methods=["GET"]),
        Route(LOGIN, login, methods=["POST"]),
        Route("/ui/logout", guarded(logout), methods=["POST"]),
        *[Route(path, guarded(handler), methods=[method]) for path, method, handler in pages.routes()],
        Mount("/ui/static", StaticFiles(packages=[("sentinel.web.ui", "static")]), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=session_key or secrets.token_urlsafe(32), session_cookie=COOKIE,
                   max_age=SESSION_SECONDS, path="/ui", same_site="strict", https_only=False),
    ]
    async def too_large(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"a form is at most {MAX_FORM_BYTES} bytes, with a Content-Length", status_code=413)

    return Starlette(routes=routes, middleware=middleware, exception_handlers={FormTooLarge: too_large})


def _login_context(request: Request, error: str) -> dict[str, Any]:
    return {"csrf": auth.csrf_token(request), "error": error, "next": _next(request.query_params.get("next"))}


def _next(target: object) -> str:
    """Where to go after login: a page of ours only (no open redirect)."""
    if isinstance(target, str) and target.startswith("/ui/") and "//" not in target and "\\" not in target:
        return target
    return "/ui/"
