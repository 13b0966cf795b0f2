"""`xiuhua deliveries --case ID [--json]`: the delivery log of a case (who was alerted, on which channel, status)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from xiuhua.settings import Settings, get_settings
from xiuhua_tools.commands import emit, live_settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("deliveries", help="the alert delivery log of a case (status, attempts, last error)")
    p.add_argument("--case", required=True, help="case id, e.g. C-01935d1e7a4b")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_deliveries)


def store_url(settings: Settings) -> str:
    """XIUHUA_MONGO_URL, else the store a running `xiuhua up` wrote to var/endpoints.json."""
    return str(live_settings(need=("mongo_url",)).mongo_url) if not settings.mongo_url else settings.mongo_url


async def query(settings: Settings, case_id: str) -> list[dict[str, Any]]:
    """The log entries of a case from notify's database."""
    from services.notify.delivery_log import by_case
    from xiuhua.store import Store

    store = Store(store_url(settings), settings.database("notify"), write_concern=settings.write_concern)
    try:
        return await by_case(store["deliveries"], case_id)
    finally:
        await store.close()


def _deliveries(args: argparse.Namespace) -> int:
    from services.notify.delivery_log import render

    settings = get_settings()
    entries = asyncio.run(query(settings, args.case))
    emit(args, render(args.case, entries), {"case_id": args.case, "deliveries": entries})
    return 0
