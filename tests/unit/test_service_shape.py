"""Every service has the same shape: an app that declares a `Service`, thin handlers, its store access in
`store.py`, and nothing handed between its parts through the runtime."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from xiuhua.registry import SERVICES, spec
from xiuhua.service import Runtime, Service

ROOT = Path(__file__).resolve().parents[2]
HANDLERS_MAX_LINES = 200


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_declares_its_parts_on_a_service(name: str) -> None:
    declared = spec(name).service
    assert isinstance(declared, type) and issubclass(declared, Service), name
    assert spec(name).subscriptions is None and spec(name).on_start is None, name  # declared in one place only


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_keeps_its_store_access_in_store_py(name: str) -> None:
    importlib.import_module(f"services.{name}.store")


@pytest.mark.parametrize("name", SERVICES)
def test_handlers_stay_thin(name: str) -> None:
    lines = (ROOT / "services" / name / "handlers.py").read_text(encoding="utf-8").count("\n")
    assert lines <= HANDLERS_MAX_LINES, f"services/{name}/handlers.py: {lines} lines; move rules to the domain"


def test_the_runtime_has_no_untyped_state_to_hand_things_over() -> None:
    assert "state" not in Runtime.__dataclass_fields__
