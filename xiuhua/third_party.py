"""Every use of a library's internals, in one place, checked when this module is imported.

Xiuhua's batch pull loop (`xiuhua.pull_loop`) takes the place of FastStream's, reads nats-py's subscription queue
directly and sends JetStream's pull request itself; nats-py's `fetch` is patched to raise the timeout both
libraries agree on; a pull subscriber's deliveries arrive under its connection's own inbox prefix. Neither library
promises any of this, so both are pinned (pyproject.toml) and `check()` runs at import: a release that moves one
of these parts stops the service at start-up with a sentence naming it, instead of a pull loop that silently stops
pulling.

Upgrading FastStream or nats-py: read what `RELIANCES` lists in the new release, adapt the functions below, then
move `WRITTEN_AGAINST` and the pins together.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from faststream._internal.broker.registrator import Registrator
from faststream._internal.utils.path import Address
from faststream.nats import PullSub
from faststream.nats.subscriber.factory import create_subscriber
from faststream.nats.subscriber.usecases.basic import LogicSubscriber
from faststream.nats.subscriber.usecases.stream_basic import StreamSubscriber
from faststream.nats.subscriber.usecases.stream_pull_subscriber import BatchPullStreamSubscriber
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeout
from nats.js.client import JetStreamContext

PullSubscription = JetStreamContext.PullSubscription

WRITTEN_AGAINST = {"faststream": "0.7.8", "nats-py": "2.16.0"}

_LINGER = "_xiuhua_linger"  # set on a FastStream subscriber: seconds a short batch waits (`set_linger`)
_PATCHED = "_xiuhua"  # marks a function of ours installed in a library class


class ThirdPartyChanged(ImportError):
    """An installed FastStream or nats-py no longer has a part Xiuhua relies on."""


@dataclass(frozen=True)
class Reliance:
    """One thing Xiuhua uses that a library does not promise: where it is, why we use it, how to see it is there."""

    library: str
    part: str
    why: str
    holds: Callable[[], bool]


def _names(function: Any) -> set[str]:
    """The attribute and global names a function's code uses (an attribute it sets or reads appears here)."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return set(code.co_names) if code is not None else set()


def _params(function: Any) -> set[str]:
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def _pull_loop_is_replaceable() -> bool:
    original = getattr(BatchPullStreamSubscriber, "_consume_pull", None)
    return inspect.iscoroutinefunction(original) and "_consume_pull" in _names(
        BatchPullStreamSubscriber._create_subscription
    )


