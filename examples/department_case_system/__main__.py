"""Run the department case system against a Xiuhua bus:

    python -m examples.department_case_system --unit CD-SAN [--auto-resolve]       # to the `xiuhua up` of this folder
    python -m examples.department_case_system --nats nats://bus:4222 --user dept_cd --unit CD-SAN

It connects as the NATS user `units` (or a user the city added for the department in `security.yaml`; password
from XIUHUA_NATS_PASSWORD_<USER>, else the embedded default's) and follows its cases through the durable
consumer named after that user, the only one its permissions let it read. With --auto-resolve every acknowledged
case is reported fixed at once (a demo of the whole loop).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from examples.department_case_system.service import DepartmentCaseSystem, LocalCase
from xiuhua.client import XiuhuaClient, XiuhuaError, login


async def run(conn: login.Connection, unit_id: str, auto_resolve: bool) -> None:
    """Follow the unit's cases until interrupted."""
    async with XiuhuaClient(conn.url, **conn.options) as client:
        system = DepartmentCaseSystem(client, unit_id)

        async def crew(case: LocalCase) -> None:
            await system.resolve(case.case_id, "已处置完毕")

        system.on_acknowledged = crew if auto_resolve else None
        await system.start()
        print(f"{unit_id}: following its cases on {conn.url} as {conn.user or 'no user'} (Ctrl-C stops)", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    """Command line entry."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    login.add_arguments(p, user="units")
    p.add_argument("--unit", required=True, help="the unit id, e.g. CD-SAN")
    p.add_argument("--auto-resolve", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        conn = login.from_args(args)
    except XiuhuaError as exc:
        raise SystemExit(str(exc)) from None
    try:
        asyncio.run(run(conn, args.unit, args.auto_resolve))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
