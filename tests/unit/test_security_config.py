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
    # Dispatch opens merchants' enforcement cases itself; merging, transferring and correcting transfers stay intake's.
    assert 'deny: ["case.v1.merged.>", "case.v1.transferred.>", "case.v1.transfer_corrected.>"]' in dispatch
    intake = _user_block(text, "intake")
    assert '"case.v1.opened.>"' in intake and '"report.v1.rejected"' in intake and '"case.v1.>"' not in intake
    users = _users()
    for subject in ("case.v1.transfer_corrected.CD", "case.v1.command_rejected.CD"):
        assert security.may_publish(users["intake"], subject), subject
    assert not security.may_publish(users["dispatch"], "case.v1.transfer_corrected.CD")
    assert security.may_publish(users["dispatch"], "case.v1.command_rejected.CD")
    assert not security.may_publish(users["intake"], "case.v1.dispatched.CD")
    notify = _user_block(text, "notify")
    assert '"notify.v1.>"' in notify and '"bulletin.v1.>"' in notify and '"dlq.v1.notify"' in notify


def _users() -> dict[str, security.User]:
    return {u.name: u for u in model(PASSWORDS, CONSUMERS)}


def test_inbound_users_publish_only_their_sources_and_commands():
    text = render_config(model(PASSWORDS, CONSUMERS))
    hotline = _user_block(text, "hotline")
    assert (
        'allow: ["report.v1.in.hotline", "cmd.v1.case.rate", "cmd.v1.case.correct_transfer", "$JS.API.INFO"' in hotline
    )
    domain = {u: [s for s in user.publish_allowed() if not s.startswith("$JS.")] for u, user in _users().items()}
    assert domain["hotline"] == ["report.v1.in.hotline", "cmd.v1.case.rate", "cmd.v1.case.correct_transfer"]
    assert domain["iot"] == ["report.v1.in.sensor"] and "$JS.API" not in _user_block(text, "iot")
    units = _user_block(text, "units")
    assert "cmd.v1.case.acknowledge" in units and "cmd.v1.case.close" not in units
    assert "cmd.v1.case.correct_transfer" not in units  # a unit returns a case (退单); it corrects no transfer
    centre = _user_block(text, "command_centre")
    assert "cmd.v1.case.verify" in centre and "cmd.v1.case.acknowledge" not in centre
    assert "cmd.v1.case.correct_transfer" in centre
    assert 'subscribe: {allow: ["_INBOX_hotline.>"]}' in hotline


def test_tls_cluster_and_limits_are_rendered():
    text = render_config(
        model(PASSWORDS, {}),
        ServerOptions(
            listen="0.0.0.0:4222",
            max_payload=65536,
            jetstream_dir="/data",
            server_name="nats-0",
            tls=Tls(cert="/tls/server.crt", key="/tls/server.key", ca="/tls/ca.crt", verify=True),
            cluster={"name": "xiuhua", "listen": "0.0.0.0:6222", "routes": ["nats://nats-1:6222"]},
        ),
    )
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


def _may_subscribe(user: security.User, subject: str) -> bool:
    return any(security.subject_matches(p, subject) for p in user.subscribe_allowed())


def test_each_user_may_subscribe_to_its_own_inboxes_and_nobody_elses():
    city_user = security.inbound_user("dept_jq", "pw", ["JQ"], like="units")
    users = [*model(PASSWORDS, CONSUMERS, {"scoring": ["score.query.v1.>"]}), city_user]
    for user in users:
        own = security.inbox_prefix(user.name)
        assert _may_subscribe(user, f"{own}.Ab12.3"), user.name  # a reply mux's subject, a pull's deliveries
        if user.name == security.OPERATOR:
            continue  # audits everything
        assert not _may_subscribe(user, "_INBOX.Ab12.3"), user.name  # the clients' shared default
        for other in users:
            if other.name != user.name:
                assert not _may_subscribe(user, f"{security.inbox_prefix(other.name)}.Ab12.3"), (user.name, other)
    # A prefix is one token: a user whose name begins like another's reads neither's inboxes.
    assert not _may_subscribe(city_user, "_INBOX_dept_jq_wait.x") and not _may_subscribe(city_user, "_INBOX_dept.x")
    assert security.login("units", "pw") == {"user": "units", "password": "pw", "inbox_prefix": "_INBOX_units"}


def test_a_connection_takes_its_users_inbox_prefix_unless_one_is_configured():
    from xiuhua.bus import connect_options, inbox_prefix
    from xiuhua.settings import Settings

    assert connect_options(Settings(nats_user="units", nats_password="pw"))["inbox_prefix"] == "_INBOX_units"
    assert inbox_prefix(Settings()) == "_INBOX"  # no user of the model: NATS' default
    assert inbox_prefix(Settings(nats_user="units", nats_inbox_prefix="_INBOX_jq")) == "_INBOX_jq"
    assert inbox_prefix(Settings(nats_creds_file="/x.creds", nats_inbox_prefix="_INBOX_jq")) == "_INBOX_jq"


