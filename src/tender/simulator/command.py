"""The `tender simulator` command (also `python -m tender.simulator`)."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from tender.simulator.config import ConfigError, SimulatorConfig


class _IntentionalDropFilter(logging.Filter):
    """Hide uvicorn's error line for connections the simulator cuts on purpose (drop_rate)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


def notify_secret() -> str:
    """From the environment or Tender's data folder, as Tender resolves its own (bootstrap.notify_secret)."""
    from tender.config import Settings
    from tender.keyfiles import notify_secret as resolve

    own = os.environ.get("TENDER_SIM_NOTIFY_SECRET")
    if own:
        return own
    settings = Settings()
    configured = settings.simulator_notify_secret
    return resolve(configured.get_secret_value() if configured else None, settings.data_dir)


def simulator_command(
    host: Annotated[str, typer.Option(envvar="TENDER_SIM_HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="TENDER_SIM_PORT", help="Port to listen on.")] = 8001,
    db_path: Annotated[
        str | None, typer.Option(envvar="TENDER_SIM_DB_PATH", help="SQLite file for the record; default in memory.")
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(envvar="TENDER_SIM_PUBLIC_URL", help="Base URL shoppers reach; default http://HOST:PORT."),
    ] = None,
    notify_url: Annotated[
        str | None, typer.Option(envvar="TENDER_SIM_NOTIFY_URL", help="Where to POST signed notifications.")
    ] = None,
    notify_on_create: Annotated[
        bool, typer.Option(envvar="TENDER_SIM_NOTIFY_ON_CREATE", help="Notify every new authorization too.")
    ] = True,
    upi_delay_ms: Annotated[
        int,
        typer.Option(envvar="TENDER_SIM_UPI_DELAY_MS", help="How long success@upi and failure@upi take to decide."),
    ] = 1500,
    latency_ms: Annotated[int, typer.Option(envvar="TENDER_SIM_LATENCY_MS", help="Added to every charge.")] = 0,
    latency_jitter_ms: Annotated[
        int, typer.Option(envvar="TENDER_SIM_LATENCY_JITTER_MS", help="Uniform random extra latency, up to this.")
    ] = 0,
    error_rate: Annotated[
        float, typer.Option(envvar="TENDER_SIM_ERROR_RATE", help="Share of charges refused with 503 (not charged).")
    ] = 0.0,
    timeout_rate: Annotated[
        float, typer.Option(envvar="TENDER_SIM_TIMEOUT_RATE", help="Share of charges answered late (charged).")
    ] = 0.0,
    timeout_seconds: Annotated[
        float, typer.Option(envvar="TENDER_SIM_TIMEOUT_SECONDS", help="How late a timed-out answer comes.")
    ] = 15.0,
    drop_rate: Annotated[
        float, typer.Option(envvar="TENDER_SIM_DROP_RATE", help="Share of charges whose connection is cut.")
    ] = 0.0,
    drop_after_charge_share: Annotated[
        float,
        typer.Option(envvar="TENDER_SIM_DROP_AFTER_CHARGE_SHARE", help="Share of dropped charges cut after charging."),
    ] = 0.5,
    seed: Annotated[int | None, typer.Option(envvar="TENDER_SIM_SEED", help="Seed for reproducible faults.")] = None,
    log_level: Annotated[str, typer.Option(envvar="TENDER_SIM_LOG_LEVEL", help="uvicorn log level.")] = "info",
) -> None:
    """Run the card-acquirer and APM simulator (test cards, 3-D Secure, approval pages, faults) as its own
    HTTP service.

    Notifications are signed with TENDER_SIM_NOTIFY_SECRET, else Tender's TENDER_SIMULATOR_NOTIFY_SECRET,
    else the secret generated in TENDER_DATA_DIR that Tender uses by default (never a command-line option:
    `ps` shows command lines to every user)."""
    import uvicorn  # imported here so the main CLI starts fast

    from tender.gc_tuning import tune_for_server
    from tender.simulator.app import create_app

    try:
        config = SimulatorConfig(
            db_path=db_path,
            public_url=public_url or f"http://{host}:{port}",
            notify_url=notify_url,
            notify_secret=notify_secret(),
            notify_on_create=notify_on_create,
            upi_delay_ms=upi_delay_ms,
            latency_ms=latency_ms,
            latency_jitter_ms=latency_jitter_ms,
            error_rate=error_rate,
            timeout_rate=timeout_rate,
            timeout_seconds=timeout_seconds,
            drop_rate=drop_rate,
            drop_after_charge_share=drop_after_charge_share,
            seed=seed,
        )
    except ConfigError as exc:
        raise typer.BadParameter(exc.message, param_hint=f"--{exc.param.replace('_', '-')}") from None
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:%(name)s: %(message)s")
    logging.getLogger("uvicorn.error").addFilter(_IntentionalDropFilter())
    app = create_app(config)
    tune_for_server()
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
