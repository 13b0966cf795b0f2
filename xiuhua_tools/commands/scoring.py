"""`xiuhua scoring rebuild --check` and `xiuhua scoring show unit|merchant|ranking`."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from typing import Any

from xiuhua_tools.commands import emit, live_settings
from xiuhua_tools.progress import Steps


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("scoring", help="unit and merchant scores: rebuild from history, query")
    s = p.add_subparsers(dest="scoring_cmd", required=True)

    r = s.add_parser("rebuild", help="replay the JetStream history into a fresh store and compare with the live one")
    r.add_argument("--check", action="store_true", help="compare with the live scores; exit 1 on any difference")
    r.add_argument("--keep", action="store_true", help="keep the rebuilt database (named in the output)")
    r.add_argument(
        "--apply",
        action="store_true",
        help="replace the live documents with the rebuilt ones (migrates stored figures; stop scoring first)",
    )
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_rebuild)

    q = s.add_parser("show", help="ask the running scoring service (NATS request/reply)")
    q.add_argument("what", choices=("unit", "merchant", "ranking"))
    q.add_argument("id", nargs="?", help="unit id or merchant id")
    q.add_argument("--period", help="2026-W48, 2026-11, 2026-Q4 or 2026 (default: the current ones)")
    q.add_argument("--kind", choices=("unit", "merchant"), default="unit", help="ranking of units or merchants")
    q.add_argument("--timeout", type=float, default=5.0)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_show)


def _rebuild(args: argparse.Namespace) -> int:
    from services.scoring.rebuild import run
    from xiuhua.city import load_city

    settings = live_settings(need=("nats_url", "mongo_url"))  # the live system's bus and store

    with Steps("replayed", prefix="  replaying ") as steps:

        def progress(stream: str, n: int, total: int) -> None:
            if n == 0:
                steps.step(f"{stream} ({total} messages)", total=total)
            else:
                steps.count(n, total)

        report = run(settings, load_city(settings.city_dir), keep=args.keep, apply=args.apply, progress=progress)
    lines = [
        f"replayed: {', '.join(f'{s} {n}' for s, n in report.replayed.items()) or 'nothing'}"
        f" ({report.skipped} undecodable skipped)"
    ]
    lines.append(f"compared: {', '.join(f'{c} {n}' for c, n in report.compared.items())}")
    if any(report.purged.values()):
        lines.append(
            "purged from the rebuild as the live store's purge does (retention.yaml): "
            + ", ".join(f"{c} {n}" for c, n in report.purged.items())
        )
    expired = {s: at for s, at in report.window.items() if at}
    if expired:
        lines.append(
            "rebuild window: "
            + ", ".join(f"{s} holds messages from {at} (older ones have expired)" for s, at in expired.items())
        )
        lines.append(
            "not compared, outside the rebuild window (they depend on expired messages): "
            + ", ".join(f"{c} {n}" for c, n in report.outside_window.items())
        )
    else:
        lines.append("rebuild window: complete history (nothing has expired from the streams)")
    for d in report.differences[:50]:
        if d.problem == "fields":
            detail = "; ".join(f"{k}: live {v[0]!r} rebuilt {v[1]!r}" for k, v in list(d.fields.items())[:6])
            lines.append(f"  DIFF {d.collection} {d.id}: {detail}")
        else:
            lines.append(f"  DIFF {d.collection} {d.id}: {d.problem}")
    if len(report.differences) > 50:
        lines.append(f"  ... and {len(report.differences) - 50} more")
    scope = " within the rebuild window" if expired else ""
    lines.append(
        f"{len(report.differences)} difference(s){scope}"
        if report.differences
        else f"identical{scope}: rebuild == live"
    )
    if args.apply:
        lines.append("applied to the live store: " + ", ".join(f"{c} {n}" for c, n in report.applied.items()))
    if args.keep:
        lines.append(f"rebuilt database kept: {report.database}")
    emit(args, "\n".join(lines), asdict(report))
    return 1 if args.check and report.differences else 0


def _show(args: argparse.Namespace) -> int:
    from services.scoring.query import QUERY_MERCHANT, QUERY_RANKING, QUERY_UNIT

    settings = live_settings(need=("nats_url",))
    request: dict[str, Any] = {"period": args.period} if args.period else {}
    if args.what == "unit":
        subject, request["unit_id"] = QUERY_UNIT, args.id
    elif args.what == "merchant":
        subject, request["merchant_id"] = QUERY_MERCHANT, args.id
    else:
        subject, request["kind"] = QUERY_RANKING, args.kind
    if args.what != "ranking" and not args.id:
        raise SystemExit(f"name the {args.what}: xiuhua scoring show {args.what} ID")
    reply = asyncio.run(_request(settings, subject, request, wait=args.timeout))
    emit(args, _human(args.what, reply), reply)
    return 1 if "error" in reply else 0


async def _request(settings: Any, subject: str, request: dict[str, Any], *, wait: float) -> dict[str, Any]:
    from nats.errors import NoRespondersError, TimeoutError

    from xiuhua.bus import connect_once, connect_options

    nc = await connect_once(settings.nats_url, **connect_options(settings))
    try:
        msg = await nc.request(subject, json.dumps(request).encode(), timeout=wait)
        return json.loads(msg.data)
    except (NoRespondersError, TimeoutError):
        return {"error": {"code": "no_answer", "message": "no answer: is the scoring service running?"}}
    finally:
        await nc.close()


def _pct(v: Any) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def _human(what: str, reply: dict[str, Any]) -> str:
    if "error" in reply:
        err = reply["error"]
        if not isinstance(err, dict):
            return f"error: {err}"
        ref = f" (ref {err['correlation_id']})" if err.get("correlation_id") else ""
        return f"error {err.get('code')}: {err.get('message')}{ref}"
    if what == "unit":
        out = [f"{reply['unit_id']} {reply.get('name', '')}"]
        for period, d in reply["periods"].items():
            if not d:
                out.append(f"  {period}: no cases")
                continue
            r = d["rates"]
            out.append(
                f"  {period}: score {d['score']}  dispatched {d['dispatched']} due {d['due']} closed {d['closed']}"
                f" overdue {d['overdue']}  on time {_pct(r['on_time_rate'])} closure {_pct(r['closure_rate'])}"
                f" satisfaction {_pct(r['satisfaction_rate'])}  {' '.join(d['flags'])}"
            )
        return "\n".join(out)
    if what == "merchant":
        m = reply.get("month") or {}
        return (
            f"{reply['merchant_id']} {reply.get('name', '')}: grade {reply.get('grade')}; {reply['period']}: "
            f"points {m.get('points', '—')} checks {m.get('checks', 0)} failures {m.get('failures', 0)}"
        )
    out = [f"{reply['kind']} ranking {reply['period']}"]
    for group, rows in reply["tables"].items():
        out.append(f"  {group}:")
        for row in rows:
            marks = " ".join(x for x in (row.get("board") or "", "bottom" if row.get("bottom") else "") if x)
            out.append(f"    {row['rank']:>3}. {row['id']} {row['name']} {row['score']} {marks}")
    return "\n".join(out)
