"""A client SIGKILLed inside a store transaction: nx-27017 keeps its transaction open on the database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from xiuhua.store import Store

    async def main() -> None:
        store = Store(sys.argv[1], sys.argv[3], tx_lock_dir=Path(sys.argv[2]))

        async def half_done(session) -> None:
            await store["cases"].insert_one({"_id": "half-done"}, session=session)
            print("inside", flush=True)
            await asyncio.sleep(60)  # killed here, before the ledger entry and the commit
            await store["ledger"].insert_one({"_id": "never"}, session=session)

        await store.in_transaction(half_done)

    asyncio.run(main())
    """
)


async def killed_inside_a_transaction(url: str, locks: Path, database: str = "orphan") -> None:
    """Run a client until it is inside a transaction on `database` (it inserts `half-done` into `cases`), then
    SIGKILL it, as the fault lab kills a service mid-batch."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, url, str(locks), database, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    assert (await asyncio.wait_for(child.stdout.readline(), 20)).strip() == b"inside"
    os.kill(child.pid, signal.SIGKILL)
    await child.wait()
