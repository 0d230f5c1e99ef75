"""Secrets generated on first run and kept in the data folder, readable by their owner only.

For development and single-machine installs: production sets the secrets in the environment. A secret
travels to child processes by environment too, never on a command line (which `ps` shows to every user).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

NOTIFY_SECRET_FILE = "simulator-notify.key"  # noqa: S105 (a file name)


def load_or_create(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`, or a new one from `make` written there (mode 0600). Processes starting at once
    agree on one secret: it is written whole under a temporary name, then linked into place, which fails
    for all but the first; the others read the winner's."""
    if path.exists():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(make() + "\n")
        with contextlib.suppress(FileExistsError):  # another process was first: its secret is the one
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"{path} is empty: delete it to have a new secret generated")
    return value


def notify_secret(configured: str | None, data_dir: Path) -> str:
    """The simulator's notification secret: as configured, else the data folder's (made on first use)."""
    if configured:
        return configured
    return load_or_create(
        data_dir.expanduser().resolve() / NOTIFY_SECRET_FILE, lambda: "simsec_" + secrets.token_urlsafe(32)
    )
