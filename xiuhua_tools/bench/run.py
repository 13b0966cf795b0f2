"""Run the benchmark: the embedded stack as `xiuhua up` runs it, a measured load, the relay ceiling beside it."""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

from contracts import streams
from xiuhua.bus import connect_options, publish_pipelined
from xiuhua.city import load_city
from xiuhua.settings import Settings
from xiuhua.supervisor import Supervisor
from xiuhua_tools.bench.load import Lattice, report, sensor_reading
from xiuhua_tools.bench.relay import relay_chain

DOCS = "docs "  # marks a documents-written count among the command counts of `store_commands`
PIPELINE_HOPS = 4  # report → intake → case.opened → dispatch → case.dispatched → scoring → score.v1
SCALE_JOBS = ("bulletin", "rebuild", "history")  # the jobs that grow with history, run after the pipeline


@dataclass
class Observer:
    """Timestamps of what the pipeline publishes, by correlation id (JetStream deliveries are ignored)."""

    opened: dict[str, float] = field(default_factory=dict)
    dispatched: dict[str, float] = field(default_factory=dict)
    case_of: dict[str, str] = field(default_factory=dict)
    scored: dict[str, float] = field(default_factory=dict)
    delivered: dict[str, float] = field(default_factory=dict)
    deliveries: int = 0  # every notify.v1.delivered seen (a case may alert several contacts)

    async def start(self, url: str, opts: dict[str, Any]) -> nats.NATS:
        """Subscribe to the outcome subjects."""
        nc = await nats.connect(url, **opts)

        async def on(msg: Any) -> None:
            if msg.reply.startswith("$JS.ACK"):
                return
            now = time.perf_counter()
            body = json.loads(msg.data)
            subject = msg.subject
            if subject.startswith("case.v1.opened."):
                self.opened.setdefault(body["correlation_id"], now)
            elif subject.startswith("case.v1.dispatched."):
                self.dispatched.setdefault(body["correlation_id"], now)
                self.case_of[body["case_id"]] = body["correlation_id"]
            elif subject == "score.v1.unit_updated":
                self.scored.setdefault(body.get("correlation_id", ""), now)
            elif subject == "notify.v1.delivered":
                self.deliveries += 1
                self.delivered.setdefault(body.get("correlation_id", ""), now)

        for s in ("case.v1.opened.>", "case.v1.dispatched.>", "score.v1.unit_updated", "notify.v1.delivered"):
            await nc.subscribe(s, cb=on)
        await nc.flush()
        return nc


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    if not samples:
        return {"n": 0}
    s = sorted(samples)
    q = statistics.quantiles(s, n=100, method="inclusive") if len(s) > 1 else [s[0]] * 99
    return {"n": len(s), "p50_ms": q[49] * 1000, "p95_ms": q[94] * 1000, "p99_ms": q[98] * 1000, "max_ms": s[-1] * 1000}


class ResourceSampler:
    """Peak RSS and CPU seconds of each service process."""

    def __init__(self, procs: dict[str, psutil.Process]) -> None:
        self.procs = procs
        self.peak = dict.fromkeys(procs, 0)
        self.cpu0 = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            for n, p in self.procs.items():
                try:
                    self.peak[n] = max(self.peak[n], p.memory_info().rss)
                except psutil.Error:
                    pass
            await asyncio.sleep(0.2)

    def start(self) -> None:
        """Sample in the background."""
        self._task = asyncio.create_task(self._loop())

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user and system) each process has used so far (one it cannot read is left out)."""
        out = {}
        for n, p in self.procs.items():
            try:
                out[n] = sum(p.cpu_times()[:2])
            except psutil.Error:
                pass
        return out

    def stop(self) -> dict[str, dict[str, float]]:
        """Stop and report MB and CPU seconds per service."""
        if self._task:
            self._task.cancel()
        out = {}
        for n, p in self.procs.items():
            try:
                cpu = sum(p.cpu_times()[:2]) - self.cpu0[n]
            except psutil.Error:
                cpu = float("nan")
            out[n] = {"peak_rss_mb": self.peak[n] / 2**20, "cpu_s": cpu}
        return out


async def scrape(ports: dict[str, int]) -> dict[str, list[Any]]:
    """Each service's `/metrics` samples (a service that does not answer is left out)."""
    out: dict[str, list[Any]] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for name, port in ports.items():
            try:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                continue
            out[name] = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    return out


