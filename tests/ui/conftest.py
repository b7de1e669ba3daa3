"""Browser tests of the Airflow UI: Debian's Chromium driven by Playwright for Python.

Nothing is downloaded: Playwright runs the system browser (``MLCYCLE_CHROMIUM``, default
``/usr/bin/chromium``); ``playwright install`` is never needed. Without the browser or the
package the tests skip with a message saying how to get them (``.ci/run`` installs both).

Every step of a test saves a screenshot under ``MLCYCLE_UI_SCREENSHOTS`` (default
``build/ui-screenshots``); a failing step saves one named ``…-FAILED.png`` and its path is in
the failure message.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page

CHROMIUM = Path(os.environ.get("MLCYCLE_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("MLCYCLE_UI_SCREENSHOTS", REPO / "build" / "ui-screenshots"))
# The machines have no internet: no background fetches, no component updates, no QUIC probes.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, with the fix; None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is missing: pip install -r requirements-dev.txt (never `playwright install`)"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or set MLCYCLE_CHROMIUM)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if why := missing_browser():
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Shots:
    """Numbered screenshots of one test's steps; a failed step's path goes into the failure."""

    page: Page
    folder: Path
    taken: list[Path] = field(default_factory=list)

    def save(self, name: str, page: Page | None = None) -> Path:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        path = self.folder / f"{len(self.taken) + 1:02d}-{slug}.png"
        (page or self.page).screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run one step; screenshot after it, or on failure a ``-FAILED`` one named in the error."""
        try:
            yield
        except Exception as exc:
            path = self.save(f"{name} FAILED")
            raise AssertionError(f"UI step {name!r} failed (screenshot {path}): {exc}") from exc
        self.save(name)


@pytest.fixture
def shots_for(request):
    """Make the ``Shots`` of a page, in a folder named after the test (emptied first)."""

    def make(page: Page) -> Shots:
        folder = SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return Shots(page, folder)

    return make