RELIANCES: tuple[Reliance, ...] = (
    Reliance(
        "faststream",
        "BatchPullStreamSubscriber._consume_pull, the task _create_subscription starts",
        "replaced by xiuhua.pull_loop, which hands over what is there at once instead of waiting for a full batch",
        _pull_loop_is_replaceable,
    ),
    Reliance(
        "faststream",
        "BatchPullStreamSubscriber's subscription, pull_sub (batch_size, timeout), running and consume",
        "what the replaced loop pulls from, how much, until when, and where it hands a batch",
        lambda: (
            "pull_sub" in _names(BatchPullStreamSubscriber.__init__)
            and "subscription" in _names(BatchPullStreamSubscriber._create_subscription)
            and any("running" in _names(vars(c).get("__init__")) for c in BatchPullStreamSubscriber.__mro__)
            and callable(getattr(BatchPullStreamSubscriber, "consume", None))
            and all(hasattr(PullSub(batch=True), name) for name in ("batch_size", "timeout"))
        ),
    ),
    Reliance(
        "faststream",
        "a NATS subscriber's subject (an Address with broker_address), extra_options (durable) and stream",
        "the permission model reads each service's durable consumers and served subjects from its broker",
        lambda: (
            isinstance(getattr(LogicSubscriber, "subject", None), property)
            and isinstance(getattr(Address, "broker_address", None), property)
            and "extra_options" in _names(LogicSubscriber.__init__)
            and "stream" in _names(StreamSubscriber.__init__)
        ),
    ),
    Reliance(
        "faststream",
        "a broker's registry of subscribers: _subscribers and the persistent list its subscriber() also keeps",
        "a consumer only some deployments need is left out before the broker starts (`detach`)",
        lambda: (
            {"_subscribers", "_Registrator__persistent_subscribers"} <= _names(Registrator.__init__)
            and isinstance(getattr(Registrator, "subscribers", None), property)
        ),
    ),
    Reliance(
        "faststream",
        "a pull subscriber's inbox_prefix, handed to nats-py's pull_subscribe as given (create_subscriber)",
        "None there lets nats-py deliver under the connection's own inbox prefix (see CONNECTION_INBOX)",
        lambda: (
            "inbox_prefix" in _params(create_subscriber)
            and "inbox_prefix" in inspect.unwrap(create_subscriber).__code__.co_consts
        ),
    ),
    Reliance(
        "nats-py",
        "JetStreamContext.pull_subscribe_bind taking the connection's _inbox_prefix when inbox_prefix is None",
        "each user may subscribe under its own inbox prefix only (xiuhua.security)",
        lambda: (
            "inbox_prefix" in _params(JetStreamContext.pull_subscribe_bind)
            and "_inbox_prefix" in _names(JetStreamContext.pull_subscribe_bind)
        ),
    ),
    Reliance(
        "nats-py",
        "JetStreamContext.PullSubscription's _sub, _nc, _nms and _deliver",
        "the pull loop sends JetStream's pull request itself (no_wait without an expiry, answered at once)",
        lambda: {"_sub", "_nc", "_nms", "_deliver"} <= _names(PullSubscription.__init__),
    ),
    Reliance(
        "nats-py",
        "Subscription's _pending_queue and _pending_size",
        "the pull loop takes messages already delivered without next_msg's task, uuid and wait_for per message",
        lambda: (
            {"_pending_queue", "_pending_size"} <= _names(Subscription.__init__)
            and {"_pending_queue", "_pending_size", "task_done"} <= _names(Subscription.next_msg)
        ),
    ),
    Reliance(
        "nats-py",
        "Subscription.next_msg(timeout) and PullSubscription.fetch(batch, timeout)",
        "waiting for the answer to a pull request; fetch is patched to raise nats' TimeoutError only",
        lambda: "timeout" in _params(Subscription.next_msg) and {"batch", "timeout"} <= _params(PullSubscription.fetch),
    ),
)


def _version(library: str) -> str:
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "not installed"


def problems(reliances: Iterable[Reliance] = RELIANCES) -> list[str]:
    """One sentence per reliance that no longer holds in the installed libraries."""
    out = []
    for r in reliances:
        try:
            held = bool(r.holds())
        except Exception as exc:  # a probe that cannot even look: the part moved as surely
            held, r = False, Reliance(r.library, f"{r.part} ({type(exc).__name__}: {exc})", r.why, r.holds)
        if not held:
            out.append(
                f"{r.library} {_version(r.library)} (Xiuhua was written against {WRITTEN_AGAINST.get(r.library)}) "
                f"no longer has {r.part}: used because {r.why}"
            )
    return out


def check(reliances: Iterable[Reliance] = RELIANCES) -> None:
    """Raise ThirdPartyChanged naming every part that moved; nothing when all are there."""
    if found := problems(reliances):
        raise ThirdPartyChanged(
            "FastStream or nats-py changed what Xiuhua relies on:\n  - "
            + "\n  - ".join(found)
            + "\nInstall the versions pinned in requirements.lock (python3.11 tasks.py test does), or adapt "
            "xiuhua/third_party.py to the new release."
        )


check()


# --- nats-py: a pull subscription's queue and its pull request ---------------------------------------------------


def queued(sub: PullSubscription) -> Msg | None:
    """The next message already in the subscription's queue, without waiting; None if there is none (status
    messages included: the caller tells them apart)."""
    inner = sub._sub
    queue = inner._pending_queue
    if queue.empty():
        return None
    msg = queue.get_nowait()
    inner._pending_size -= len(msg.data)  # as nats-py's own fetch and next_msg do
    queue.task_done()  # as next_msg does: a drain waits for the queue's items to be done
    return msg


