"""A city's `security.yaml`: the integrators it adds or restricts to their streets, validated with file:line
errors, rendered into the users and permissions of the embedded default."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from xiuhua import security
from xiuhua.city import CityDataError, load_city
from xiuhua.settings import DEMO_CITY

BINDINGS = {"dispatch": ([security.Consumer("XH_CASES", "dispatch-opened")], [])}


def _city(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "city"
    shutil.copytree(DEMO_CITY, folder)
    (folder / "security.yaml").write_text(text, encoding="utf-8")
    return folder


def test_a_city_adds_an_integrator_and_restricts_another_to_its_streets(tmp_path):
    city = load_city(_city(tmp_path, "users:\n  units: {streets: [CD]}\n  dept_jq: {like: units, streets: [JQ]}\n"))
    conf, passwords = security.write_embedded_config(tmp_path / "var", BINDINGS, city.security)
    assert {"units", "dept_jq"} <= set(passwords)
    users = {
        u.name: u
        for u in security.model(passwords, {}, added=city.security.added(), jurisdictions=city.security.jurisdictions())
    }
    dept = users["dept_jq"]
    assert [s for s in dept.publish_allowed() if not s.startswith("$JS.")] == list(security.INBOUND["units"])
    assert security.may_publish(dept, "$JS.API.CONSUMER.CREATE.XH_CASES.dept_jq.case.v1.*.JQ")
    assert not security.may_publish(dept, "$JS.API.CONSUMER.CREATE.XH_CASES.dept_jq.case.v1.*.CD")
    assert not security.may_publish(dept, "$JS.API.CONSUMER.MSG.NEXT.XH_CASES.units")  # not another's consumer
    assert security.may_publish(users["units"], "$JS.API.CONSUMER.CREATE.XH_CASES.units.case.v1.*.CD")
    assert not security.may_publish(users["units"], "$JS.API.CONSUMER.CREATE.XH_CASES.units")
    assert security.may_publish(users["hotline"], "$JS.API.CONSUMER.CREATE.XH_CASES.hotline.case.v1.*.JQ")
    text = conf.read_text()
    assert '{user: "dept_jq"' in text and "# inbound system like units, case events of JQ only" in text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("users:\n  units: {streets: [CD, XX]}\n", r"security.yaml:2: users.units.streets.1: XX is not a street"),
        ("users:\n  dept_a: {streets: [CD]}\n", r"security.yaml:1: users: .*'dept_a' is new: say whose permissions"),
        ("users:\n  dept_a: {like: dispatch}\n", r"security.yaml:2: users.dept_a.like: .*not a built-in integrator"),
        ("users:\n  operator: {like: units}\n", r"users: .*'operator' is Xiuhua's own"),
        ("users:\n  Dept-A: {like: units}\n", r"users: .*user name 'Dept-A'"),
        ("users:\n  units: {street: [CD]}\n", r"security.yaml:2: users.units.street: Extra inputs"),
    ],
)
def test_a_wrong_security_file_names_file_line_and_field(tmp_path, text, error):
    with pytest.raises(CityDataError, match=error):
        load_city(_city(tmp_path, text))


def test_the_deploy_configuration_has_the_citys_users_with_passwords_from_the_environment(tmp_path):
    city = load_city(_city(tmp_path, "users:\n  dept_jq: {like: units, streets: [JQ]}\n"))
    text = security.deploy_config(security.DEPLOY_NODES, consumers={}, city=city.security)
    assert '{user: "dept_jq", password: $XIUHUA_NATS_PASSWORD_DEPT_JQ' in text
    assert '"$JS.API.CONSUMER.CREATE.XH_CASES.dept_jq.case.v1.*.JQ"' in text
    assert "dept_jq" not in security.deploy_config(security.DEPLOY_NODES, consumers={})
