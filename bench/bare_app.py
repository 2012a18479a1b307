"""The ingest baseline: a bare Starlette endpoint that reads and parses the body, then answers 204.

Served by uvicorn with the settings ``sentinel serve`` uses (loop and HTTP implementation ``auto``, so
uvloop + httptools when installed, one worker, no access log, keep-alive 5 s), so the only difference
measured by ``bench/ingest.py`` is what Sentinel does on the request path: auth, checks, event parsing,
the durable group-committed SQLite write, metrics and the log line.
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def hook(request: Request) -> Response:
    json.loads(await request.body())
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/hooks/okta", hook, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, lifespan="on", timeout_keep_alive=5,
                server_header=False, log_level="warning")


if __name__ == "__main__":
    main()
