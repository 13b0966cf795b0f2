"""One module per `xiuhua` command; each has `register(subparsers)` and sets `func`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xiuhua.settings import Settings


def emit(args: Any, human: str, data: Any) -> None:
    """Print for a person, or JSON with --json."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(human)


def live_settings(*, need: tuple[str, ...] = ()) -> Settings:
    """The settings of an operator command: `XIUHUA_*` where set; else the bus and store of the `xiuhua up`
    running from this folder (its `var/endpoints.json`); and the embedded default's operator credentials
    (`var/security/passwords.json`) when no credentials are configured. `need` names what the command cannot do
    without ("nats_url", "mongo_url"): missing, it stops with a sentence."""
    from xiuhua.security import operator_settings
    from xiuhua.settings import get_settings

    settings = get_settings()
    path = settings.var_dir / "endpoints.json"
    running = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    update: dict[str, Any] = {}
    if not settings.nats_url and running.get("nats"):
        update["nats_url"] = running["nats"]
    if not settings.mongo_url and running.get("store"):
        update["mongo_url"] = running["store"]
        locks = settings.var_dir / "store" / "locks"  # the embedded store's: transactions take turns through it
        if settings.store_tx_lock_dir is None and locks.is_dir():
            update["store_tx_lock_dir"] = locks
    settings = operator_settings(settings.model_copy(update=update) if update else settings)
    names = {"nats_url": "XIUHUA_NATS_URL", "mongo_url": "XIUHUA_MONGO_URL"}
    missing = [names[n] for n in need if not getattr(settings, n)]
    if missing:
        raise SystemExit(f"set {' and '.join(missing)}, or start `xiuhua up` from this folder (it writes {path})")
    return settings
