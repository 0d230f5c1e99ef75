"""Browser tests: Playwright (the PyPI package, whose driver it bundles) driving Debian's headless Chromium.

Never Playwright's own browser download (`playwright install` fails on a closed network): `make test` installs
Debian's `chromium` (the Makefile's `browser` target) and the tests launch /usr/bin/chromium, or the binary named
by TENDER_TEST_CHROMIUM. A missing browser fails the tests loudly instead of skipping them: CI must prove them.

Fixtures: `browser` (one Chromium per session), `page` (a fresh context per test, desktop size), `phone_page`
(390x844, mobile, touch), `no_script_page` (desktop size, JavaScript disabled) and `shots`, whose
`await shots.shot(page, "step")` saves test-artifacts/browser/<test name>/<NN>-<step>.png in order; a failed
test also leaves `failed-<fixture>.png` of each page it had. The final summary names the folder.

The hosted checkout page's tests share `tender_url` (Tender's API and pages on a loopback port, per module),
`shop`, `worker` (the payment pump, run while the browser waits) and `simulator` (simulator.test forwarded to
the simulator's port); their classes and the shopper's steps are in tests/support/checkout_page.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright
from starlette.applications import Starlette
from starlette.routing import Route as StarletteRoute

from tender.api.app import create_app
from tests.support.browser import ARTIFACTS, TIMEOUT_MS, Shots, folder_of
from tests.support.checkout_page import Shop, Simulator, Worker
from tests.support.serve import serve

CHROMIUM = os.environ.get("TENDER_TEST_CHROMIUM", "/usr/bin/chromium")
# Playwright passes several of these by itself today (seen: --no-sandbox, --no-first-run and the three below);
# they are named here so that the launch does not rest on its defaults.
CHROMIUM_ARGS = [
    "--no-sandbox",  # required as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home at start; a closed network refuses it many connections at a time
    # and the browser stalls.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}

_SHOTS_KEY = pytest.StashKey[dict[str, int]]()  # test folder -> screenshots saved, for the summary
_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


def _failed(item: pytest.Item) -> bool:
    report = item.stash.get(_CALL_REPORT, None)
    return report is not None and report.failed


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium package"
            " (or set TENDER_TEST_CHROMIUM to a Chromium binary)",
            pytrace=False,
        )
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@asynccontextmanager
async def _page(browser: Browser, request: pytest.FixtureRequest, **options: Any) -> AsyncIterator[Page]:
    context = await browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    try:
        yield page
    finally:
        if _failed(request.node) and not page.is_closed():
            folder = folder_of(request.node)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                await page.screenshot(path=folder / f"failed-{request.fixturename}.png", full_page=True)
            except Exception as exc:  # the failure itself matters more than its picture
                print(f"no failure screenshot: {exc}")
        await context.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A page in a fresh browser context (no cookies or storage from other tests), 1280x720."""
    async with _page(browser, request) as p:
        yield p


@pytest.fixture
async def phone_page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A page in a fresh context the size of a phone: 390x844 CSS pixels, mobile, touch."""
    async with _page(browser, request, **PHONE) as p:
        yield p


@pytest.fixture
async def no_script_page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A page in a fresh context with JavaScript disabled (as some shoppers browse), 1280x720."""
    async with _page(browser, request, java_script_enabled=False) as p:
        yield p


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Iterator[Shots]:
    folder = folder_of(request.node)
    shutil.rmtree(folder, ignore_errors=True)  # only this run's pictures
    s = Shots(folder)
    yield s
    request.config.stash.setdefault(_SHOTS_KEY, {})[str(folder)] = s.count


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    saved = config.stash.get(_SHOTS_KEY, {})
    if not saved:
        return
    try:
        where = ARTIFACTS.relative_to(Path.cwd())
    except ValueError:
        where = ARTIFACTS
    terminalreporter.section("browser screenshots")
    terminalreporter.write_line(f"{sum(saved.values())} screenshots from {len(saved)} tests in {where}/")


@pytest.fixture(scope="module")
async def tender_url(container: Any) -> AsyncIterator[str]:
    """Tender's API (and so its pages) on a loopback port; sessions made meanwhile get their `url` there."""
    app = create_app(container)
    await app.state.hub.start()  # serve() runs without lifespan: the hub is started here
    saved = container.settings.public_url
    try:
        async with serve(app) as url:
            container.settings.public_url = url  # Settings.base_url: the session's `url`, 3-D Secure's return
            try:
                yield url
            finally:
                container.settings.public_url = saved
    finally:
        await app.state.hub.stop()


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    s = Shop()
    async with serve(Starlette(routes=[StarletteRoute("/thanks", s.page), StarletteRoute("/cart", s.page)])) as url:
        s.url = url
        yield s


@pytest.fixture
def worker(container: Any) -> Worker:
    return Worker(container)


@pytest.fixture
async def simulator(simulator_url: str) -> AsyncIterator[Simulator]:
    s = Simulator(simulator_url)
    yield s
    assert not s.errors, s.errors
