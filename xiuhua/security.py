"""Who may say what on the bus: one permission model, rendered as a nats-server configuration.

Each service has its own user and may publish only its own subjects (plus its dead letters) and use only its own
durable consumers; inbound systems (patrol app, hotline, IoT, unit case systems, command centre) may publish only
their `report.v1.in.<source>` / `cmd.v1.case.<action>` subjects. Because `cmd.v1.case.<action>` is restricted per
publisher, dispatch can trust the actor's role in a command (docs/decisions/0013-permissions-as-data.md). The
`operator` user provisions streams and runs `xiuhua dlq` / `xiuhua chaos`.

Replies travel on inboxes: JetStream's API answers, publish acknowledgements, a pull consumer's deliveries, the
answers to a query. Each user connects with an inbox prefix of its own (`_INBOX_<user>`, `inbox_prefix`) and may
subscribe under that prefix only, so no user can listen in on what is delivered to another (the NATS clients'
shared default `_INBOX.>` would hand every user everyone's deliveries).

`render_config` is pure: permissions as data in, configuration text out. `service_consumers` reads each
service's durable consumers from its `ServiceSpec` (built offline, nothing connects), so a consumer a colleague
adds is permitted without an edit here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from contracts import streams, subjects
from xiuhua.city.security import SecurityFile
from xiuhua.settings import Settings

OPERATOR = "operator"
MAX_PAYLOAD = 256 * 1024  # bytes: the largest inbound report (4,000-character texts, 20 URLs) fits many times over
INBOX = "_INBOX"  # NATS clients' default inbox prefix: a connection without a user of the model keeps it


def inbox_prefix(user: str) -> str:
    """The inbox prefix `user` connects with (nats-py `connect(inbox_prefix=...)`) and alone may subscribe under."""
    return f"{INBOX}_{user}"


def login(user: str, password: str) -> dict[str, str]:
    """nats-py `connect` keyword arguments for `user` of the model: its password and its own inbox prefix."""
    return {"user": user, "password": password, "inbox_prefix": inbox_prefix(user)}


def login_env(user: str, password: str) -> dict[str, str]:
    """The environment a process started as `user` gets: its own inbox prefix too, so that one inherited from the
    starting process (`XIUHUA_NATS_INBOX_PREFIX`) cannot stand in for it."""
    return {"XIUHUA_NATS_USER": user, "XIUHUA_NATS_PASSWORD": password, "XIUHUA_NATS_INBOX_PREFIX": inbox_prefix(user)}


@dataclass(frozen=True)
class Consumer:
    """A durable consumer a user may create, read and acknowledge."""

    stream: str
    durable: str
    erases: bool = False  # erases the messages it applied (Subscription.erase_subjects)
    # An integrator's consumer: only with these filter subjects when given (its jurisdiction).
    filters: tuple[str, ...] = ()
    # It may delete it: an integrator, to start over with another filter or deliver policy; a service, a consumer
    # only some deployments need once it has done its part (`Subscription.only_if`).
    deletable: bool = False

    def api(self) -> list[str]:
        """The JetStream API subjects that create, read and acknowledge this consumer, and nothing else."""
        base = f"{self.stream}.{self.durable}"
        if self.filters:
            # The server checks a create whose subject names the filter against the filter in its body; the
            # forms without it (and the legacy DURABLE.CREATE) would let the body name any subject.
            out = [f"$JS.API.CONSUMER.CREATE.{base}.{f}" for f in self.filters]
        else:
            out = [
                f"$JS.API.CONSUMER.CREATE.{base}",
                f"$JS.API.CONSUMER.CREATE.{base}.>",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{base}",
            ]
        out += [f"$JS.API.CONSUMER.INFO.{base}", f"$JS.API.CONSUMER.MSG.NEXT.{base}", f"$JS.ACK.{base}.>"]
        if self.deletable:
            out.append(f"$JS.API.CONSUMER.DELETE.{base}")
        if self.erases:
            out.append(f"$JS.API.STREAM.MSG.DELETE.{self.stream}")
        return out


@dataclass(frozen=True)
class User:
    """A NATS user and what it may publish and subscribe to."""

    name: str
    password: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...] = ()  # besides its own inboxes
    consumers: tuple[Consumer, ...] = ()
    listens: tuple[str, ...] = ()  # core-NATS request/reply subjects it serves (replies allowed then)
    note: str = ""

    def subscribe_allowed(self) -> list[str]:
        """Every subject this user may subscribe to: its own inboxes (JetStream's answers and deliveries, replies to
        its queries come back there), then what it may read besides."""
        own = [] if ">" in self.subscribe else [f"{inbox_prefix(self.name)}.>"]
        return [*own, *self.subscribe, *self.listens]

    def publish_allowed(self) -> list[str]:
        """Every subject this user may publish to, JetStream API included."""
        out = list(self.publish)
        if self.consumers:
            out += ["$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.INFO.*"]
        for c in self.consumers:
            out += c.api()
        return out


# What each service publishes (besides `dlq.v1.<service>`). Intake answers reports; dispatch owns the lifecycle.
SERVICE_PUBLISHES: dict[str, tuple[str, ...]] = {
    "intake": (
        "case.v1.opened.>",
        "case.v1.merged.>",
        "case.v1.transferred.>",
        subjects.REPORT_REJECTED,
        # A transfer is intake's: so is its correction, and the answer to a correction it cannot apply.
        "case.v1.transfer_corrected.>",
        "case.v1.command_rejected.>",
        # Open311 requests arriving over HTTP enter the bus as their own inbound source, readings heard
        # on the HJ 212 TCP edge as sensor readings, and sensors back to normal are intake's own signal.
        subjects.report_subject("open311"),
        subjects.report_subject("sensor"),
        "report.v1.sensor_normal",
    ),
    "dispatch": ("case.v1.>",),  # minus intake's three, below
    "scoring": (subjects.SCORE_ALL,),
    "notify": (subjects.NOTIFY_ALL, "bulletin.v1.>"),
}
# Core-NATS request/reply subjects a service serves on a connection of its own (not visible on its broker).
SERVICE_SERVES: dict[str, tuple[str, ...]] = {"scoring": ("score.query.v1.>",)}
# Subjects a service must never publish even where a wildcard above would allow it. Dispatch opens cases of its
# own (a merchant's enforcement case), so `case.v1.opened` is both services'; merging and transferring are intake's.
SERVICE_DENIES: dict[str, tuple[str, ...]] = {
    "dispatch": ("case.v1.merged.>", "case.v1.transferred.>", "case.v1.transfer_corrected.>"),
}

UNIT_ACTIONS = ("acknowledge", "return", "request_extension", "resolve")
CENTRE_ACTIONS = ("approve_extension", "verify", "close", "reopen", "cancel", "rate", "assign", "correct_transfer")

# Inbound publishers: systems outside Xiuhua.
INBOUND: dict[str, tuple[str, ...]] = {
    "patrol_app": (subjects.report_subject("grid"), subjects.report_subject("merchant_check")),
    # The hotline rates cases (回访) and corrects the transfers its own orders got (转办纠错).
    "hotline": (
        subjects.report_subject("hotline"),
        subjects.COMMAND.format(action="rate"),
        subjects.COMMAND.format(action="correct_transfer"),
    ),
    "iot": (subjects.report_subject("sensor"),),
    "supervision": (subjects.report_subject("inspection"),),
    "units": tuple(subjects.COMMAND.format(action=a) for a in UNIT_ACTIONS),
    "command_centre": (
        *(subjects.COMMAND.format(action=a) for a in CENTRE_ACTIONS),
        subjects.report_subject("inspection"),
        "score.query.v1.>",  # scoring's request/reply queries (units, merchants, rankings)
    ),
}


# Integrators that may listen: the streams each may read through consumers of its own (by default a durable named
# after the user, for following events, and `<user>_wait`, which the client's `wait_for` uses for a moment).
LISTENERS: dict[str, tuple[str, ...]] = {
    "units": (streams.CASES.name,),
    "hotline": (streams.CASES.name,),
    "command_centre": (streams.CASES.name, streams.SCORES.name),
}


def wait_consumer(user: str) -> str:
    """The consumer name `XiuhuaClient.wait_for` uses when connected as `user`."""
    return f"{user}_wait"


def listener_consumers(user: str, stream_names: Iterable[str], streets: Iterable[str] = ()) -> tuple[Consumer, ...]:
    """An integrator's consumers on each stream; `streets` restricts its case events to its jurisdiction."""
    out: list[Consumer] = []
    for stream in stream_names:
        only = tuple(subjects.case_subject("*", s) for s in streets) if stream == streams.CASES.name else ()
        out += [Consumer(stream, name, filters=only, deletable=True) for name in (user, wait_consumer(user))]
    return tuple(out)


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a NATS subject pattern (`*` one token, `>` the rest) covers `subject`."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(got) == len(want)


