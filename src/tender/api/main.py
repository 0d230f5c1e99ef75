"""The ASGI entry point for uvicorn (`tender api`, also with several worker processes)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from tender.api.app import create_app
from tender.bootstrap import build
from tender.config import Settings
from tender.gc_tuning import tune_for_server


def app_from_env() -> FastAPI:
    """Built in each server process; `tender api` has resolved the database URL into the environment."""
    settings = Settings()
    url = settings.database_url or os.environ["TENDER_DATABASE_URL"]
    app = create_app(build(settings, url))
    tune_for_server()
    return app
