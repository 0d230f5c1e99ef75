"""Numbered screenshots of a browser test's steps, in test-artifacts/browser/<test name>/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page

TIMEOUT_MS = 10_000  # a step that hangs fails in seconds, not Playwright's default 30 s
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


def folder_of(item: pytest.Item) -> Path:
    return ARTIFACTS / re.sub(r"[^\w.-]+", "_", item.name).strip("_")


class Shots:
    """Numbered screenshots of one test's steps: <folder>/01-<step>.png, 02-..."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def shot(self, page: Page, step: str) -> Path:
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w-]+", "-", step.lower()).strip("-") or "step"
        path = self.folder / f"{self.count:02d}-{name}.png"
        await page.screenshot(path=path, full_page=True)
        return path