def may_publish(user: User, subject: str) -> bool:
    """Whether the model lets `user` publish `subject` (its allowances less the service's denials)."""
    if any(subject_matches(p, subject) for p in SERVICE_DENIES.get(user.name, ())):
        return False
    return any(subject_matches(p, subject) for p in user.publish_allowed())


def publisher_of(subject: str) -> str:
    """The user who publishes `subject` in production: the inbound system, else the service that owns it."""
    users = [inbound_user(n, "") for n in INBOUND] + [service_user(s, "", ()) for s in SERVICE_PUBLISHES]
    for user in users:
        if may_publish(user, subject):
            return user.name
    raise LookupError(f"nobody but the operator publishes {subject}")


def service_user(service: str, password: str, consumers: Iterable[Consumer], listens: Iterable[str] = ()) -> User:
    """A service's user: its own subjects, its dead letters, its own consumers, the queries it answers."""
    return User(
        service,
        password,
        (*SERVICE_PUBLISHES.get(service, ()), subjects.dlq_subject(service)),
        consumers=tuple(consumers),
        listens=tuple(listens),
        note=f"service {service}",
    )


def inbound_user(name: str, password: str, streets: Iterable[str] = (), like: str | None = None) -> User:
    """An inbound system's user: its inbound subjects, and the consumers it may listen through (see LISTENERS);
    `like` names the built-in integrator whose permissions a user the city adds takes."""
    streets = tuple(streets)
    kind = like or name
    note = (
        "inbound system"
        + (f" like {like}" if like else "")
        + (f", case events of {', '.join(streets)} only" if streets else "")
    )
    return User(
        name, password, INBOUND[kind], consumers=listener_consumers(name, LISTENERS.get(kind, ()), streets), note=note
    )


