"""Test helpers, one module per concern; every name is also importable from `tests.helpers` itself.

Test modules share code only through this package: a test module never imports another
(tests/unit/test_test_imports.py fails the build if one does)."""

from __future__ import annotations

from tests.helpers.bus import CREDENTIALS, BusRecorder, connect, login, publish, publish_event
from tests.helpers.reports import patrol_report
from tests.helpers.services import as_operator, system
from tests.helpers.store_commands import Commands, Started
from tests.helpers.waiting import eventually

__all__ = [
    "CREDENTIALS",
    "BusRecorder",
    "Commands",
    "Started",
    "as_operator",
    "connect",
    "eventually",
    "login",
    "patrol_report",
    "publish",
    "publish_event",
    "system",
]
