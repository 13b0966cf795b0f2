"""The permission model rendered as nats-server configuration (pure)."""

from __future__ import annotations

import re

from xiuhua import security
from xiuhua.security import Consumer, ServerOptions, Tls, model, render_config

PASSWORDS = {n: f"pw-{n}" for n in security.user_names()}
CONSUMERS = {"dispatch": [Consumer("XH_CASES", "dispatch-opened")], "scoring": [Consumer("XH_CASES", "scoring-cases")]}


def _user_block(text: str, name: str) -> str:
    m = re.search(r'\{user: "' + name + r'".*?\n    \}\}', text, re.S)
    assert m, name
    return m.group(0)


def test_each_service_may_publish_only_its_own_subjects_and_use_only_its_consumers():
    text = render_config(model(PASSWORDS, CONSUMERS))
    scoring = _user_block(text, "scoring")
    assert '"score.v1.>"' in scoring and '"dlq.v1.scoring"' in scoring
    assert "case.v1" not in scoring.split("subscribe")[0].replace("XH_CASES", "")
    assert '"$JS.API.CONSUMER.MSG.NEXT.XH_CASES.scoring-cases"' in scoring
    assert '"$JS.ACK.XH_CASES.scoring-cases.>"' in scoring
    assert "dispatch-opened" not in scoring
    dispatch = _user_block(text, "dispatch")
    assert '"case.v1.>"' in dispatch
    assert 'deny: ["case.v1.opened.>", "case.v1.merged.>", "case.v1.transferred.>"]' in dispatch
    intake = _user_block(text, "intake")
    assert '"case.v1.opened.>"' in intake and '"report.v1.rejected"' in intake and '"case.v1.>"' not in intake
    notify = _user_block(text, "notify")
    assert '"notify.v1.>"' in notify and '"bulletin.v1.>"' in notify and '"dlq.v1.notify"' in notify


def test_inbound_users_publish_only_their_sources_and_commands():
    text = render_config(model(PASSWORDS, CONSUMERS))
    hotline = _user_block(text, "hotline")
    assert 'allow: ["report.v1.in.hotline", "cmd.v1.case.rate"]' in hotline
    units = _user_block(text, "units")
    assert "cmd.v1.case.acknowledge" in units and "cmd.v1.case.close" not in units and "$JS.API" not in units
    centre = _user_block(text, "command_centre")
    assert "cmd.v1.case.verify" in centre and "cmd.v1.case.acknowledge" not in centre
    assert 'subscribe: {allow: ["_INBOX.>"]}' in hotline


def test_tls_cluster_and_limits_are_rendered():
    text = render_config(model(PASSWORDS, {}), ServerOptions(
        listen="0.0.0.0:4222", max_payload=65536, jetstream_dir="/data", server_name="nats-0",
        tls=Tls(cert="/tls/server.crt", key="/tls/server.key", ca="/tls/ca.crt", verify=True),
        cluster={"name": "xiuhua", "listen": "0.0.0.0:6222", "routes": ["nats://nats-1:6222"]},
    ))
    assert "max_payload: 65536" in text and 'listen: "0.0.0.0:4222"' in text
    assert 'cert_file: "/tls/server.crt"' in text and 'ca_file: "/tls/ca.crt"' in text and "verify: true" in text
    assert 'routes: ["nats://nats-1:6222"]' in text and 'store_dir: "/data"' in text


def test_service_consumers_are_read_from_the_specs():
    found = security.service_consumers()
    assert Consumer("XH_CASES", "dispatch-opened") in found["dispatch"]
    assert Consumer("XH_REPORTS", "intake-reports", erases=True) in found["intake"]
    assert all(c.durable.startswith(f"{svc}-") for svc, cs in found.items() for c in cs)


def test_embedded_passwords_are_generated_once_and_private(tmp_path):
    path, first = security.write_embedded_config(tmp_path)
    _, again = security.write_embedded_config(tmp_path)
    assert first == again and set(first) == set(security.user_names())
    assert (tmp_path / "security" / "passwords.json").stat().st_mode & 0o077 == 0
    assert first["intake"] in path.read_text()


def test_a_service_that_answers_queries_may_subscribe_and_reply():
    text = render_config(model(PASSWORDS, {}, {"scoring": ["score.query.v1.>"]}))
    scoring = _user_block(text, "scoring")
    assert '"score.query.v1.>"' in scoring.split("subscribe")[1] and "allow_responses: true" in scoring
    assert "allow_responses" not in _user_block(text, "dispatch")
