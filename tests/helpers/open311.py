"""The demo city's Open311 endpoint and key."""

from __future__ import annotations

KEY = "demo-open311-key-0001"
BASE = "http://xiuhua.test/open311/v2"
