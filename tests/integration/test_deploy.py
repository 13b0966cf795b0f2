"""deploy/ against the code: files parse, every env var, service, subject and port they name exists, the NATS
configuration is what the permission model generates, and alert rules and the dashboard use metrics the
services really export (collected from the running services' registries)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml
from prometheus_client.metrics_core import Metric

from tests.helpers import system
from xiuhua import security
from xiuhua.registry import SERVICES
from xiuhua.settings import PROJECT_ROOT, Settings

DEPLOY = PROJECT_ROOT / "deploy"
YAMLS = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def _docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _env_names(obj: object) -> set[str]:
    """Every XIUHUA_* name used as a key or `name:` anywhere in a parsed document."""
    found: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and k.startswith("XIUHUA_"):
                found.add(k)
            if k == "name" and isinstance(v, str) and v.startswith("XIUHUA_"):
                found.add(v)
            found |= _env_names(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= _env_names(v)
    return found


def test_every_file_parses():
    assert YAMLS and all(_docs(p) for p in YAMLS)
    json.loads((DEPLOY / "grafana" / "dashboards" / "command-centre.json").read_text())


def test_env_vars_are_settings_or_nats_passwords():
    known = {f"XIUHUA_{f.upper()}" for f in Settings.model_fields} | {
        security.password_env(u) for u in security.user_names()
    }
    used = set().union(*(_env_names(d) for p in YAMLS for d in _docs(p)))
    used |= set(re.findall(r"XIUHUA_[A-Z_]+", (DEPLOY / "env.example").read_text()))
    used |= set(re.findall(r"\$(XIUHUA_[A-Z_]+)", (DEPLOY / "nats" / "nats.conf").read_text()))
    assert used and used <= known, used - known


def test_compose_runs_a_cluster_a_replica_set_and_two_instances_of_each_service():
    compose = _docs(DEPLOY / "compose.yaml")[0]["services"]
    assert {f"nats-{i}" for i in range(3)} <= set(compose) and {f"mongo-{i}" for i in range(3)} <= set(compose)
    for svc in SERVICES:
        instances = [c for c in compose.values() if c.get("command") == ["run", svc]]
        assert len(instances) == 2, svc
        for c in instances:
            env = c["environment"]
            assert env["XIUHUA_STREAM_REPLICAS"] == "3" and env["XIUHUA_WRITE_CONCERN"] == "majority"
            assert env["XIUHUA_NATS_USER"] == svc and "replicaSet=rs0" in env["XIUHUA_MONGO_URL"]
            assert env["XIUHUA_HTTP_PORT"] == "8000"
    streams_job = compose["streams"]
    assert streams_job["command"] == ["streams"] and streams_job["environment"]["XIUHUA_STREAM_REPLICAS"] == "3"
    assert "mongosh" in compose["mongo-init"]["command"]
    assert "EXPOSE 8000" in (DEPLOY / "Dockerfile").read_text()
    scrape = _docs(DEPLOY / "prometheus" / "prometheus.yml")[0]["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(scrape) == sorted(f"{s}-{n}:8000" for s in SERVICES for n in (1, 2))
    assert {t.split(":")[0] for t in scrape} <= set(compose)


def test_kubernetes_has_statefulsets_deployments_of_two_and_secret_references():
    kinds = {(d["kind"], d["metadata"]["name"]): d for p in (DEPLOY / "k8s").glob("*.yaml") for d in _docs(p)}
    assert kinds[("StatefulSet", "nats")]["spec"]["replicas"] == 3
    assert kinds[("StatefulSet", "mongo")]["spec"]["replicas"] == 3
    assert ("Job", "mongo-init") in kinds and ("Job", "xiuhua-streams") in kinds
    env = kinds[("ConfigMap", "xiuhua-env")]["data"]
    assert env["XIUHUA_STREAM_REPLICAS"] == "3" and env["XIUHUA_WRITE_CONCERN"] == "majority"
    for svc in SERVICES:
        dep = kinds[("Deployment", svc)]
        assert dep["spec"]["replicas"] == 2
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["args"] == ["run", svc] and c["ports"][0]["containerPort"] == 8000
        pw = next(e for e in c["env"] if e["name"] == "XIUHUA_NATS_PASSWORD")
        assert pw["valueFrom"]["secretKeyRef"] == {"name": "xiuhua-nats-passwords", "key": svc}
        assert ("Service", svc) in kinds


def test_nats_configs_are_what_the_permission_model_generates():
    """Regenerate with `python -m xiuhua.security > deploy/nats/nats.conf` (and `--k8s` for deploy/k8s/)."""
    assert (DEPLOY / "nats" / "nats.conf").read_text() == security.deploy_config(security.DEPLOY_NODES)
    assert (DEPLOY / "k8s" / "nats.conf").read_text() == security.deploy_config(security.K8S_NODES)


def _exported_names(families: list[Metric]) -> set[str]:
    names = set()
    for f in families:
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"),
        }.get(f.type, ("",))
        names |= {f.name + s for s in suffixes} | {s.name for s in f.samples}
    return names


# PromQL words that are not metric names: functions, aggregations, operators and modifiers.
PROMQL_WORDS = {
    "sum",
    "count",
    "avg",
    "min",
    "max",
    "rate",
    "increase",
    "irate",
    "histogram_quantile",
    "absent",
    "by",
    "on",
    "without",
    "ignoring",
    "unless",
    "and",
    "or",
    "offset",
    "group_left",
    "group_right",
    "bool",
    "topk",
    "bottomk",
    "delta",
    "deriv",
    "clamp_min",
    "clamp_max",
    "time",
    "vector",
    "scalar",
    "label_replace",
    "stddev",
}


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, grouping labels and durations left out)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    words = set(re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)", expr))
    return words - PROMQL_WORDS


def _exprs(node: object) -> Iterator[str]:
    """Every `expr` in a Grafana dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _exprs(value)


