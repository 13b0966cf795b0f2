"""`xiuhua bench [--json FILE]`: the performance benchmark; prints a table, writes JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from xiuhua_tools.progress import Steps


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("bench", help="measure the pipeline against the bus's own relay ceiling")
    p.add_argument("--rate", type=float, default=50.0, help="offered reports/s for the latency phase")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of the latency phase")
    p.add_argument(
        "--warmup", type=float, default=2.0, help="seconds at the same rate before it, reported apart (0: none)"
    )
    p.add_argument("--burst", type=int, default=3000, help="reports in the maximum-rate phase")
    p.add_argument("--sensors", type=int, default=20000, help="sensor readings in the telemetry phase")
    p.add_argument("--relay", type=int, default=5000, help="messages through the relay chain")
    p.add_argument(
        "--bulletin-cases", type=int, default=1_000_000, help="cases behind the timed weekly bulletin (0: skip)"
    )
    p.add_argument(
        "--rebuild-events",
        type=int,
        default=1_000_000,
        help="events replayed by the timed full score rebuild (0: skip)",
    )
    p.add_argument(
        "--history-cases",
        type=int,
        default=100_000,
        help="cases of history behind the timed deadline scan and merge lookup (0: skip)",
    )
    p.add_argument("--pdf", action="store_true", help="also print the bulletin's PDFs (needs Chromium)")
    p.add_argument("--json", dest="json_file", type=Path, help="write the figures as JSON to FILE")
    p.set_defaults(func=_bench)


JOB_LINES = ("bulletin: ", "rebuild: ", "history: ")  # how the scale jobs' own lines begin


def phases(args: argparse.Namespace) -> int:
    """How many phases the run has: warm-up (if any), fixed rate, maximum rate, sensors, relay, the scale jobs."""
    return (
        int(args.warmup > 0) + 4 + sum(bool(n) for n in (args.bulletin_cases, args.rebuild_events, args.history_cases))
    )


def _bench(args: argparse.Namespace) -> int:
    from xiuhua_tools.bench.run import SCALE_JOBS, run, table

    with Steps("bench", total=phases(args)) as steps:

        def progress(text: str) -> None:
            if text.startswith(JOB_LINES):  # a line within a scale job's phase, not a phase of its own
                steps.note(text)
            else:
                steps.step(text)

        results = asyncio.run(
            run(
                rate=args.rate,
                duration=args.duration,
                warmup=args.warmup,
                burst=args.burst,
                sensors=args.sensors,
                relay_messages=args.relay,
                bulletin_cases=args.bulletin_cases,
                rebuild_events=args.rebuild_events,
                history_cases=args.history_cases,
                pdf=args.pdf,
                progress=progress,
            )
        )
    print(table(results))
    if args.json_file:
        args.json_file.write_text(json.dumps(results, indent=2))
        print(f"figures written to {args.json_file}")
    failed = any(results.get(job, {}).get("error") for job in SCALE_JOBS)
    return 0 if results["dead_letters"] == 0 and results["max_rate"]["complete"] and not failed else 1
