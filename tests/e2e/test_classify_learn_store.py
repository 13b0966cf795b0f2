"""`xiuhua classify learn` reads the command centre's decisions from the real stores: a manual-triage case the
centre assigned to a category becomes a labelled order; a case left as the classifier decided does not; a transfer
corrected (to a city matter, which opens its case, or to another outside matter) is learnt, and a model trained
again decides its text otherwise."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.intake.model_classifier import ModelClassifier
from services.intake.training import train
from tests.helpers import BusRecorder, eventually, publish, system
from xiuhua_tools.classification.learn import load_corrections
from xiuhua_tools.commands.classify import load_rows

CENTRE = {"unit_id": "XH-CC", "role": "command_centre", "name": "李督查"}


def _hotline(no: str, content: str) -> dict:
    return {
        "order_no": no,
        "received_at": datetime.now(UTC).isoformat(),
        "channel": "12345",
        "title": "反映问题",
        "content": content,
        "address": "东园路",
    }


async def test_an_assigned_triage_case_is_learnt_from_the_stores(settings, city):
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake", "dispatch")) as rts:
        url = settings.nats_url
        await publish(url, "report.v1.in.hotline", _hotline("L-1", "你们快派人来看看这里，这个事情一直没人管"))
        await publish(url, "report.v1.in.hotline", _hotline("L-2", "新塘家园门口的垃圾桶满出来好几天了，垃圾堆在地上"))
        opened = await eventually(lambda: len(bus.on("case.v1.opened.")) == 2 and bus.on("case.v1.opened."))
        triaged = next(c for c in opened if c["category_code"] == "9901")
        assert {c["category_code"] for c in opened} == {"9901", "0201"}  # the other stays as decided
        await eventually(lambda: rts["dispatch"].store["cases"].find_one({"_id": triaged["case_id"]}))
        body = {
            "command_id": "cmd-assign-1",
            "case_id": triaged["case_id"],
            "actor": CENTRE,
            "at": datetime.now(UTC).isoformat(),
            "unit_id": "CD-ENF",
            "category_code": "0101",
            "reason": "分拣",
        }
        await publish(url, "cmd.v1.case.assign", body, msg_id="cmd-assign-1")

        async def assigned() -> bool:
            doc = await rts["dispatch"].store["cases"].find_one({"_id": triaged["case_id"]})
            return bool(doc and doc["category_code"] == "0101")

        await eventually(assigned, timeout=20)
        found = await load_corrections(city, settings)
    assert found == [("反映问题 你们快派人来看看这里，这个事情一直没人管", "0101", "manual triage assigned")]


TRAIN = Path(__file__).resolve().parents[1] / "data" / "hotline_train.jsonl"
SMALL = {
    "transfer:transport",
    "transfer:wages",
    "transfer:housing",
    "transfer:consumer",
    "out_of_scope",
    "0108",
    "0106",
    "0201",
    "0302",
    "0101",
}


def _small_rows() -> list[tuple[str, str]]:
    """240 training orders of ten labels: a model trained in seconds (the shipped one takes minutes)."""
    return [(r["text"], r["label"]) for r in load_rows(TRAIN) if r["label"] in SMALL][:240]


async def test_a_corrected_transfer_is_recorded_opens_its_case_and_is_learnt(settings, city):
    billboard = "公交站台的广告牌歪了快掉下来了"  # a city matter (0108) the model sends to the transport bureau
    fees = "小区里的充电桩收费太贵了，物业乱收费"  # a price complaint (市场监管) the model sends to housing
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake", "dispatch")):
        url = settings.nats_url
        await publish(url, "report.v1.in.hotline", {**_hotline("T-1", billboard), "urgent": True})
        await publish(url, "report.v1.in.hotline", _hotline("T-2", fees))
        moved = await eventually(lambda: len(bus.on("case.v1.transferred.")) == 2 and bus.on("case.v1.transferred."))
        by_text = {m["description"]: m for m in moved}
        first, second = by_text[f"反映问题 {billboard}"], by_text[f"反映问题 {fees}"]
        assert (first["department"], second["department"]) == ("区交通运输局", "区住房和城乡建设局（房产科）")

        def command(no: str, case_id: str, **to: str) -> dict:
            return {
                "command_id": no,
                "case_id": case_id,
                "actor": CENTRE,
                "at": datetime.now(UTC).isoformat(),
                "reason": "转办有误",
                **to,
            }

        subject = "cmd.v1.case.correct_transfer"
        await publish(
            url,
            subject,
            command("fix-1", first["case_id"], category_code="0108"),
            msg_id="fix-1",
            user="command_centre",
        )
        hotline_actor = {"unit_id": "HOTLINE", "role": "hotline", "name": "12345"}
        await publish(
            url,
            subject,
            {**command("fix-2", second["case_id"], transfer_id="consumer"), "actor": hotline_actor},
            msg_id="fix-2",
            user="hotline",
        )
        fixed = await eventually(
            lambda: len(bus.on("case.v1.transfer_corrected.")) == 2 and bus.on("case.v1.transfer_corrected.")
        )
        by_case = {f["case_id"]: f for f in fixed}
        to_city, to_market = by_case[first["case_id"]], by_case[second["case_id"]]
        assert (to_city["category_code"], to_city["transferred_to"], to_city["transfer_id"]) == (
            "0108",
            "区交通运输局",
            None,
        )
        assert (to_market["transfer_id"], to_market["department"], to_market["opened_case_id"]) == (
            "consumer",
            "区市场监督管理局（消费者权益保护）",
            None,
        )
        # The city matter is a case now, in the category the centre named, and dispatch routes it.
        opened = await eventually(
            lambda: [o for o in bus.on("case.v1.opened.") if o["case_id"] == to_city["opened_case_id"]]
        )
        assert (opened[0]["category_code"], opened[0]["category_confidence"]) == ("0108", 1.0)
        assert opened[0]["description"] == f"反映问题 {billboard}" and opened[0]["source_ref"] == "T-1"
        assert opened[0]["urgency"] == "urgent"  # as the caller said, though 0108 is not urgent by default
        await eventually(lambda: [d for d in bus.on("case.v1.dispatched.") if d["case_id"] == opened[0]["case_id"]])
        # Corrected once: a second correction is refused, and so is one of a case that was never transferred.
        await publish(
            url,
            subject,
            command("fix-3", first["case_id"], transfer_id="consumer"),
            msg_id="fix-3",
            user="command_centre",
        )
        await publish(
            url, subject, command("fix-4", "C-none", transfer_id="consumer"), msg_id="fix-4", user="command_centre"
        )
        refused = await eventually(
            lambda: len(bus.on("case.v1.command_rejected.")) == 2 and bus.on("case.v1.command_rejected.")
        )
        assert {(r["command_id"], r["reason"], r["action"]) for r in refused} == {
            ("fix-3", "wrong_state", "correct_transfer"),
            ("fix-4", "unknown_case", "correct_transfer"),
        }
        assert len(bus.on("case.v1.transfer_corrected.")) == 2
        found = await load_corrections(city, settings)
    assert sorted(found) == [
        (f"反映问题 {billboard}", "0108", "transfer to 区交通运输局 corrected"),
        (f"反映问题 {fees}", "transfer:consumer", "transfer to 区住房和城乡建设局（房产科） corrected"),
    ]
    # Trained again with what was learnt, a model decides the text otherwise than one trained without it.
    rows = _small_rows()
    without, _ = train(city, rows, source="small", k=3)
    learnt, _ = train(city, rows + [(t, label) for t, label, _ in found], source="small", k=3)
    text = f"反映问题 {billboard}"
    before, after = ModelClassifier(city, without).classify(text), ModelClassifier(city, learnt).classify(text)
    assert (before.kind, before.code) == ("transfer", "transport")
    assert (after.kind, after.code) == ("category", "0108")
