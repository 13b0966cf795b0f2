"""What a message found applied publishes again: its own redelivery does, told by its stream sequence even when
JetStream counts it as a first delivery (a broker killed before saving its counts); another message with its id,
or with a document kept for it, does not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import InsertOne

from xiuhua.bus import Outgoing
from xiuhua.clock import FrozenClock
from xiuhua.consumer import Batch, Item, outbox_of
from xiuhua.ledger import SEQ, Ledger, redelivery_of
from xiuhua.store import Writes

OUT = Outgoing("case.v1.dispatched.CD", b"{}", "e-caused")


def _ledger() -> Ledger:
    """A ledger that only builds and judges entries (no store or bus is asked)."""
    return Ledger({"ledger": None}, None, FrozenClock(datetime(2026, 11, 23, tzinfo=UTC)))  # type: ignore[arg-type]


def _entry(seq: int | None) -> dict[str, Any]:
    writes = Writes("probe")
    _ledger().add(writes, [("probe:e-1", [OUT])], swept=False, seqs=[seq])
    ((_, op),) = writes.ops
    assert isinstance(op, InsertOne)
    return dict(op._doc)


def test_a_consumed_message_entry_keeps_its_stream_sequence_and_no_mark() -> None:
    doc = _entry(41)
    assert doc[SEQ] == 41 and "published" not in doc


def test_the_same_stream_message_is_a_redelivery_whatever_its_count_says() -> None:
    ledger = _ledger()
    doc = _entry(41)
    assert ledger.to_publish_again(doc, redelivered=False, seq=41) == [OUT]
    assert ledger.to_publish_again(doc, redelivered=True, seq=41) == [OUT]
    assert ledger.to_publish_again(doc, redelivered=False, seq=42) == []  # a resend or a re-drive: a copy
    assert ledger.to_publish_again(doc, redelivered=False, seq=40) == []


def test_without_a_sequence_the_delivery_count_decides() -> None:
    assert redelivery_of({SEQ: 41}, redelivered=True, seq=None)
    assert not redelivery_of({SEQ: 41}, redelivered=False, seq=None)
    assert redelivery_of({}, redelivered=True, seq=41)
    assert not redelivery_of({}, redelivered=False, seq=41)
    assert not redelivery_of(None, redelivered=False, seq=41)


def _item(seq: int | None, delivered: int) -> Item:
    return Item("case.v1.opened.CD", b"{}", {}, "dispatch-opened:e-1", delivered, seq, None)


def test_a_kept_outbox_is_emitted_again_only_for_the_message_that_kept_it() -> None:
    first = _item(7, 1)
    first.out.append(OUT)
    kept = outbox_of(first)
    assert kept[SEQ] == 7
    batch = Batch([], None)  # type: ignore[arg-type]
    for seq, delivered, again in ((7, 1, [OUT]), (7, 2, [OUT]), (8, 1, []), (None, 2, [OUT]), (None, 1, [])):
        item = _item(seq, delivered)
        batch.emit_kept(item, kept)
        assert item.out == again, (seq, delivered)
    nothing = _item(7, 2)
    batch.emit_kept(nothing, None)  # a case an older build kept, without an outbox
    assert nothing.out == []
