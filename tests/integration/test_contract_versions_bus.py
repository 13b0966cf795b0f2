"""Both versions of one event on a real nats-server: streams provisioned with a v2 model capture `case.v2.>`
beside `case.v1.>`, a consumer of both reads each as its own model, a v1 consumer sees only v1."""

from __future__ import annotations

import json
from pathlib import Path

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import registry, streams
from contracts.cases import CaseOpened
from tests.helpers.contract_versions import CaseOpenedV2, v1_event, v2_event
from xiuhua import security
from xiuhua.bus import provision_streams
from xiuhua.client import XiuhuaClient


async def _drain(js: object, durable: str, want: int) -> list[tuple[str, object]]:
    psub = await js.pull_subscribe_bind(durable=durable, stream=streams.CASES.name)  # type: ignore[attr-defined]
    got: list[tuple[str, object]] = []
    for _ in range(20):
        if len(got) >= want:
            break
        try:
            msgs = await psub.fetch(10, timeout=0.5)
        except TimeoutError:
            continue
        for msg in msgs:
            got.append((msg.subject, registry.decode(msg.subject, msg.data)))
            await msg.ack()
    await psub.unsubscribe()
    return got


async def test_a_consumer_receives_v1_and_v2_side_by_side(xiuhua_nats_url: str, tmp_path: Path) -> None:
    # Consumers of the test's own and a v2 subject no service publishes yet: the operator's.
    users = json.loads((tmp_path / "xiuhua-var" / "security" / "passwords.json").read_text())
    operator = security.login("operator", users["operator"])
    with registry.registered(CaseOpenedV2):
        await provision_streams(xiuhua_nats_url, connect_opts=operator)
        async with XiuhuaClient(xiuhua_nats_url, **operator) as xh:
            info = await xh.js.stream_info(streams.CASES.name)
            assert sorted(info.config.subjects) == ["case.v1.>", "case.v2.>"]
            for durable, subject in (("both", "case.*.opened.>"), ("v1-only", "case.v1.>")):
                await xh.js.add_consumer(
                    streams.CASES.name,
                    ConsumerConfig(
                        durable_name=durable,
                        filter_subject=subject,
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL,
                    ),
                )
            first = await xh.publish_event(v1_event("C-7"))
            second = await xh.publish_event(v2_event("C-7"))
            assert (first.subject, second.subject) == ("case.v1.opened.CD", "case.v2.opened.CD")
            assert first.stream == second.stream == streams.CASES.name

            both = await _drain(xh.js, "both", 2)
            assert [(s, type(e)) for s, e in both] == [
                ("case.v1.opened.CD", CaseOpened),
                ("case.v2.opened.CD", CaseOpenedV2),
            ]
            assert both[0][1].source_ref == "R-20261123-001" and both[1][1].reference == "R-20261123-001"

            v1_only = await _drain(xh.js, "v1-only", 2)
            assert [(s, type(e)) for s, e in v1_only] == [("case.v1.opened.CD", CaseOpened)]

            waited = await xh.wait_for("case.v2.opened", case_id="C-7", timeout=5)
            assert isinstance(waited, CaseOpenedV2) and waited.schema_version == 2
