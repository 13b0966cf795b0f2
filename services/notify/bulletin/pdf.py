"""PDF through headless Chromium (`--print-to-pdf`), where the machine has it; otherwise a stated reason."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 90.0


def find_chromium() -> str | None:
    """The path of a Chromium-family browser, or None."""
    for name in CANDIDATES:
        found = shutil.which(name) if not name.startswith("/") else (name if Path(name).exists() else None)
        if found:
            return found
    return None


def chromium_args(browser: str, profile: Path) -> list[str]:
    """Flags for a headless run that needs no display, no GPU, no network and leaves no profile behind."""
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]


async def print_pdf(html: Path, out: Path) -> str | None:
    """Render `html` to `out`; returns None on success, else why there is no PDF."""
    browser = find_chromium()
    if browser is None:
        return "no chromium found (install Debian's chromium package)"
    uri = await asyncio.to_thread(lambda: html.resolve().as_uri())
    with tempfile.TemporaryDirectory(prefix="xh-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            *chromium_args(browser, Path(profile)),
            "--no-pdf-header-footer",
            f"--print-to-pdf={out}",
            uri,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return f"chromium did not finish within {TIMEOUT_S:.0f} s"
    if proc.returncode != 0 or not await asyncio.to_thread(_non_empty, out):
        return f"chromium failed (exit {proc.returncode}): {err.decode(errors='replace')[-300:]}"
    return None


def _non_empty(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0