def operator_user(password: str) -> User:
    """Provisioning, the dead-letter queue, audits: everything."""
    return User(OPERATOR, password, (">",), (">",), note="operator: streams, dlq, chaos")


def model(
    passwords: Mapping[str, str],
    consumers: Mapping[str, Sequence[Consumer]],
    listens: Mapping[str, Sequence[str]] | None = None,
    jurisdictions: Mapping[str, Sequence[str]] | None = None,
    added: Mapping[str, str] | None = None,
) -> list[User]:
    """Every user of a deployment, from passwords by user name, consumers and served subjects by service, the
    streets an integrator is restricted to (none: all) and the users a city adds (name: the integrator it is like)."""
    streets = jurisdictions or {}
    users = [operator_user(passwords[OPERATOR])]
    users += [
        service_user(s, passwords[s], consumers.get(s, ()), (listens or {}).get(s, ())) for s in SERVICE_PUBLISHES
    ]
    users += [inbound_user(n, passwords[n], streets.get(n, ())) for n in INBOUND]
    users += [inbound_user(n, passwords[n], streets.get(n, ()), like) for n, like in (added or {}).items()]
    return users


def user_names(added: Iterable[str] = ()) -> list[str]:
    """Every user the model knows (and those a city adds)."""
    return [OPERATOR, *SERVICE_PUBLISHES, *INBOUND, *added]


@dataclass(frozen=True)
class Tls:
    """Server TLS files (paths as the server sees them)."""

    cert: str
    key: str
    ca: str | None = None
    verify: bool = False  # require client certificates


@dataclass(frozen=True)
class ServerOptions:
    """What the configuration says besides users."""

    listen: str | None = None  # "0.0.0.0:4222"; None leaves it to the command line
    max_payload: int = MAX_PAYLOAD
    jetstream_dir: str | None = None
    tls: Tls | None = None
    server_name: str | None = None  # "$SERVER_NAME" reads it from the server's environment
    http_port: int | None = None  # monitoring endpoint (/varz, /jsz) for the exporter
    cluster: Mapping[str, object] = field(default_factory=dict)  # name, listen, routes


