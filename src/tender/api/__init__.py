"""The HTTP API (FastAPI): auth, idempotency, errors, one router module per resource."""
