"""Delivery channels. Each takes a rendered message and an address; raising means 'not delivered'."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Protocol


class Channel(Protocol):
    """Something that delivers a message to an address."""

    name: str

    async def send(self, address: str, message: dict[str, Any]) -> None: ...


class FileChannel:
    """Appends one JSON line per message to var/outbox/<address>.jsonl (demo and audit)."""

    name = "file"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, address: str, message: dict[str, Any]) -> None:
        safe = "".join(c for c in address if c.isalnum() or c in "-_") or "default"
        line = json.dumps(message, ensure_ascii=False, default=str) + "\n"
        await asyncio.to_thread(self._append, self.folder / f"{safe}.jsonl", line)

    @staticmethod
    def _append(path: Path, line: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(line)