def _q(value: str) -> str:
    # `$NAME` is nats-server's reference to an environment variable: left unquoted so the server resolves it.
    if re.fullmatch(r"\$[A-Z][A-Z0-9_]*", value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def render_config(users: Sequence[User], options: ServerOptions | None = None) -> str:
    """The nats-server configuration text for `users` (pure)."""
    o = options or ServerOptions()
    lines = ["# Generated by xiuhua.security: edit the model, not this file.", f"max_payload: {o.max_payload}"]
    if o.server_name:
        lines.append(f"server_name: {_q(o.server_name)}")
    if o.listen:
        lines.append(f"listen: {_q(o.listen)}")
    if o.http_port:
        lines.append(f"http_port: {o.http_port}")
    if o.jetstream_dir is not None:
        lines.append(f"jetstream {{ store_dir: {_q(o.jetstream_dir)} }}")
    if o.tls is not None:
        tls = [f"  cert_file: {_q(o.tls.cert)}", f"  key_file: {_q(o.tls.key)}"]
        if o.tls.ca:
            tls.append(f"  ca_file: {_q(o.tls.ca)}")
        if o.tls.verify:
            tls.append("  verify: true")
        lines += ["tls {", *tls, "}"]
    if o.cluster:
        c = o.cluster
        lines += [
            "cluster {",
            f"  name: {_q(str(c['name']))}",
            f"  listen: {_q(str(c['listen']))}",
            f"  routes: {_list(str(r) for r in c.get('routes', []))}",
            "}",
        ]
    lines.append("authorization {")
    lines.append("  users: [")
    for u in users:
        pub = f"allow: {_list(u.publish_allowed())}"
        deny = SERVICE_DENIES.get(u.name, ())
        if deny:
            pub += f", deny: {_list(deny)}"
        lines.append(f"    # {u.note}" if u.note else "    #")
        lines.append(f"    {{user: {_q(u.name)}, password: {_q(u.password)}, permissions: {{")
        lines.append(f"      publish: {{{pub}}}")
        lines.append(f"      subscribe: {{allow: {_list(u.subscribe_allowed())}}}")
        if u.listens:
            lines.append("      allow_responses: true")
        lines.append("    }}")
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def service_consumers(services: Iterable[str] | None = None) -> dict[str, list[Consumer]]:
    """Each service's durable consumers, read from its ServiceSpec (built offline: nothing connects)."""
    return {name: b[0] for name, b in service_bindings(services).items()}


def service_bindings(services: Iterable[str] | None = None) -> dict[str, tuple[list[Consumer], list[str]]]:
    """Each service's durable consumers and the core-NATS subjects it serves, read from its ServiceSpec."""
    from xiuhua import third_party
    from xiuhua.registry import SERVICES, spec
    from xiuhua.service import build_runtime
    from xiuhua.settings import Settings

    offline = Settings(nats_url="nats://127.0.0.1:1", mongo_url="mongodb://127.0.0.1:1/?directConnection=true")
    out: dict[str, tuple[list[Consumer], list[str]]] = {}
    for name in services or SERVICES:
        rt = build_runtime(spec(name), offline)
        erasing = {r.sub.name for r in rt.consumers if r.sub.erase_subjects}
        optional = {r.sub.name for r in rt.consumers if r.sub.only_if}  # its service deletes it once it is done
        found: list[Consumer] = []
        served: list[str] = []
        for sub in rt.broker.subscribers:
            stream, durable, subject = third_party.binding(sub)
            if stream and durable:
                found.append(Consumer(stream, durable, erases=durable in erasing, deletable=durable in optional))
            elif not stream and subject:
                served.append(subject)
        out[name] = (
            sorted(set(found), key=lambda c: (c.stream, c.durable)),
            sorted({*SERVICE_SERVES.get(name, ()), *served}),
        )
    return out


@functools.cache
def _every_service_binding() -> Bindings:
    # Building the four services offline takes seconds; what they bind does not change within a process.
    return service_bindings()


def consumers_for_subjects(pairs: Iterable[tuple[str, str]]) -> list[Consumer]:
    """Consumers from (durable, subject) pairs, the stream looked up from the subject."""
    return [Consumer(streams.stream_for(s.replace("*", "x").replace(">", "x")).name, d) for d, s in pairs]


def load_or_create_passwords(folder: Path, added: Iterable[str] = ()) -> dict[str, str]:
    """Per-user passwords for the embedded default, generated once into `folder/passwords.json` (mode 0600)."""
    path = folder / "passwords.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [n for n in user_names(added) if n not in known]
    if missing:
        known.update({n: secrets.token_urlsafe(24) for n in missing})
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return known


Bindings = Mapping[str, tuple[Sequence[Consumer], Sequence[str]]]


def write_embedded_config(
    var_dir: Path, bindings: Bindings | None = None, city: SecurityFile | None = None
) -> tuple[Path, dict[str, str]]:
    """The embedded default's nats-server configuration with every user (and the city's, `security.yaml`);
    returns its path and the passwords. `bindings` (service_bindings' answer) saves building the services again."""
    folder = var_dir / "security"
    city = city or SecurityFile()
    passwords = load_or_create_passwords(folder, city.added())
    bindings = bindings if bindings is not None else _every_service_binding()
    consumers = {n: b[0] for n, b in bindings.items()}
    text = render_config(
        model(passwords, consumers, {n: b[1] for n, b in bindings.items()}, city.jurisdictions(), city.added())
    )
    path = folder / "nats.conf"
    path.write_text(text)
    os.chmod(path, 0o600)
    return path, passwords


def settings_as(settings: Settings, user: str, password: str) -> Settings:
    """`settings` connecting as `user` with `password` and its own inbox prefix (one configured for another user
    would be refused)."""
    own = {"nats_user": user, "nats_password": password, "nats_inbox_prefix": inbox_prefix(user)}
    return settings.model_copy(update=own)


def as_operator(settings: Settings, passwords: Mapping[str, str]) -> Settings:
    """`settings` connecting as the operator user."""
    return settings_as(settings, OPERATOR, passwords[OPERATOR])


def embedded_passwords(var_dir: Path) -> dict[str, str]:
    """The users' passwords the embedded default generated under `var_dir` (`load_or_create_passwords`); none
    where it has not run."""
    path = var_dir / "security" / "passwords.json"
    return json.loads(path.read_text()) if path.exists() else {}


def embedded_credentials(settings: Settings, user: str) -> Settings:
    """`settings` connecting as `user` with the embedded default's password for it, when no credentials are
    configured and the embedded default (`var_dir/security/passwords.json`) knows the user."""
    if settings.nats_user or settings.nats_creds_file:
        return settings
    password = embedded_passwords(settings.var_dir).get(user)
    if password is None:
        return settings
    return settings_as(settings, user, password)


def operator_settings(settings: Settings) -> Settings:
    """For operator commands against the embedded default: its operator credentials when none are configured."""
    return embedded_credentials(settings, OPERATOR)


def password_env(user: str) -> str:
    """The environment variable a deployment keeps a user's NATS password in: `XIUHUA_NATS_PASSWORD_<USER>`."""
    return f"XIUHUA_NATS_PASSWORD_{user.upper()}"


def cluster_config(
    routes: Sequence[str],
    passwords: Mapping[str, str],
    options: ServerOptions,
    bindings: Bindings | None = None,
    city: SecurityFile | None = None,
) -> str:
    """One node's configuration of a cluster: every user of the model (and the city's), the routes to its peers,
    and `options` (listen addresses, store directory, server name) for the node."""
    city = city or SecurityFile()
    bindings = bindings if bindings is not None else _every_service_binding()
    listens = {n: sorted({*SERVICE_SERVES.get(n, ()), *b[1]}) for n, b in bindings.items()}
    cluster = {"name": "xiuhua", "listen": "0.0.0.0:6222", **options.cluster, "routes": list(routes)}
    node = ServerOptions(**{**options.__dict__, "cluster": cluster})
    users = model(passwords, {n: b[0] for n, b in bindings.items()}, listens, city.jurisdictions(), city.added())
    return render_config(users, node)


def deploy_config(
    nodes: Sequence[str], consumers: Mapping[str, Sequence[Consumer]] | None = None, city: SecurityFile | None = None
) -> str:
    """The cluster configuration in deploy/: passwords and server name from each node's environment."""
    bindings: Bindings | None = None if consumers is None else {n: (list(c), []) for n, c in consumers.items()}
    passwords = {u: f"${password_env(u)}" for u in user_names((city or SecurityFile()).added())}
    options = ServerOptions(
        listen="0.0.0.0:4222", http_port=8222, jetstream_dir="/data/jetstream", server_name="$SERVER_NAME"
    )
    return cluster_config([f"nats://{n}:6222" for n in nodes], passwords, options, bindings, city)


DEPLOY_NODES = ("nats-0", "nats-1", "nats-2")  # compose service names
K8S_NODES = tuple(f"{n}.nats-cluster" for n in DEPLOY_NODES)  # StatefulSet pods behind the headless service

if __name__ == "__main__":  # python -m xiuhua.security [--k8s] > deploy/nats/nats.conf (or deploy/k8s/nats.conf)
    import sys

    from xiuhua.city import load_city
    from xiuhua.settings import get_settings

    city = load_city(get_settings().city_dir).security  # the integrators XIUHUA_CITY_DIR's city adds
    print(deploy_config(K8S_NODES if "--k8s" in sys.argv else DEPLOY_NODES, city=city), end="")
