"""What FastAPI's dependency tree costs per request (bench/README.md, "Third round").

The same shape as POST /v1/payments had (the merchant through two nested dependencies and the container, the
hub, `Prefer` through a dependency with a header parameter, the `Idempotency-Key` header) against the same
route with fewer declarations, each called 5,000 times straight through the ASGI app (no network, no database),
CPU time per request. Run: .venv/bin/python bench/fastapi_deps.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import Response

app = FastAPI()
BODY = b'{"a":1}'


async def get_container(request: Request) -> Any:
    return request.app


ContainerDep = Annotated[Any, Depends(get_container)]


async def any_key(request: Request, container: ContainerDep) -> str:
    return "principal"


async def secret_key(principal: Annotated[str, Depends(any_key)]) -> str:
    return principal


async def get_hub(request: Request) -> int:
    return 1


async def prefer_wait(request: Request, _prefer: Annotated[str | None, Header(alias="Prefer")] = None) -> None:
    return None


@app.post("/dependencies")
async def dependencies(
    request: Request,
    merchant: Annotated[str, Depends(secret_key)],
    container: ContainerDep,
    hub: Annotated[int, Depends(get_hub)],
    wait: Annotated[None, Depends(prefer_wait)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    await request.body()
    return Response(BODY, status_code=202, media_type="application/json")


@app.post("/headers")
async def headers(
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    _prefer: Annotated[str | None, Header(alias="Prefer")] = None,
) -> Response:
    await request.body()
    return Response(BODY, status_code=202, media_type="application/json")


@app.post("/request")
async def request_only(request: Request) -> Response:
    await request.body()
    return Response(BODY, status_code=202, media_type="application/json")


async def per_request_us(path: str, n: int = 5000) -> float:
    body = b'{"amount": 1000}' * 10
    request_headers = [
        (b"authorization", b"Bearer x"),
        (b"content-type", b"application/json"),
        (b"idempotency-key", b"k"),
    ]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.process_time()
    for _ in range(n):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": request_headers,
            "server": ("bench", 80), "client": ("bench", 1), "app": app, "state": {},
        }  # fmt: skip
        await app(scope, receive, send)
    return (time.process_time() - started) / n * 1e6


async def main() -> None:
    async with app.router.lifespan_context(app):
        for round_ in (1, 2):
            for path in ("/dependencies", "/headers", "/request"):
                print(f"round {round_} {path:14} {await per_request_us(path):7.1f} us of CPU per request")


if __name__ == "__main__":
    asyncio.run(main())
