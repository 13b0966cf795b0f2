"""Run the department case system against a Xiuhua bus:

    python -m examples.department_case_system --nats nats://127.0.0.1:4222 --unit CD-SAN [--auto-resolve]

With --auto-resolve every acknowledged case is reported fixed at once (a demo of the whole loop).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from examples.department_case_system.service import DepartmentCaseSystem, LocalCase
from xiuhua.client import XiuhuaClient


async def run(nats_url: str, unit_id: str, auto_resolve: bool) -> None:
    """Follow the unit's cases until interrupted."""
    async with XiuhuaClient(nats_url) as client:
        system = DepartmentCaseSystem(client, unit_id)

        async def crew(case: LocalCase) -> None:
            await system.resolve(case.case_id, "已处置完毕")

        system.on_acknowledged = crew if auto_resolve else None
        await system.start()
        print(f"{unit_id}: following its cases on {nats_url} (Ctrl-C stops)", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    """Command line entry."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nats", default="nats://127.0.0.1:4222")
    p.add_argument("--unit", required=True, help="the unit id, e.g. CD-SAN")
    p.add_argument("--auto-resolve", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        asyncio.run(run(args.nats, args.unit, args.auto_resolve))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
