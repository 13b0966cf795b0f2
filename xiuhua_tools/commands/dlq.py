"""`xiuhua dlq list` and `xiuhua dlq redrive`: inspect dead letters (`XH_DLQ`) and re-drive them after a fix.

A re-driven message is the original bytes on the original subject with `Nats-Msg-Id` = original id + `~r<n>`:
JetStream does not drop it as a duplicate of the original, and the consumer's ledger key strips `~r<n>`, so the
copy counts as the original (a consumer that had applied it already acknowledges it without effect).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import nats
from nats.js.errors import NotFoundError

from contracts import streams, subjects
from contracts.dead_letters import DeadLetter
from xiuhua.bus import connect_once, connect_options
from xiuhua.consumer import REDRIVE_MARK
from xiuhua.settings import Settings
from xiuhua_tools.chaos.bus_read import stream_messages
from xiuhua_tools.commands import emit, live_settings
from xiuhua_tools.progress import Steps

_REDRIVE_SUFFIX = re.compile(re.escape(REDRIVE_MARK) + r"(\d+)$")


@dataclass
class Letter:
    """One dead letter as the operator sees it; `id` is its sequence in `XH_DLQ`."""

    id: int
    service: str
    consumer: str
    original_subject: str
    original_msg_id: str | None
    error: str
    deliveries: int
    at: str
    original_stream_seq: int | None
    payload_bytes: int


def redrive_id(original_msg_id: str | None, original_stream_seq: int | None, dlq_seq: int) -> str:
    """The message id of the next re-drive: `<id>~r<n>`, n one more than the id already carries."""
    base = original_msg_id or (f"seq-{original_stream_seq}" if original_stream_seq else f"dlq-{dlq_seq}")
    m = _REDRIVE_SUFFIX.search(base)
    n = int(m.group(1)) + 1 if m else 1
    root = base.split(REDRIVE_MARK, 1)[0]
    return f"{root}{REDRIVE_MARK}{n}"


def _letter(seq: int, letter: DeadLetter) -> Letter:
    return Letter(
        id=seq,
        service=letter.service,
        consumer=letter.consumer,
        original_subject=letter.original_subject,
        original_msg_id=letter.original_msg_id,
        error=letter.error,
        deliveries=letter.deliveries,
        at=letter.occurred_at.isoformat(),
        original_stream_seq=letter.stream_seq,
        payload_bytes=len(base64.b64decode(letter.payload_b64)),
    )


async def _connect(settings: Settings) -> nats.NATS:
    if not settings.nats_url:
        raise SystemExit("set XIUHUA_NATS_URL (the dead-letter queue lives on the bus)")
    from xiuhua.security import operator_settings

    return await connect_once(settings.nats_url, **connect_options(operator_settings(settings)))


async def list_letters(settings: Settings, service: str | None = None) -> list[Letter]:
    """Dead letters still in `XH_DLQ`, oldest first, optionally of one service."""
    nc = await _connect(settings)
    try:
        js = nc.jetstream()
        subject = subjects.dlq_subject(service) if service else None
        out = []
        async for msg in stream_messages(js, streams.DLQ.name, subject):
            out.append(_letter(msg.seq or 0, DeadLetter.model_validate_json(msg.data or b"{}")))
        return out
    finally:
        await nc.close()


async def redrive(
    settings: Settings,
    ids: list[int] | None = None,
    *,
    service: str | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[dict[str, Any]]:
    """Re-publish dead letters (all when `ids` is None) to their original subjects, then delete them;
    `progress(done, total)` after each."""
    nc = await _connect(settings)
    done: list[dict[str, Any]] = []
    try:
        js = nc.jetstream()
        if ids is None:
            subject = subjects.dlq_subject(service) if service else None
            targets = [m async for m in stream_messages(js, streams.DLQ.name, subject)]
        else:
            targets = []
            for seq in ids:
                try:
                    targets.append(await js.get_msg(streams.DLQ.name, seq))
                except NotFoundError:
                    raise SystemExit(f"no dead letter with id {seq} in {streams.DLQ.name}") from None
        for msg in targets:
            letter = DeadLetter.model_validate_json(msg.data or b"{}")
            seq = msg.seq or 0
            msg_id = redrive_id(letter.original_msg_id, letter.stream_seq, seq)
            # JetStream's own headers (Nats-Expected-*, Nats-Msg-Id) are not the sender's: leave them out.
            headers = {k: v for k, v in letter.headers.items() if not k.lower().startswith("nats-")}
            await js.publish(
                letter.original_subject,
                base64.b64decode(letter.payload_b64),
                headers={**headers, "Nats-Msg-Id": msg_id},
            )
            await js.delete_msg(streams.DLQ.name, seq)
            done.append({"id": seq, "service": letter.service, "subject": letter.original_subject, "msg_id": msg_id})
            progress(len(done), len(targets))
    finally:
        await nc.close()
    return done


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("dlq", help="list dead letters, re-drive them after a fix")
    dsub = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    ls = dsub.add_parser("list", help="dead letters in XH_DLQ, oldest first")
    ls.add_argument("--service", help="only this service's dead letters")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    rd = dsub.add_parser("redrive", help="re-publish dead letters to their original subjects and remove them")
    rd.add_argument("ids", nargs="*", type=int, metavar="ID", help="dead-letter ids from `xiuhua dlq list`")
    rd.add_argument("--all", action="store_true", help="every dead letter (of --service, if given)")
    rd.add_argument("--service", help="with --all: only this service's dead letters")
    rd.add_argument("--json", action="store_true")
    rd.set_defaults(func=_redrive)


def _list(args: argparse.Namespace) -> int:
    letters = asyncio.run(list_letters(live_settings(need=("nats_url",)), args.service))
    lines = [f"{'ID':>6}  {'SERVICE':9}  {'CONSUMER':18}  {'SUBJECT':28}  {'DELIV':>5}  {'AT':25}  ERROR"]
    for x in letters:
        lines.append(
            f"{x.id:>6}  {x.service:9}  {x.consumer:18}  {x.original_subject:28}  {x.deliveries:>5}  "
            f"{x.at:25}  {x.error[:100]}"
        )
    lines.append(f"{len(letters)} dead letter(s)")
    emit(args, "\n".join(lines), [asdict(x) for x in letters])
    return 0


def _redrive(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        raise SystemExit("give dead-letter IDs or --all (not both)")
    settings = live_settings(need=("nats_url",))
    with Steps("re-driven") as steps:
        done = asyncio.run(
            redrive(settings, None if args.all else list(args.ids), service=args.service, progress=steps.count)
        )
    human = "\n".join(f"re-drove {d['id']} → {d['subject']} as {d['msg_id']}" for d in done)
    emit(args, human + f"\n{len(done)} re-driven" if done else "nothing to re-drive", done)
    return 0