def store_commands(readings: dict[str, list[Any]]) -> dict[str, dict[str, float]]:
    """Each service's store commands so far, by command and collection, the seconds they took, and the documents
    its writes carried (keys `docs <command> <collection>`), from a `scrape`."""
    out: dict[str, dict[str, float]] = {}
    for name, samples in readings.items():
        counts: dict[str, float] = {}
        for sample in samples:
            if sample.name == "xiuhua_store_commands_total":
                key = f"{sample.labels['command']} {sample.labels['collection']}".strip()
            elif sample.name == "xiuhua_store_command_seconds_total":
                key = "seconds"
            elif sample.name == "xiuhua_store_documents_total":
                key = f"{DOCS}{sample.labels['command']} {sample.labels['collection']}"
            else:
                continue
            counts[key] = counts.get(key, 0.0) + sample.value
        out[name] = counts
    return out


def consumer_waits(readings: dict[str, list[Any]]) -> dict[str, tuple[float, float]]:
    """Per consumer (`service/consumer`), from a `scrape`: the seconds its messages waited in their stream before
    it began to apply them, summed, and how many messages (`xiuhua_message_wait_seconds`)."""
    out: dict[str, tuple[float, float]] = {}
    for name, samples in readings.items():
        sums = {s.labels["consumer"]: s.value for s in samples if s.name == "xiuhua_message_wait_seconds_sum"}
        counts = {s.labels["consumer"]: s.value for s in samples if s.name == "xiuhua_message_wait_seconds_count"}
        out |= {f"{name}/{c}": (total, counts.get(c, 0.0)) for c, total in sums.items()}
    return out


