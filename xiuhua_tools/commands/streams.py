"""`xiuhua streams`: create or update the JetStream streams (what `up` does once)."""

from __future__ import annotations

import argparse
import asyncio

from xiuhua.bus import connect_options, provision_streams
from xiuhua.city.retention import load_retention
from xiuhua_tools.commands import emit, live_settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser(
        "streams", help="provision the JetStream streams on XIUHUA_NATS_URL (ages from the city's retention.yaml)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_streams)


def _streams(args: argparse.Namespace) -> int:
    s = live_settings(need=("nats_url",))
    ages = load_retention(s.city_dir).stream_ages()
    done = asyncio.run(
        provision_streams(s.nats_url or "", replicas=s.stream_replicas, connect_opts=connect_options(s), max_ages=ages)
    )
    emit(args, "\n".join(done), done)
    return 0
