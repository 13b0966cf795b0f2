"""`xiuhua up [--demo]` and `xiuhua run SERVICE`."""

from __future__ import annotations

import argparse
import asyncio
import logging

from xiuhua import logs
from xiuhua.registry import SERVICES, spec
from xiuhua.settings import get_settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add the commands."""
    up = sub.add_parser("up", help="the embedded default: servers, streams, the four services")
    up.add_argument("--demo", action="store_true", help="feed realistic reports continuously")
    up.add_argument("--demo-rate", type=float, default=1.0, help="demo reports per second")
    up.add_argument("--quiet", action="store_true", help="no console summary")
    up.set_defaults(func=_up)
    run = sub.add_parser("run", help="one service against the configured servers")
    run.add_argument("service", choices=SERVICES)
    run.set_defaults(func=_run)


def _up(args: argparse.Namespace) -> int:
    from xiuhua.supervisor import Supervisor
    from xiuhua_tools.demo import feed

    logging.getLogger().setLevel(logging.WARNING)
    sup = Supervisor(get_settings(), demo=feed if args.demo else None, demo_rate=args.demo_rate, quiet=args.quiet)
    return asyncio.run(sup.run())


def _run(args: argparse.Namespace) -> int:
    from xiuhua.service import serve

    settings = get_settings()
    logs.configure(
        level=settings.log_level,
        fmt=settings.log_format,
        file=settings.log_file,
        max_bytes=settings.log_max_bytes,
        backups=settings.log_backups,
        service=args.service,
    )
    serve(spec(args.service), settings)
    return 0