def mean_waits(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean wait in milliseconds per consumer between two readings, the longest first (consumers that applied
    nothing in between are left out)."""
    means = {}
    for consumer, (total, count) in after.items():
        t0, c0 = before.get(consumer, (0.0, 0.0))
        if count > c0:
            means[consumer] = 1000 * (total - t0) / (count - c0)
    return dict(sorted(means.items(), key=lambda kv: -kv[1]))


def cpu_ms_per_case(before: dict[str, float], after: dict[str, float], cases: int) -> dict[str, float]:
    """Milliseconds of CPU each process spent per case between two readings, the busiest first: on a machine with
    few cores a burst's rate is bound by their sum, and the largest is where to look first."""
    spent = {n: (after[n] - before[n]) * 1000 / cases for n in after if n in before}
    return dict(sorted(spent.items(), key=lambda kv: -kv[1]))


def stage_timeline(t0: float, seen: dict[str, dict[str, float]], corrs: list[str]) -> dict[str, dict[str, float]]:
    """Per pipeline stage (opened, dispatched, scored), the seconds after the burst's first publish at which its
    first, middle and last case arrived: how long the pipeline took to fill, which stage held the rest back, and
    how long it took to drain."""
    out: dict[str, dict[str, float]] = {}
    for stage, at in seen.items():
        times = sorted(at[c] - t0 for c in corrs if c in at)
        if times:
            out[stage] = {"first": times[0], "median": times[len(times) // 2], "last": times[-1]}
    return out


def per_case(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], cases: int) -> dict[str, Any]:
    """Store commands (and their seconds) and documents written per case between two readings, per service, the
    busiest first."""
    out: dict[str, Any] = {}
    for name, counts in after.items():
        delta = {k: v - before.get(name, {}).get(k, 0.0) for k, v in counts.items()}
        seconds = delta.pop("seconds", 0.0)
        ranked = [(k, v / cases) for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v]
        commands = {k: v for k, v in ranked if not k.startswith(DOCS)}
        documents = {k.removeprefix(DOCS): v for k, v in ranked if k.startswith(DOCS)}
        out[name] = {
            "commands": sum(commands.values()),
            "seconds": seconds / cases,
            "by_command": commands,
            "documents": sum(documents.values()),
            "by_document": documents,
        }
    return out


async def _publish_all(js: Any, items: list[tuple[str, str, bytes]], sent_at: dict[str, float]) -> None:
    for start in range(0, len(items), 256):
        chunk = items[start : start + 256]
        now = time.perf_counter()
        for _, corr, _ in chunk:
            sent_at[corr] = now
        await asyncio.gather(
            *(js.publish(f"report.v1.in.{src}", body, headers={"Nats-Msg-Id": corr}) for src, corr, body in chunk)
        )


async def _wait(cond: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


async def _settled(count: Any, *, quiet: float, within: float) -> bool:
    """Wait until `count()` has not moved for `quiet` seconds."""
    deadline = time.monotonic() + within
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        if (now := count()) != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


async def _all_drained(js: Any, within: float) -> bool:
    """Wait until every durable consumer of every stream has nothing pending and nothing unacknowledged."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        infos = [info for spec in streams.ALL for info in await js.consumers_info(spec.name)]
        if not any(info.num_pending or info.num_ack_pending for info in infos):
            return True
        await asyncio.sleep(0.1)
    return False


async def _caught_up(js: Any, obs: Observer, within: float) -> None:
    """Before a phase's store commands are read: every consumer has drained (the followers — alerts, bulletin,
    Open311 status — too, so each case is counted whole), and the phase's alerts have gone out (the worker sends
    after its consumer has acknowledged, and its store traffic would otherwise run into the next phase)."""
    await _all_drained(js, within=within)
    await _settled(lambda: obs.deliveries, quiet=1.0, within=within)


async def run(
    *,
    rate: float,
    duration: float,
    burst: int,
    sensors: int,
    relay_messages: int,
    bulletin_cases: int = 0,
    rebuild_events: int = 0,
    history_cases: int = 0,
    pdf: bool = False,
    progress: Any = print,
    warmup: float = 2.0,
) -> dict[str, Any]:
    """The whole benchmark; returns the figures."""
    results = await _pipeline(
        rate=rate,
        duration=duration,
        burst=burst,
        sensors=sensors,
        relay_messages=relay_messages,
        progress=progress,
        warmup=warmup,
    )
    if bulletin_cases or rebuild_events or history_cases:
        # After the pipeline has stopped, on servers of their own: nothing else competes or folds the data.
        from xiuhua_tools.bench.scale import run_scale

        results |= await run_scale(
            bulletin_cases=bulletin_cases,
            rebuild_events=rebuild_events,
            history_cases=history_cases,
            pdf=pdf,
            city=load_city(Settings().city_dir),
            progress=progress,
        )
    return results


def bench_city(source: Path, target: Path) -> Path:
    """The city as configured, but with alerts that wait for nothing but the pipeline: no quiet hours (the bench
    may run at night, city time) and no per-recipient rate limit (6 a minute per contact holds most of a burst's
    alerts for minutes). Report → alert then measures the system, not the city's chosen pace."""
    shutil.copytree(source, target)
    path = target / "alerts.yaml"
    alerts = yaml.safe_load(path.read_text(encoding="utf-8"))
    alerts["quiet_hours"] = None
    alerts["rate_limit"] = {"capacity": 1_000_000, "per_minute": 1_000_000}
    path.write_text(yaml.safe_dump(alerts, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


async def _pipeline(
    *, rate: float, duration: float, burst: int, sensors: int, relay_messages: int, progress: Any, warmup: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xiuhua-bench-") as tmp:
        city_dir = bench_city(Settings().city_dir, Path(tmp) / "city")
        # The weekly bulletin is timed as a job of its own (phase 6). A fresh notify finds last week's bulletin
        # due (it catches up for 7 days) and would build it, Chromium and all, in the middle of the phases.
        settings = Settings(
            var_dir=Path(tmp), nats_url=None, mongo_url=None, city_dir=city_dir, bulletin_schedule=False
        )
        sup = Supervisor(settings, quiet=True)
        await asyncio.to_thread(sup.start_servers)
        from xiuhua.bus import provision_streams

        # The embedded default enforces per-user permissions: the benchmark speaks as the operator.
        await provision_streams(sup.nats_url or "", connect_opts=connect_options(sup.client))
        sup.spawn_services()
        try:
            await sup.wait_healthy()
            return await _measure(
                sup,
                rate=rate,
                duration=duration,
                burst=burst,
                sensors=sensors,
                relay_messages=relay_messages,
                progress=progress,
                warmup=warmup,
            )
        finally:
            await asyncio.to_thread(sup.shutdown)


@dataclass
class _Offered:
    """The reports a run has published: their count so far and when each was sent, by correlation id."""

    js: Any
    obs: Observer
    lattice: Lattice
    run_id: str
    n: int = 0
    sent_at: dict[str, float] = field(default_factory=dict)

    def since_sent(self, reached: dict[str, float], corrs: list[str]) -> dict[str, float]:
        """Percentiles of the time from each report's publish to the moment it reached a stage."""
        return percentiles([reached[c] - self.sent_at[c] for c in corrs if c in reached])

    async def offer(self, count: int, rate: float) -> list[str]:
        """`count` reports at the fixed rate, then wait until each is dispatched and alerted and every consumer
        has caught up."""
        t_start = time.perf_counter()
        corrs = []
        for i in range(count):
            item = report(self.n, self.run_id, self.lattice)
            self.n += 1
            corrs.append(item[1])
            target = t_start + i / rate
            if (delay := target - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            self.sent_at[item[1]] = time.perf_counter()
            await self.js.publish(f"report.v1.in.{item[0]}", item[2], headers={"Nats-Msg-Id": item[1]})
        obs = self.obs
        await _wait(lambda: all(c in obs.dispatched for c in corrs), 60)
        await _wait(lambda: sum(1 for c in corrs if c in obs.delivered) >= len(corrs), 20)
        await _caught_up(self.js, obs, within=60)
        return corrs


async def _measure(
    sup: Supervisor,
    *,
    rate: float,
    duration: float,
    burst: int,
    sensors: int,
    relay_messages: int,
    progress: Any,
    warmup: float,
) -> dict[str, Any]:
    url = sup.nats_url or ""
    opts = connect_options(sup.client)
    city = load_city(sup.settings.city_dir)
    obs = Observer()
    onc = await obs.start(url, opts)
    nc = await nats.connect(url, **opts)
    js = nc.jetstream()
    procs = {c.name: psutil.Process(c.proc.pid) for c in sup.children if c.proc}
    procs |= {s.name: psutil.Process(s.proc.pid) for s in sup.servers if s.proc}  # nats-server, nx-27017
    sampler = ResourceSampler(procs)
    sampler.start()
    offered = _Offered(js, obs, Lattice(city), str(int(time.time())))
    results: dict[str, Any] = {"machine": {"cpus": psutil.cpu_count(), "mem_gb": psutil.virtual_memory().total / 2**30}}
    ports = {c.name: c.port for c in sup.children}
    # 0. Warm-up at the same rate, reported apart: the first reports after start-up measure start-up, not the rate
    # (the first handful took 40-90 ms before the services built the contract index and intake's domain at start).
    if warmup > 0:
        progress(f"warm-up: {rate:g} reports/s for {warmup:g}s (reported apart)")
        warm = await offered.offer(int(rate * warmup), rate)
        results["warm_up"] = {
            "seconds": warmup,
            "reports": len(warm),
            "report_to_dispatched": offered.since_sent(obs.dispatched, warm),
        }
    progress(f"fixed rate: {rate:g} reports/s for {duration:g}s")
    results["fixed_rate"] = await _fixed_rate(offered, ports, rate, duration)
    progress(f"maximum rate: {burst} reports")
    results["max_rate"] = await _max_rate(offered, ports, burst, sampler)
    progress(f"sensor telemetry: {sensors} readings")
    results["sensors"] = await _sensor_telemetry(nc, js, offered.run_id, sensors)
    results["resources"] = sampler.stop()
    results["dead_letters"] = (await js.stream_info("XH_DLQ")).state.messages

    # 4. The bus's own ceiling, same server, same hops and message size.
    progress(f"relay chain: {relay_messages} messages through {PIPELINE_HOPS} hops")
    relay = await relay_chain(url, hops=PIPELINE_HOPS, messages=relay_messages, size=900, connect_opts=opts)
    results["relay"] = relay
    results["ratio_to_relay"] = results["max_rate"]["cases_per_s"] / relay["per_s"] if relay["per_s"] else 0.0
    await nc.close()
    await onc.close()
    return results


async def _fixed_rate(offered: _Offered, ports: dict[str, int], rate: float, duration: float) -> dict[str, Any]:
    """Phase 1, latency at a fixed offered rate: percentiles per stage, store commands and stream waits."""
    obs = offered.obs
    count = int(rate * duration)
    before = await scrape(ports)
    fixed = await offered.offer(count, rate)
    after = await scrape(ports)
    return {
        "offered_per_s": rate,
        "reports": count,
        "report_to_opened": offered.since_sent(obs.opened, fixed),
        "report_to_dispatched": offered.since_sent(obs.dispatched, fixed),
        "report_to_alert_delivered": offered.since_sent(obs.delivered, fixed),
        # At a modest rate batches are single messages: what each case costs the store then sets the latency.
        "store_per_case": per_case(store_commands(before), store_commands(after), count),
        # Where the latency goes: a message queues in its stream while the consumer applies the batch before it.
        "wait_ms_by_consumer": mean_waits(consumer_waits(before), consumer_waits(after)),
    }


async def _max_rate(offered: _Offered, ports: dict[str, int], burst: int, sampler: ResourceSampler) -> dict[str, Any]:
    """Phase 2, maximum rate: a burst published as fast as the bus takes it, until dispatched and scored; what each
    process spent on it, until every consumer drained (the bench's own publishing not included)."""
    js, obs = offered.js, offered.obs
    items = [report(offered.n + i, offered.run_id, offered.lattice) for i in range(burst)]
    offered.n += burst
    corrs = [c for _, c, _ in items]
    commands_before = store_commands(await scrape(ports))
    cpu_before = sampler.cpu()
    t0 = time.perf_counter()
    await _publish_all(js, items, offered.sent_at)
    t_pub = time.perf_counter() - t0
    ok = await _wait(lambda: all(c in obs.dispatched and c in obs.scored for c in corrs), 600)
    done_at = max([obs.scored.get(c, 0) for c in corrs] + [obs.dispatched.get(c, 0) for c in corrs])
    elapsed = done_at - t0
    await _caught_up(js, obs, within=120)
    cpu_per_case = cpu_ms_per_case(cpu_before, sampler.cpu(), burst)
    store_per_case = per_case(commands_before, store_commands(await scrape(ports)), burst)
    return {
        "reports": burst,
        "publish_s": t_pub,
        "complete": ok,
        "dispatched": sum(1 for c in corrs if c in obs.dispatched),
        "scored": sum(1 for c in corrs if c in obs.scored),
        "seconds": elapsed,
        "cases_per_s": burst / elapsed if ok and elapsed > 0 else 0.0,
        "report_to_dispatched": offered.since_sent(obs.dispatched, corrs),
        "timeline_s": stage_timeline(
            t0, {"opened": obs.opened, "dispatched": obs.dispatched, "scored": obs.scored}, corrs
        ),
        "store_per_case": store_per_case,
        "cpu_ms_per_case": cpu_per_case,
    }


async def _sensor_telemetry(nc: Any, js: Any, run_id: str, sensors: int) -> dict[str, Any]:
    """Phase 3, sensor (感知设备) telemetry through intake: readings per second until every stream drained.

    The readings are made before the clock starts: the devices' JSON is theirs, a gateway forwards bytes. Made
    while publishing, they took about a fifth of a core from the services on a two-core machine (profiled)."""
    readings = [
        ("report.v1.in.sensor", sensor_reading(i, run_id), {"Nats-Msg-Id": f"B{run_id}-S{i}"}) for i in range(sensors)
    ]
    t0 = time.perf_counter()
    stored = await publish_pipelined(nc, readings)  # as a gateway would: pipelined, every acknowledgement counted
    drained = await _all_drained(js, within=300)
    sens_s = time.perf_counter() - t0
    return {
        "readings": sensors,
        "seconds": sens_s,
        "complete": drained and stored == sensors,
        "readings_per_s": sensors / sens_s if drained and stored == sensors else 0.0,
    }


def table(r: dict[str, Any]) -> str:
    """The figures as a table for a person."""
    fr, mr = r["fixed_rate"], r["max_rate"]
    lines = [f"machine: {r['machine']['cpus']} CPUs, {r['machine']['mem_gb']:.0f} GiB"]
    if warm := r.get("warm_up"):
        lat = warm["report_to_dispatched"]
        lines.append(
            f"warm-up {warm['seconds']:g}s at {fr['offered_per_s']:g}/s, not counted: report→dispatched  "
            f"{_pct(lat)}, max {lat.get('max_ms', 0):.1f} ms"
        )
    lines += [
        f"fixed rate {fr['offered_per_s']:g}/s  report→opened      {_pct(fr['report_to_opened'])}",
        f"fixed rate {fr['offered_per_s']:g}/s  report→dispatched  {_pct(fr['report_to_dispatched'])}",
        f"fixed rate {fr['offered_per_s']:g}/s  report→alert       {_pct(fr['report_to_alert_delivered'])}",
        f"max rate: {mr['reports']} reports, {mr['dispatched']} dispatched, {mr['scored']} scored in "
        f"{mr['seconds']:.1f}s → {mr['cases_per_s']:.0f} cases/s end to end",
        f"relay chain ({r['relay']['hops']} hops, {r['relay']['size']} B): {r['relay']['per_s']:.0f} msg/s → "
        f"ratio {r['ratio_to_relay']:.2f}",
        f"sensors: {r['sensors']['readings']} readings in {r['sensors']['seconds']:.1f}s → "
        f"{r['sensors']['readings_per_s']:.0f}/s through intake",
        "process     peak RSS MB   CPU s",
    ]
    for name, res in r["resources"].items():
        lines.append(f"  {name:11s} {res['peak_rss_mb']:10.0f} {res['cpu_s']:8.1f}")
    if timeline := mr.get("timeline_s"):
        cells = [f"{st} {t['first']:.1f}/{t['median']:.1f}/{t['last']:.1f}" for st, t in timeline.items()]
        lines.append("maximum rate, seconds to first/median/last case: " + " · ".join(cells))
    if cpu := mr.get("cpu_ms_per_case"):
        shares = " · ".join(f"{n} {ms:.2f}" for n, ms in cpu.items())
        lines.append(f"CPU ms per case (maximum-rate phase): {sum(cpu.values()):.2f} = {shares}")
    lines += _store_lines(fr, mr)
    if waits := fr.get("wait_ms_by_consumer"):
        lines.append("mean wait in the stream before a consumer applied a message (fixed-rate phase), longest first:")
        cells = [f"{c} {ms:.1f} ms" for c, ms in waits.items()]
        lines += ["  " + ", ".join(cells[i : i + 3]) for i in range(0, len(cells), 3)]
    lines.append(f"dead letters: {r['dead_letters']}")
    for job in SCALE_JOBS:
        if (failed := r.get(job, {})).get("error"):
            lines.append(f"{job}: failed: {failed['error']}")
    lines += _scale_lines(r)
    return "\n".join(lines)


def _pct(p: dict[str, float]) -> str:
    """Latency percentiles in one line, or n/a when nothing was measured."""
    if not p.get("n"):
        return "n/a"
    return f"p50 {p['p50_ms']:.1f} · p95 {p['p95_ms']:.1f} · p99 {p['p99_ms']:.1f} ms (n={p['n']})"


def _store_lines(fr: dict[str, Any], mr: dict[str, Any]) -> list[str]:
    """Table lines: store commands per case in each phase, and documents written per case at the maximum rate."""
    lines: list[str] = []
    for phase, spc in (("fixed-rate", fr.get("store_per_case")), ("maximum-rate", mr.get("store_per_case"))):
        if not spc:
            continue
        lines.append(f"store commands per case ({phase} phase){' ' * (18 - len(phase))}commands   ms waited   busiest")
        for name, f in spc.items():
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(f["by_command"].items())[:3])
            lines.append(f"  {name:11s} {f['commands']:33.1f} {f['seconds'] * 1000:11.1f}   {top}")
    if spc := mr.get("store_per_case"):
        # Under load batches are large: the store's work follows the documents written, not the commands.
        lines.append("store documents written per case (maximum-rate phase)   documents   busiest")
        for name, f in spc.items():
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(f.get("by_document", {}).items())[:4])
            lines.append(f"  {name:11s} {f.get('documents', 0.0):43.1f}   {top}")
        total = sum(f.get("documents", 0.0) for f in spc.values())
        lines.append(f"  {'all':11s} {total:43.1f}")
    return lines


def _scale_lines(r: dict[str, Any]) -> list[str]:
    """Table lines of the scale jobs: bulletin, score rebuild and the history queries."""
    lines: list[str] = []
    if (b := r.get("bulletin")) and "build_s" in b:
        lines.append(
            f"bulletin over {b['cases']:,} cases ({b['documents']:,} projection documents, {b['weeks']} weeks): "
            f"week {b['week']} read in {b['read_week_s']:.2f}s, built in {b['build_s']:.1f}s "
            f"({'with' if b['pdf'] else 'without'} PDF)"
        )
    if (rb := r.get("rebuild")) and "seconds" in rb:
        lines.append(
            f"score rebuild from {rb['events']:,} events: {rb['replayed']:,} replayed in {rb['seconds']:.1f}s "
            f"→ {rb['events_per_s']:.0f} events/s ({rb['unit_period_documents']:,} unit-period documents)"
        )
    if (hi := r.get("history")) and "timers" in hi:
        tm, mg = hi["timers"], hi["merge"]
        lines.append(
            f"over {hi['cases']:,} cases of history ({tm['open']:,} open): dispatch's deadline scan "
            f"{tm['scan_ms']:.1f} ms ({tm['due']} due; on the date, as before: {tm['scan_by_date_ms']:.1f} ms; "
            f"repair round {tm['repair_ms']:.1f} ms); intake's merge lookup of nine cells {mg['lookup_ms']:.1f} ms "
            f"({mg['found']} open cases; by key, as before: {mg['lookup_by_key_ms']:.1f} ms)"
        )
        if op := hi.get("open311"):
            lines.append(
                f"  Open311 GET requests of the last 90 days ({op['rows']:,} rows): {op['listing_ms']:.1f} ms "
                f"(on the date, as before: {op['listing_by_date_ms']:.1f} ms)"
            )
        if pg := hi.get("purge"):
            lines.append(
                f"  ledger purge over {pg['entries']:,} entries of 30 days, past a 7-day horizon: a chunk of ids "
                f"selected in {pg['select_ms']:.1f} ms (on the date, as a TTL index would: "
                f"{pg['select_by_date_ms']:.1f} ms); a run deleted {pg['deleted']:,} in {pg['run_ms']:.0f} ms"
            )
    return lines
