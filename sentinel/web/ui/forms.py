"""Posted forms: small (a few short fields, no files) and read once per request (the CSRF check reads the
form before the page does)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request

_CACHE = "sentinel.form"
MAX_FORM_BYTES = 64 * 1024  # the largest form (a silence: a few matchers and a comment) is far smaller


class FormTooLarge(Exception):
    """A form without a Content-Length, or longer than MAX_FORM_BYTES: refused before it is read."""


@dataclass(frozen=True)
class Form:
    items: Sequence[tuple[str, str]]

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.items if k == key), None)

    def text(self, key: str) -> str:
        return (self.get(key) or "").strip()

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self.items if k == key]


async def read_form(request: Request) -> Form:
    cached = request.scope.get(_CACHE)
    if isinstance(cached, Form):
        return cached
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        raise FormTooLarge(length)
    async with request.form(max_files=0, max_fields=40, max_part_size=64 * 1024) as data:
        form = Form(tuple((k, v) for k, v in data.multi_items() if isinstance(v, str)))
    request.scope[_CACHE] = form
    return form
