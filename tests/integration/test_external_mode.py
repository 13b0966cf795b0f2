"""External mode: with XIUHUA_NATS_URL and XIUHUA_MONGO_URL set, `xiuhua run` starts no server of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil

from tests.helpers import BusRecorder, eventually, publish, system
from xiuhua.embedded import free_port

XIUHUA = str(Path(sys.executable).parent / "xiuhua")


async def test_run_uses_the_configured_servers_and_starts_none(settings):
    port = free_port()
    env = {
        **os.environ,
        "XIUHUA_NATS_URL": settings.nats_url,
        "XIUHUA_MONGO_URL": settings.mongo_url,
        "XIUHUA_DB_PREFIX": settings.db_prefix,
        "XIUHUA_HTTP_PORT": str(port),
        "XIUHUA_VAR_DIR": str(settings.var_dir),
        "XIUHUA_STORE_TX_LOCK_DIR": str(settings.store_tx_lock_dir),
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - waited on at the end
        [XIUHUA, "run", "dispatch"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake",)):
            await publish(
                settings.nats_url,
                "report.v1.in.grid",
                {
                    "report_id": "EXT-1",
                    "reported_at": datetime.now(UTC).isoformat(),
                    "inspector_id": "G-1",
                    "description": "路灯不亮",
                    "category_code": "0302",
                    "location": {"lng": 120.12, "lat": 30.27},
                },
            )
            dispatched = await eventually(lambda: bus.on("case.v1.dispatched."), timeout=30)
            assert dispatched[0]["lead_unit"]["role"] == "construction"
        children = psutil.Process(proc.pid).children(recursive=True)
        names = {c.name() for c in children}
        assert not names & {"nats-server", "nx-27017", "nx_27017"}, names
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says what stopped it.
    assert proc.returncode in (0, -signal.SIGTERM)
