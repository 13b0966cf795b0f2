"""A dead instance's sends, taken over, go again as they went: never a second time inside a digest.

An alert claimed by an instance that sent it and died before recording it is taken over once its lease runs out.
Its token was spent by the dead owner, so on a lane with no tokens left it is sent again alone, under its own
notification id (which the receiver de-duplicates), not held for a digest with an id of its own. A digest whose
owner died is sent again as the same digest: its id, stored on its claims before it went, and the same alerts.

As in test_notify_digests, the worker is stopped and `deliver_due` driven by hand under a FrozenClock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.notify.bulletin.projection import CASES as BULLETIN_CASES
from services.notify.ratelimit import RATE_BUCKETS
from services.notify.store import DELIVERIES
from services.notify.worker import CLAIM_LEASE_S, DeliveryWorker
from tests.helpers import eventually
from tests.helpers.channels import receiver
from tests.helpers.notify import T0, alert_city, dispatched, doc, notify, planned, send
from xiuhua.city.alerts import RateLimit
from xiuhua.clock import FrozenClock
from xiuhua.service import Runtime

LANE = "CD-SAN-duty:webhook"
ID_HEADER = "x-xiuhua-notification-id"


def nid(case_id: str) -> str:
    return f"new_case:{case_id}:0:{LANE}"


def sends_then_dies(h: DeliveryWorker) -> None:
    """From now on the instance sends but never records (it is killed between the two)."""

    async def killed(claimed: list[dict[str, Any]], *, now: datetime) -> list[Any]:
        raise RuntimeError("killed before recording")

    h._record_delivered = killed  # type: ignore[method-assign]


def forgets(h: DeliveryWorker) -> None:
    """The killed instance's memory is gone: nothing renews its claims, nothing records its sends."""
    del h._record_delivered  # the instance attribute `sends_then_dies` set: the class's method again
    h._outcomes.clear()
    h._held.clear()
    h.planning.claimed.clear()


async def statuses(rt: Runtime, *case_ids: str) -> list[str]:
    return [(await doc(rt, nid(c)))["status"] for c in case_ids]


async def test_a_taken_over_alert_on_a_lane_without_tokens_goes_alone_again_under_its_own_id(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/alone"), rate=RateLimit(capacity=2, per_minute=1))  # a token a minute
        async with notify(settings, c, clock) as (rt, h):
            for case in ("C-S0", "C-S1"):
                await send(settings, dispatched(case))
            await planned(rt, 2)
            sends_then_dies(h)
            assert await h.deliver_due() == 2  # both alone, the lane's two tokens spent
            assert [g.headers[ID_HEADER] for g in r.got] == [nid("C-S0"), nid("C-S1")]
            assert await statuses(rt, "C-S0", "C-S1") == ["sending", "sending"]
            forgets(h)
            bucket = await rt.store[RATE_BUCKETS].find_one({"_id": LANE})
            clock.set(T0 + timedelta(seconds=CLAIM_LEASE_S + 1))  # leases out, the lane still without a token
            assert await h.deliver_due() == 2
            assert [g.headers[ID_HEADER] for g in r.got[2:]] == [nid("C-S0"), nid("C-S1")]
            assert [g.json()["kind"] for g in r.got] == ["new_case"] * 4
            assert await statuses(rt, "C-S0", "C-S1") == ["delivered", "delivered"]
            after = await doc(rt, nid("C-S0"))
            assert after["attempts"] == 2 and not after.get("resend") and "digest" not in after
            assert await rt.store[RATE_BUCKETS].find_one({"_id": LANE}) == bucket  # no token taken
            # At the lane's next token nothing is left for a digest: the re-sends went as themselves.
            clock.set(T0 + timedelta(seconds=60))
            assert await h.deliver_due() == 0 and len(r.got) == 4
            await send(settings, dispatched("C-S2"))
            await planned(rt, 3)
            assert await h.deliver_due() == 1 and r.got[-1].headers[ID_HEADER] == nid("C-S2")


async def test_a_taken_over_digest_goes_again_as_the_same_digest_once_all_its_claims_ran_out(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/digest"), rate=RateLimit(capacity=1, per_minute=1))
        async with notify(settings, c, clock) as (rt, h):
            for case in ("C-G0", "C-G1", "C-G2"):
                await send(settings, dispatched(case))
            await planned(rt, 3)
            assert await h.deliver_due() == 1  # C-G0 alone; C-G1 and C-G2 held until the next token
            clock.set(T0 + timedelta(seconds=60))
            sends_then_dies(h)
            assert await h.deliver_due() == 2
            first = r.got[-1]
            digest_id = first.headers[ID_HEADER]
            assert first.json()["case_ids"] == ["C-G1", "C-G2"] and digest_id.startswith(f"digest:{LANE}:")
            for case in ("C-G1", "C-G2"):  # its id on its claims before it went
                d = await doc(rt, nid(case))
                assert (d["status"], d["digest"]) == ("sending", digest_id)
            forgets(h)
            # The bulletin's place of a named case changes meanwhile: the digest's text does not.
            await eventually(lambda: rt.store[BULLETIN_CASES].find_one({"_id": "C-G1"}))
            await rt.store[BULLETIN_CASES].update_one({"_id": "C-G1"}, {"$set": {"street_name": "新改的街道"}})
            clock.set(T0 + timedelta(seconds=62))  # a fresh alert, held: the lane has no token until T0+120
            await send(settings, dispatched("C-G3"))
            await planned(rt, 1, case_id="C-G3")  # the dead one's claims are no longer this one's
            assert await h.deliver_due() == 0
            # One of the digest's claims still runs (renewed later than the other): neither is taken over yet.
            lease = (await doc(rt, nid("C-G1")))["lease_s"]
            await rt.store[DELIVERIES].update_one({"_id": nid("C-G2")}, {"$set": {"lease_s": lease + 2.0}})
            clock.set(datetime.fromtimestamp(lease + 1.0, T0.tzinfo))
            assert await h.deliver_due() == 0 and len(r.got) == 2
            assert await statuses(rt, "C-G1", "C-G2") == ["sending", "sending"]
            clock.set(datetime.fromtimestamp(lease + 3.0, T0.tzinfo))  # both out: the same digest again, no token
            assert await h.deliver_due() == 2 and len(r.got) == 3
            again = r.got[-1]
            assert again.headers[ID_HEADER] == digest_id and again.json() == first.json()
            assert await statuses(rt, "C-G1", "C-G2", "C-G3") == ["delivered", "delivered", "pending"]
            g1 = await doc(rt, nid("C-G1"))
            assert g1["digest"] == digest_id and g1["history"][-1]["digest"] == digest_id
            # The fresh one goes at the lane's token, alone: no digest took it with the taken-over alerts.
            clock.set(T0 + timedelta(seconds=120))
            assert await h.deliver_due() == 1
            assert r.got[-1].headers[ID_HEADER] == nid("C-G3") and r.got[-1].json()["kind"] == "new_case"
