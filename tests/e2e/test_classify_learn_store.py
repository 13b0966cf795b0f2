"""`xiuhua classify learn` reads the command centre's decisions from the real stores: a manual-triage case the
centre assigned to a category becomes a labelled order; a case left as the classifier decided does not."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.helpers import BusRecorder, eventually, publish, system
from xiuhua_tools.classification.learn import load_corrections

CENTRE = {"unit_id": "XH-CC", "role": "command_centre", "name": "李督查"}


def _hotline(no: str, content: str) -> dict:
    return {"order_no": no, "received_at": datetime.now(UTC).isoformat(), "channel": "12345", "title": "反映问题",
            "content": content, "address": "东园路"}


async def test_an_assigned_triage_case_is_learnt_from_the_stores(settings, city):
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake", "dispatch")) as rts:
        url = settings.nats_url
        await publish(url, "report.v1.in.hotline", _hotline("L-1", "你们快派人来看看这里，这个事情一直没人管"))
        await publish(url, "report.v1.in.hotline", _hotline("L-2", "新塘家园门口的垃圾桶满出来好几天了，垃圾堆在地上"))
        opened = await eventually(lambda: len(bus.on("case.v1.opened.")) == 2 and bus.on("case.v1.opened."))
        triaged = next(c for c in opened if c["category_code"] == "9901")
        assert {c["category_code"] for c in opened} == {"9901", "0201"}  # the other stays as decided
        await eventually(lambda: rts["dispatch"].store["cases"].find_one({"_id": triaged["case_id"]}))
        body = {"command_id": "cmd-assign-1", "case_id": triaged["case_id"], "actor": CENTRE,
                "at": datetime.now(UTC).isoformat(), "unit_id": "CD-ENF", "category_code": "0101", "reason": "分拣"}
        await publish(url, "cmd.v1.case.assign", body, msg_id="cmd-assign-1")

        async def assigned() -> bool:
            doc = await rts["dispatch"].store["cases"].find_one({"_id": triaged["case_id"]})
            return bool(doc and doc["category_code"] == "0101")

        await eventually(assigned, timeout=20)
        found = await load_corrections(city, settings)
    assert found == [("反映问题 你们快派人来看看这里，这个事情一直没人管", "0101", "manual triage assigned")]
