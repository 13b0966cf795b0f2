"""The four services by name (imported lazily so one service's process loads only its own code)."""

from __future__ import annotations

import importlib

from xiuhua.service import ServiceSpec

SERVICES = ("intake", "dispatch", "scoring", "notify")


def spec(name: str) -> ServiceSpec:
    """A service's spec by name."""
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{name}.app").SPEC
