"""`xiuhua soak`: the embedded system under a steady feed for minutes, sampled for what it keeps.

The city is the configured one with a ledger horizon of minutes instead of days (and a purge every few seconds),
so that a soak of a few minutes goes past it. Each sample reads the store's files on disk, the streams' bytes,
the cases dispatch holds, and every service's ledger; the figures say what a case costs in storage and whether
the ledger stops growing once the horizon is behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nats
import yaml

from contracts import streams
from xiuhua.bus import connect_options, provision_streams
from xiuhua.city import load_city
from xiuhua.city.retention import seconds_of
from xiuhua.registry import SERVICES
from xiuhua.settings import Settings
from xiuhua.store import Store
from xiuhua.supervisor import Supervisor

MB = 2**20


@dataclass
class Sample:
    """What the system holds at one moment of the soak."""

    seconds: float
    cases: int
    store_bytes: int
    stream_bytes: int
    ledger: dict[str, int]  # service → ledger documents
    collections: dict[str, int] = field(default_factory=dict)  # db.collection → documents (last sample only)

    @property
    def ledger_total(self) -> int:
        """Ledger documents of every service."""
        return sum(self.ledger.values())


def soak_city(source: Path, target: Path, *, ledger: float, every: float) -> Path:
    """The city as configured, its ledger horizon and purge interval shortened for a soak of minutes."""
    shutil.copytree(source, target)
    path = target / "retention.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    data = {**(data or {}), "ledger": f"{ledger:g}s", "every": f"{every:g}s"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


def store_bytes(data_dir: Path) -> int:
    """The store's files on disk (each database's SQLite file, its journal and WAL)."""
    return sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())


async def stream_bytes(js: Any) -> int:
    """Bytes the streams hold."""
    total = 0
    for spec in streams.ALL:
        with contextlib.suppress(Exception):
            total += int((await js.stream_info(spec.name)).state.bytes)
    return total


async def _sample(started: float, stores: dict[str, Store], js: Any, data_dir: Path, *, full: bool) -> Sample:
    ledger = {name: await s.count("ledger") for name, s in stores.items()}
    collections: dict[str, int] = {}
    if full:
        for name, s in stores.items():
            for col in sorted(await s.db.list_collection_names()):
                collections[f"{name}.{col}"] = await s.count(col)
    return Sample(
        seconds=time.monotonic() - started,
        cases=await stores["dispatch"].count("cases"),
        store_bytes=store_bytes(data_dir),
        stream_bytes=await stream_bytes(js),
        ledger=ledger,
        collections=collections,
    )


def per_case(samples: list[Sample], attr: str, since: float = 0.0) -> float:
    """Bytes of `attr` added per case dispatched between the first sample at or after `since` and the last."""
    window = [s for s in samples if s.seconds >= since]
    if len(window) < 2 or window[-1].cases == window[0].cases:
        return 0.0
    first, last = window[0], window[-1]
    return (getattr(last, attr) - getattr(first, attr)) / (last.cases - first.cases)


def summary(samples: list[Sample], horizon: float, every: float) -> dict[str, Any]:
    """The soak's figures: storage per case over the whole run and past the horizon, the ledger's course."""
    past = horizon + every  # by then the purge has run with entries past the horizon to delete
    after = [s for s in samples if s.seconds >= past]
    out: dict[str, Any] = {
        "minutes": samples[-1].seconds / 60 if samples else 0.0,
        "cases": samples[-1].cases - samples[0].cases if samples else 0,
        "store_bytes_per_case": per_case(samples, "store_bytes"),
        "stream_bytes_per_case": per_case(samples, "stream_bytes"),
        "store_bytes_per_case_past_horizon": per_case(samples, "store_bytes", past),
        "ledger_horizon_s": horizon,
    }
    if len(after) >= 2:
        first, last = after[0], after[-1]
        out["ledger_past_horizon"] = {
            "from": first.ledger_total,
            "to": last.ledger_total,
            "min": min(s.ledger_total for s in after),
            "max": max(s.ledger_total for s in after),
            "cases_from": first.cases,
            "cases_to": last.cases,
        }
    return out


def table(samples: list[Sample], figures: dict[str, Any]) -> str:
    """The samples and the figures, for a person."""
    services = list(samples[0].ledger) if samples else []
    head = f"{'min':>5} {'cases':>7} {'store MB':>9} {'streams MB':>10} {'ledger':>7}  " + " ".join(
        f"{s:>8}" for s in services
    )
    lines = [head]
    for s in samples:
        lines.append(
            f"{s.seconds / 60:5.1f} {s.cases:7d} {s.store_bytes / MB:9.1f} {s.stream_bytes / MB:10.1f} "
            f"{s.ledger_total:7d}  " + " ".join(f"{s.ledger[n]:8d}" for n in services)
        )
    lines.append("")
    lines.append(
        f"{figures['cases']} cases in {figures['minutes']:.1f} min: store {figures['store_bytes_per_case'] / 1024:.1f} "
        f"KB/case ({figures['store_bytes_per_case_past_horizon'] / 1024:.1f} KB/case past the ledger horizon), "
        f"streams {figures['stream_bytes_per_case'] / 1024:.1f} KB/case"
    )
    if (led := figures.get("ledger_past_horizon")) is not None:
        lines.append(
            f"ledger past its horizon ({figures['ledger_horizon_s']:g} s): {led['from']} → {led['to']} documents "
            f"(min {led['min']}, max {led['max']}) while cases went {led['cases_from']} → {led['cases_to']}"
        )
    else:
        lines.append("ledger: the soak ended before its horizon was behind it (run longer, or a shorter horizon)")
    if samples and samples[-1].collections:
        lines.append("documents by collection at the end:")
        lines += [f"  {name:40s} {n:9d}" for name, n in samples[-1].collections.items() if n]
    return "\n".join(lines)


async def run(
    *,
    minutes: float,
    rate: float,
    ledger: str = "4m",
    every: str = "20s",
    sample_every: float = 30.0,
    progress: Callable[[str], None] = lambda _t: None,
) -> tuple[list[Sample], dict[str, Any]]:
    """Run the embedded system under a steady feed of `rate` reports/s for `minutes`; returns samples, figures."""
    from xiuhua_tools.demo import feed

    horizon, interval = seconds_of(ledger), seconds_of(every)
    with tempfile.TemporaryDirectory(prefix="xiuhua-soak-") as tmp:
        city_dir = soak_city(Settings().city_dir, Path(tmp) / "city", ledger=horizon, every=interval)
        city = load_city(city_dir)
        settings = Settings(
            var_dir=Path(tmp), nats_url=None, mongo_url=None, city_dir=city_dir, bulletin_schedule=False
        )
        sup = Supervisor(settings, quiet=True)
        await asyncio.to_thread(sup.start_servers)
        opts = connect_options(sup.client)
        await provision_streams(sup.nats_url or "", connect_opts=opts, max_ages=city.retention.stream_ages())
        sup.spawn_services()
        stores = {n: Store(sup.mongo_url or "", settings.database(n)) for n in SERVICES}
        nc = await nats.connect(sup.nats_url or "", **opts)
        feeder: asyncio.Task[None] | None = None
        samples: list[Sample] = []
        try:
            await sup.wait_healthy()
            js = nc.jetstream()
            data_dir = Path(tmp) / "store" / "data"
            started = time.monotonic()
            feeder = asyncio.create_task(feed(sup.nats_url or "", city, rate=rate, connect_opts=opts))
            end = started + minutes * 60
            while True:
                sup.check_children()
                last = time.monotonic() >= end
                samples.append(await _sample(started, stores, js, data_dir, full=last))
                now = samples[-1]
                progress(
                    f"{now.seconds / 60:.1f} min: {now.cases} cases, store {now.store_bytes / MB:.1f} MB, "
                    f"streams {now.stream_bytes / MB:.1f} MB, ledger {now.ledger_total}"
                )
                if last:
                    break
                await asyncio.sleep(max(0.0, min(sample_every, end - time.monotonic())))
        finally:
            if feeder is not None:
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
            await nc.close()
            for store in stores.values():
                await store.close()
            await asyncio.to_thread(sup.shutdown)
        return samples, summary(samples, horizon, interval)


def as_json(samples: list[Sample], figures: dict[str, Any]) -> dict[str, Any]:
    """Samples and figures as JSON-ready data."""
    return {"figures": figures, "samples": [asdict(s) for s in samples]}
