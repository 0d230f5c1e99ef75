"""The baseline `make bench` compares Tender with: a bare FastAPI endpoint doing one INSERT through psycopg.

It runs on the same machine, the same PostgreSQL (its own table in Tender's database) and the same kind of server
(uvicorn, uvloop, httptools, one process) as Tender's API, so Tender's accept rate as a share of it says how much
of the machine's HTTP + database capacity Tender turns into payments, comparable across machines.

Run by bench/run.py: `python bench/baseline.py --port P --database-url URL`.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool


def make_app(database_url: str, pool_size: int) -> FastAPI:
    pool = AsyncConnectionPool(database_url, min_size=pool_size, max_size=pool_size, open=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        async with pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS bench_baseline (id uuid PRIMARY KEY, body jsonb NOT NULL,"
                " created timestamptz NOT NULL DEFAULT now())"
            )
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/items")
    async def create(request: Request) -> Response:
        body = orjson.loads(await request.body())
        item_id = uuid.uuid4()
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO bench_baseline (id, body) VALUES (%s, %s)", (item_id, Jsonb(body)))
        return Response(orjson.dumps({"id": str(item_id)}), status_code=201, media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.database_url, args.pool_size),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
