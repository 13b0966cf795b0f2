"""Listeners of the commands the services send to the store: what a test counts or looks at."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import monitoring

from xiuhua.observability import BULK_WRITE, bulk_write_targets


def _ledger_named(collection: str, doc: Any) -> str:
    """Ledger entries as `ledger:<consumer>` (one insert per applied batch; tells the consumers apart)."""
    if collection != "ledger" or not isinstance(doc, dict):
        return collection
    return "ledger:" + str(doc.get("_id", "")).split(":", 1)[0]


class _OnStart(monitoring.CommandListener):
    """A listener of commands as they start; their outcomes are not looked at."""

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Started(_OnStart):
    """What `pick` keeps of each command as it starts (None: nothing), in order."""

    def __init__(self, pick: Callable[[monitoring.CommandStartedEvent], Any]) -> None:
        self.pick = pick
        self.seen: list[Any] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if (kept := self.pick(event)) is not None:
            self.seen.append(kept)


class Commands(_OnStart):
    """Counts the commands sent to one database, per command and collection, while active."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.active = True
        self.by_collection: dict[tuple[str, str], int] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.active:
            return
        if event.command_name == BULK_WRITE:  # sent to `admin`: one command writing to several collections
            targets = sorted(
                {
                    _ledger_named(c, op.get("document"))
                    for _, db, c, op in bulk_write_targets(event.command)
                    if db == self.database
                }
            )
            if targets:
                self._count((BULK_WRITE, "+".join(targets)))
            return
        if event.database_name != self.database:
            return
        if event.command_name in ("find", "insert", "update", "delete"):
            collection = str(event.command.get(event.command_name))
            if event.command_name == "insert":
                collection = _ledger_named(collection, (event.command.get("documents") or [{}])[0])
            self._count((event.command_name, collection))

    def _count(self, key: tuple[str, str]) -> None:
        self.by_collection[key] = self.by_collection.get(key, 0) + 1

    def touching(self, collections: set[str]) -> int:
        """Commands that wrote to or read from any of these collections (a bulkWrite to several counts once)."""
        return sum(n for (_, c), n in self.by_collection.items() if collections & set(c.split("+")))
