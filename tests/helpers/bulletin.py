"""The weekly bulletin (周报) running alone, as a test-only service."""

from __future__ import annotations

from services.notify.bulletin import service as bulletin
from xiuhua.service import ServiceSpec

BULLETIN_ONLY = ServiceSpec(name="notify", service=bulletin.Bulletin, collections=bulletin.COLLECTIONS)
