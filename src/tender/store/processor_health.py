"""SQL for processor_health: each processor's circuit breaker (per merchant account at it; '' is Tender's own)
and the operator's pause, one row shared by every process. Times come from the database's clock, so processes
on several machines agree on when a circuit half-opens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from tender.domain.circuit import Circuit, CircuitState, ProcessorHealthRecord, buckets_from, buckets_to
from tender.store.db import Conn

_COLUMNS = (
    "processor, account, state, consecutive_failures, buckets, opened_at, retry_at, reopened, probe_successes,"
    " probes_out, probes_expire, paused, paused_reason, paused_at"
)


def _record(row: DictRow | dict[str, Any]) -> ProcessorHealthRecord:
    circuit = Circuit(
        state=CircuitState(row["state"]),
        consecutive_failures=row["consecutive_failures"],
        buckets=buckets_from(row["buckets"]),
        opened_at=row["opened_at"],
        retry_at=row["retry_at"],
        reopened=row["reopened"],
        probe_successes=row["probe_successes"],
        probes_out=row["probes_out"],
        probes_expire=row["probes_expire"],
    )
    return ProcessorHealthRecord(
        processor=row["processor"],
        account=row["account"],
        circuit=circuit,
        paused=row["paused"],
        paused_reason=row["paused_reason"],
        paused_at=row["paused_at"],
    )


async def now(conn: Conn) -> datetime:
    cur = await conn.execute("SELECT clock_timestamp() AS now")
    row = await cur.fetchone()
    assert row is not None
    value: datetime = row["now"]
    return value


async def read(
    conn: Conn, processors: Sequence[str], accounts: Sequence[str] | None
) -> tuple[list[ProcessorHealthRecord], datetime]:
    """The rows of these processors and accounts (None: every account; a processor never recorded has none),
    ordered by processor and account, and the database's now."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, clock_timestamp() AS now FROM processor_health"
        " WHERE processor = ANY(%s) AND (%s::text[] IS NULL OR account = ANY(%s)) ORDER BY processor, account",
        (list(processors), None if accounts is None else list(accounts), None if accounts is None else list(accounts)),
    )
    rows = await cur.fetchall()
    return [_record(r) for r in rows], (rows[0]["now"] if rows else await now(conn))


async def lock(conn: Conn, processor: str, account: str) -> tuple[ProcessorHealthRecord, datetime]:
    """The row, created on first use, locked until the caller's transaction ends, and the database's now."""
    await conn.execute(
        "INSERT INTO processor_health (processor, account) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (processor, account),
    )
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, clock_timestamp() AS now FROM processor_health"
        " WHERE processor = %s AND account = %s FOR UPDATE",
        (processor, account),
    )
    row = await cur.fetchone()
    assert row is not None  # inserted above, and rows are never deleted
    return _record(row), row["now"]


async def save_circuit(conn: Conn, processor: str, account: str, circuit: Circuit) -> None:
    await conn.execute(
        "UPDATE processor_health SET state = %s, consecutive_failures = %s, buckets = %s, opened_at = %s,"
        " retry_at = %s, reopened = %s, probe_successes = %s, probes_out = %s, probes_expire = %s, updated = now()"
        " WHERE processor = %s AND account = %s",
        (
            circuit.state.value,
            circuit.consecutive_failures,
            Jsonb(buckets_to(circuit.buckets)),
            circuit.opened_at,
            circuit.retry_at,
            circuit.reopened,
            circuit.probe_successes,
            circuit.probes_out,
            circuit.probes_expire,
            processor,
            account,
        ),
    )


async def set_paused(conn: Conn, processor: str, *, paused: bool, reason: str | None) -> None:
    """Pause or resume the processor (the pause lives on its '' row; the caller has it locked)."""
    await conn.execute(
        "UPDATE processor_health SET paused = %s, paused_reason = %s,"
        " paused_at = CASE WHEN %s THEN coalesce(CASE WHEN paused THEN paused_at END, now()) END, updated = now()"
        " WHERE processor = %s AND account = ''",
        (paused, reason if paused else None, paused, processor),
    )