async def request_pull(sub: PullSubscription, request: bytes) -> None:
    """Send a JetStream pull request for this consumer; the answers arrive in the subscription's queue."""
    await sub._nc.publish(sub._nms, request, sub._deliver)


async def next_delivered(sub: PullSubscription, timeout: float) -> Msg:  # noqa: ASYNC109
    """Wait up to `timeout` for the next message to the subscription (nats' TimeoutError when none comes)."""
    return await sub._sub.next_msg(timeout=timeout)


# --- FastStream: a pull subscriber's inbox -------------------------------------------------------------------------

# `inbox_prefix` for a FastStream pull subscriber. FastStream defaults it to the NATS clients' shared `_INBOX.`,
# overriding the connection's: the subscription for the consumer's deliveries would then be one the security model
# refuses. None leaves nats-py to take the connection's own (`connect(inbox_prefix=...)`).
CONNECTION_INBOX: Any = None


# --- FastStream: the batch pull subscriber's loop ----------------------------------------------------------------


@dataclass
class PullTask:
    """What a batch pull loop needs of FastStream's subscriber: the subscription, the batch it asks for, whether it
    should go on, and where a batch goes."""

    subscription: PullSubscription
    batch_size: int
    timeout: float
    linger: float
    running: Callable[[], bool]
    consume: Callable[[list[Msg]], Awaitable[Any]]


def binding(subscriber: Any) -> tuple[str | None, str | None, str | None]:
    """What a FastStream NATS subscriber is bound to: (stream, durable consumer, subject); None where it has none."""
    stream = getattr(getattr(subscriber, "stream", None), "name", None)
    durable = (getattr(subscriber, "extra_options", None) or {}).get("durable")
    subject = getattr(subscriber, "subject", None)
    if subject is None:
        return stream, durable, None
    return stream, durable, str(subject.broker_address)  # the address NATS sees (a template's wildcards filled)


def detach(broker: Any, subscriber: Any) -> None:
    """Take a subscriber off a broker that has not started: the broker neither creates its consumer nor pulls."""
    broker._subscribers.discard(subscriber)
    persistent = broker._Registrator__persistent_subscribers
    if subscriber in persistent:
        persistent.remove(subscriber)


def set_linger(subscriber: Any, seconds: float) -> None:
    """How long a batch of this subscriber that is not full waits for more (`xiuhua.pull_loop`)."""
    setattr(subscriber, _LINGER, seconds)


def replace_batch_pull_loop(loop: Callable[[PullTask], Awaitable[None]]) -> None:
    """Run `loop` for every FastStream batch pull subscriber instead of its own loop (idempotent)."""
    if getattr(BatchPullStreamSubscriber._consume_pull, _PATCHED, False):
        return

    async def _consume_pull(self: BatchPullStreamSubscriber) -> None:
        assert self.subscription, "create the subscription first"
        await loop(
            PullTask(
                subscription=self.subscription,
                batch_size=self.pull_sub.batch_size,
                timeout=self.pull_sub.timeout if self.pull_sub.timeout is not None else 5.0,
                linger=getattr(self, _LINGER, 0.0),
                running=lambda: bool(self.running),
                consume=self.consume,
            )
        )

    setattr(_consume_pull, _PATCHED, True)
    BatchPullStreamSubscriber._consume_pull = _consume_pull  # type: ignore[method-assign]


def patch_fetch_timeout() -> None:
    """nats-py 2.16 raises a bare asyncio.TimeoutError from `fetch` when the deadline runs out between its two
    pull requests; FastStream 0.7.8 catches only nats.errors.TimeoutError, so every such idle poll logged an ERROR
    and restarted the loop. Re-raise it as the error both libraries agree on (idempotent)."""
    original = PullSubscription.fetch
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)  # its signature stays the one `RELIANCES` checks
    async def fetch(self: PullSubscription, *args: Any, **kwargs: Any) -> list[Msg]:
        try:
            return await original(self, *args, **kwargs)
        except NatsTimeout:
            raise
        except TimeoutError as exc:
            raise NatsTimeout from exc

    setattr(fetch, _PATCHED, True)
    PullSubscription.fetch = fetch  # type: ignore[method-assign]