def test_metric_names_are_read_from_expressions():
    expr = 'sum by (app) (up{job="xiuhua"}) unless on (app) count(app_up == 1) or rate(x_total[5m] offset 1d) > 1e3'
    assert _metric_names(expr) == {"up", "app_up", "x_total"}


async def test_alert_rules_and_dashboard_use_metrics_the_services_export(settings):
    exported: set[str] = set()
    async with system(settings) as rts:
        for rt in rts.values():
            exported |= _exported_names(list(rt.metrics.registry.collect()))
    rules = [r for g in _docs(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "XiuhuaConsumerLag",
        "XiuhuaDeadLettersGrowing",
        "XiuhuaRedeliveriesHigh",
        "XiuhuaOverdueSurge",
        "XiuhuaServiceDown",
        "XiuhuaPublishRefused",
    }
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "command-centre.json").read_text())
    exprs = [r["expr"] for r in rules] + list(_exprs(dashboard))
    used = set().union(*(_metric_names(e) for e in exprs))
    # From outside the services: the NATS surveyor's and Prometheus's own `up`; every other name is exported.
    outside = {"nats_consumer_num_pending", "up"}
    assert used and used - outside <= exported, sorted(used - outside - exported)


def test_services_send_traces_to_a_collector_that_hands_them_to_jaeger():
    compose = _docs(DEPLOY / "compose.yaml")[0]["services"]
    collector_url = "http://otel-collector:4318/v1/traces"
    for svc in SERVICES:
        for c in (c for c in compose.values() if c.get("command") == ["run", svc]):
            assert c["environment"]["XIUHUA_TRACING"] == "true"
            assert c["environment"]["XIUHUA_TRACING_ENDPOINT"] == collector_url
    collector = compose["otel-collector"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in collector["volumes"]}
    assert mounted["./otel/collector.yaml"] == collector["command"][0].removeprefix("--config=")
    config = _docs(DEPLOY / "otel" / "collector.yaml")[0]
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    [exporter] = config["service"]["pipelines"]["traces"]["exporters"]
    assert config["exporters"][exporter]["endpoint"].split(":")[0] == "jaeger" and "jaeger" in compose
    assert compose["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    k8s_env = next(d for d in _docs(DEPLOY / "k8s" / "config.yaml") if d["kind"] == "ConfigMap")["data"]
    assert k8s_env["XIUHUA_TRACING_ENDPOINT"] == collector_url
    k8s = {(d["kind"], d["metadata"]["name"]) for d in _docs(DEPLOY / "k8s" / "tracing.yaml")}
    assert {("Service", "otel-collector"), ("Deployment", "otel-collector"), ("Service", "jaeger")} <= k8s