def test_a_process_started_as_a_user_takes_its_own_prefix_over_an_inherited_one(monkeypatch):
    from xiuhua.bus import connect_options, inbox_prefix
    from xiuhua.settings import Settings

    monkeypatch.setenv("XIUHUA_NATS_INBOX_PREFIX", "_INBOX_jq")  # the starting process's, inherited
    for name, value in security.login_env("intake", "pw").items():
        monkeypatch.setenv(name, value)
    assert connect_options(Settings())["inbox_prefix"] == "_INBOX_intake"
    assert inbox_prefix(security.as_operator(Settings(nats_inbox_prefix="_INBOX_jq"), PASSWORDS)) == "_INBOX_operator"


def test_a_service_that_answers_queries_may_subscribe_and_reply():
    text = render_config(model(PASSWORDS, {}, {"scoring": ["score.query.v1.>"]}))
    scoring = _user_block(text, "scoring")
    assert '"score.query.v1.>"' in scoring.split("subscribe")[1] and "allow_responses: true" in scoring
    assert "allow_responses" not in _user_block(text, "dispatch")


def test_each_integrator_may_use_only_its_own_consumers_on_the_streams_it_is_entitled_to():
    users = _users()
    units = users["units"].publish_allowed()
    for name in ("units", "units_wait"):
        assert f"$JS.API.CONSUMER.CREATE.XH_CASES.{name}" in units
        assert f"$JS.API.CONSUMER.MSG.NEXT.XH_CASES.{name}" in units
        assert f"$JS.ACK.XH_CASES.{name}.>" in units
        assert f"$JS.API.CONSUMER.DELETE.XH_CASES.{name}" in units
    assert not [s for s in units if "XH_SCORES" in s]  # scores are the command centre's
    assert not [
        s
        for s in units
        if s.startswith("$JS.API.STREAM.") and not s.startswith("$JS.API.STREAM.INFO") and s != "$JS.API.STREAM.NAMES"
    ]  # no stream created, changed, purged or read by sequence
    assert not [s for s in units if "hotline" in s or "dispatch" in s or ".*." in s.removeprefix("$JS.API.STREAM")]
    centre = users["command_centre"].publish_allowed()
    assert "$JS.API.CONSUMER.MSG.NEXT.XH_SCORES.command_centre" in centre
    assert "$JS.API.CONSUMER.MSG.NEXT.XH_CASES.command_centre" in centre
    assert not [s for s in users["patrol_app"].publish_allowed() if s.startswith("$JS.")]  # publishes only
    assert not security.may_publish(users["units"], "$JS.API.CONSUMER.MSG.NEXT.XH_CASES.dispatch-opened")
    assert not security.may_publish(users["units"], "$JS.API.CONSUMER.CREATE.XH_CASES")  # no unnamed consumer
    assert not security.may_publish(users["units"], "$JS.API.STREAM.PURGE.XH_CASES")


def test_a_jurisdiction_restricts_an_integrators_consumers_to_its_streets():
    restricted = {u.name: u for u in model(PASSWORDS, CONSUMERS, jurisdictions={"units": ["CD", "XH"]})}
    units = restricted["units"]
    for street in ("CD", "XH"):
        assert security.may_publish(units, f"$JS.API.CONSUMER.CREATE.XH_CASES.units.case.v1.*.{street}")
        assert security.may_publish(units, f"$JS.API.CONSUMER.CREATE.XH_CASES.units.case.v1.dispatched.{street}")
    assert not security.may_publish(units, "$JS.API.CONSUMER.CREATE.XH_CASES.units.case.v1.*.SJ")
    assert not security.may_publish(units, "$JS.API.CONSUMER.CREATE.XH_CASES.units.case.v1.>")
    # The forms whose body could name any filter are not there for a restricted user.
    assert not security.may_publish(units, "$JS.API.CONSUMER.CREATE.XH_CASES.units")
    assert not security.may_publish(units, "$JS.API.CONSUMER.DURABLE.CREATE.XH_CASES.units")
    assert security.may_publish(units, "$JS.API.CONSUMER.MSG.NEXT.XH_CASES.units")
    assert security.may_publish(restricted["hotline"], "$JS.API.CONSUMER.CREATE.XH_CASES.hotline.case.v1.>")


def test_subject_matching_follows_nats_wildcards():
    m = security.subject_matches
    assert m("case.v1.>", "case.v1.opened.CD") and m("case.v1.>", "case.v1.x") and not m("case.v1.>", "case.v1")
    assert m("case.v1.*.CD", "case.v1.opened.CD") and not m("case.v1.*.CD", "case.v1.opened.XH")
    assert not m("case.v1.*", "case.v1.opened.CD") and not m("case.v1.opened.CD", "case.v1.opened")
    assert m("a.b", "a.b") and not m("a.b", "a.b.c")
