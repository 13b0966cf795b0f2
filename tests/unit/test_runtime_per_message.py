"""What the consumers do per message, done once per batch or read more cheaply, gives what the one-by-one way gave:
a delivery's count, sequence and stored moment from its reply subject; a batch's waits in the histogram."""

from __future__ import annotations

from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Histogram

from xiuhua.consumer import delivery_of
from xiuhua.observability import observe_all

STORED_NS = 1_796_000_000_123_456_789


def _msg(reply: str) -> Msg:
    return Msg(None, subject="case.v1.opened.310101", reply=reply, data=b"{}")  # type: ignore[arg-type]


def _by_nats(reply: str) -> tuple[int, int, float]:
    meta = _msg(reply).metadata
    return meta.num_delivered, meta.sequence.stream, meta.timestamp.timestamp()


def test_a_delivery_read_from_its_reply_subject_as_nats_reads_it() -> None:
    replies = [
        f"$JS.ACK.XH_CASES.dispatch-opened.3.1207.88.{STORED_NS}.12",  # without a domain
        f"$JS.ACK._.ACCHASH.XH_CASES.dispatch-opened.3.1207.88.{STORED_NS}.12",  # with one, no random token
        f"$JS.ACK.hub.ACCHASH.XH_CASES.dispatch-opened.3.1207.88.{STORED_NS}.12.Rnd0m",
    ]
    for reply in replies:
        delivered, seq, stored = delivery_of(_msg(reply))
        nats_delivered, nats_seq, nats_stored = _by_nats(reply)
        assert (delivered, seq) == (nats_delivered, nats_seq) == (3, 1207), reply
        assert abs(stored - nats_stored) < 1e-6, reply  # nats-py's datetime keeps microseconds
        assert abs(stored - STORED_NS / 1e9) < 1e-6, reply


def test_a_message_that_is_no_jetstream_delivery_is_a_first_delivery_without_sequence_or_moment() -> None:
    for reply in ("", "_INBOX.abc.1", "$JS.ACK.too.short", f"$JS.ACK.S.c.x.1207.88.{STORED_NS}.12"):
        assert delivery_of(_msg(reply)) == (1, None, None), reply


def _histograms() -> tuple[CollectorRegistry, Histogram, Histogram]:
    registry = CollectorRegistry()
    buckets = (0.001, 0.005, 0.1, 1)
    one = Histogram("one_by_one", "", ["c"], registry=registry, buckets=buckets)
    batch = Histogram("batched", "", ["c"], registry=registry, buckets=buckets)
    return registry, one, batch


def test_a_batch_of_waits_fills_the_buckets_and_the_sum_as_one_observation_each() -> None:
    registry, one, batch = _histograms()
    # Each bound itself (counted in its own bucket), a hair above each, zero, and past the last finite bound.
    waits = [0.0, 0.001, 0.0010001, 0.005, 0.0051, 0.1, 0.1000001, 1, 1.5, 300.0, 0.001]
    for w in waits:
        one.labels("x").observe(w)
    observe_all(batch.labels("x"), waits)
    for le in ("0.001", "0.005", "0.1", "1.0", "+Inf"):
        want = registry.get_sample_value("one_by_one_bucket", {"c": "x", "le": le})
        assert registry.get_sample_value("batched_bucket", {"c": "x", "le": le}) == want, le
    assert registry.get_sample_value("batched_bucket", {"c": "x", "le": "0.001"}) == 3
    assert registry.get_sample_value("batched_count", {"c": "x"}) == len(waits)
    assert abs(registry.get_sample_value("batched_sum", {"c": "x"}) - sum(waits)) < 1e-9


def test_an_empty_batch_observes_nothing() -> None:
    registry, _, batch = _histograms()
    observe_all(batch.labels("x"), [])
    assert registry.get_sample_value("batched_count", {"c": "x"}) == 0


def test_a_client_bulk_write_counts_each_of_its_documents_under_its_write_and_collection() -> None:
    from types import SimpleNamespace

    from xiuhua.observability import Metrics, StoreCommands

    metrics = Metrics("test")
    listener = StoreCommands(metrics)
    ops = [{"insert": 0}, {"insert": 0}, {"update": 1}, {"insert": 1}, {"insert": 0}, {"delete": 1}]
    command = {"bulkWrite": 1, "ops": ops, "nsInfo": [{"ns": "intake.ledger"}, {"ns": "intake.raw_reports"}]}
    listener.started(SimpleNamespace(command_name="bulkWrite", command=command, request_id=7))
    listener.succeeded(SimpleNamespace(command_name="bulkWrite", request_id=7, reply={"ok": 1}, duration_micros=10))

    def documents(command: str, collection: str) -> float | None:
        labels = {"service": "test", "command": command, "collection": collection}
        return metrics.registry.get_sample_value("xiuhua_store_documents_total", labels)

    assert documents("insert", "ledger") == 3
    assert documents("insert", "raw_reports") == 1
    assert documents("update", "raw_reports") == 1
    assert documents("delete", "raw_reports") == 1
    assert documents("update", "ledger") is None
