"""The one place that uses FastStream's and nats-py's internals checks, at import, that they are still there."""

from __future__ import annotations

import pytest
from faststream.nats.subscriber.usecases.stream_pull_subscriber import BatchPullStreamSubscriber
from nats.aio.subscription import Subscription

from xiuhua import pull_loop, third_party
from xiuhua.third_party import PullSubscription, Reliance, ThirdPartyChanged


def test_the_installed_libraries_have_every_part_relied_on() -> None:
    assert third_party.problems() == []
    third_party.check()  # raises nothing


def test_the_pull_loop_and_the_fetch_patch_are_installed_through_the_adapter() -> None:
    pull_loop.install()
    assert getattr(BatchPullStreamSubscriber._consume_pull, "_xiuhua", False)
    assert getattr(PullSubscription.fetch, "_xiuhua", False)
    before = BatchPullStreamSubscriber._consume_pull
    pull_loop.install()  # idempotent: the patch is not wrapped again
    assert BatchPullStreamSubscriber._consume_pull is before


def test_a_pull_subscription_without_its_request_subject_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def init(self, js, sub, stream, consumer, deliver):  # an upgrade that renamed _nms and _deliver
        self._js, self._nc, self._sub = js, js._nc, sub
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"

    monkeypatch.setattr(PullSubscription, "__init__", init)
    with pytest.raises(ThirdPartyChanged) as err:
        third_party.check()
    message = str(err.value)
    assert "nats-py 2.16.0" in message
    assert "PullSubscription's _sub, _nc, _nms and _deliver" in message
    assert "Xiuhua was written against 2.16.0" in message
    assert "requirements.lock" in message and "xiuhua/third_party.py" in message
    assert "Subscription's _pending_queue" not in message  # only what moved is named


def test_a_subscription_queue_renamed_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Subscription.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._queue = self.__dict__.pop("_pending_queue")

    monkeypatch.setattr(Subscription, "__init__", init)
    [problem] = third_party.problems()
    assert problem.startswith("nats-py ") and "_pending_queue and _pending_size" in problem


def test_a_faststream_without_the_loop_it_replaces_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(BatchPullStreamSubscriber, "_consume_pull")
    [problem] = third_party.problems()
    assert problem.startswith("faststream 0.7.8") and "_consume_pull" in problem


def test_a_probe_that_fails_counts_as_a_part_that_moved() -> None:
    def broken() -> bool:
        raise AttributeError("no attribute 'pull_sub'")

    reliance = Reliance("faststream", "a subscriber's pull_sub", "the batch size", broken)
    [problem] = third_party.problems([reliance])
    assert "a subscriber's pull_sub (AttributeError: no attribute 'pull_sub')" in problem
    assert third_party.problems([Reliance("nats-py", "x", "y", lambda: True)]) == []


def test_only_the_adapter_touches_library_internals() -> None:
    """The private names the adapter exists for appear nowhere else in the runtime or the services."""
    import pathlib
    import re

    root = pathlib.Path(third_party.__file__).resolve().parents[1]
    private = re.compile(
        r"(?<!self)\._(pending_queue|pending_size|nms|deliver|nc|consume_pull)\b|connection_state|\bextra_options\b"
    )
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("xiuhua", "services", "contracts")
        for path in (root / folder).rglob("*.py")
        if path.name != "third_party.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert offenders == []


def test_a_subscribers_binding_is_read_through_the_adapter() -> None:
    from faststream.nats import JStream, NatsBroker
    from faststream.nats import PullSub as FastStreamPullSub

    broker = NatsBroker()
    pulled = broker.subscriber(
        "case.v1.>",
        stream=JStream("XH_CASES", declare=False),
        durable="scoring-cases",
        pull_sub=FastStreamPullSub(batch=True),
    )
    served = broker.subscriber("score.query.v1.unit")
    assert third_party.binding(pulled) == ("XH_CASES", "scoring-cases", "case.v1.>")
    assert third_party.binding(served) == (None, None, "score.query.v1.unit")


def test_a_subscriber_without_its_subject_property_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from faststream.nats.subscriber.usecases.basic import LogicSubscriber

    monkeypatch.setattr(LogicSubscriber, "subject", "renamed")
    [problem] = third_party.problems()
    assert problem.startswith("faststream 0.7.8") and "subject (an Address with broker_address)" in problem


def test_a_subscriber_detached_before_the_start_is_left_out_of_the_broker() -> None:
    from faststream.nats import NatsBroker

    broker = NatsBroker()
    kept, left = broker.subscriber("a.kept"), broker.subscriber("a.left")
    third_party.detach(broker, left)
    assert broker.subscribers == [kept]  # what start() starts
    third_party.detach(broker, left)  # a second time changes nothing
    assert broker.subscribers == [kept]
