"""A headless Chromium: proof that a report's HTML opens offline, as a PNG screenshot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    """The path of an installed Chromium (or Chrome), else None."""
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 3000) -> Path:
    """Render ``html`` in headless Chromium and save a PNG (proves the page opens offline)."""
    browser = find_browser()
    if browser is None:
        raise ValueError("no Chromium found for --screenshot; install it (Debian: apt-get install chromium) or leave the flag out")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--window-size={width},{height}", f"--screenshot={png.resolve()}", html.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not png.exists():
        raise ValueError(f"Chromium could not render {html} (exit {result.returncode}): {(result.stderr or '').strip().splitlines()[-1:]}")
    return png
