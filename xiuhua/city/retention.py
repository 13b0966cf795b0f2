"""How long the city keeps what grows with traffic (保存期限): `retention.yaml`, optional.

Durations are written `90d`, `12h`, `30m`, `45s` (or a bare number of seconds). The store's collections are
purged by a periodic job in each service (`xiuhua.retention`); the streams' ages are applied when they are
provisioned (`xiuhua streams`, `xiuhua up`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from contracts import streams
from xiuhua.city.loading import load_yaml

DAY = 24 * 3600.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def seconds_of(value: object) -> float:
    """`90d` → 7,776,000.0; a number is seconds already."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 90d, 12h, 30m or 45s")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a duration such as 90d, 12h, 30m or 45s")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


Duration = Annotated[float, BeforeValidator(seconds_of), Field(gt=0)]

# The longest window in which JetStream drops a re-published copy by its message id: past it, only the
# consumers' ledgers do, so no ledger horizon may be shorter.
LONGEST_DUPLICATE_WINDOW_S = max(s.duplicate_window_s for s in streams.ALL)


class RetentionFile(BaseModel):
    """retention.yaml: what each kind of record is kept for, and how often the purge runs."""

    model_config = ConfigDict(extra="forbid")

    every: Duration = Field(default=3600.0, description="How often each service purges what is past its horizon")
    ledger: Duration = Field(
        default=7 * DAY,
        description="Applied-message records (幂等记录): past the longest redelivery and the bus's duplicate window; "
        "a copy arriving later than this is applied again",
    )
    raw_reports: Duration = Field(
        default=800 * DAY, description="Raw reports (原始上报) and the source references that de-duplicate them"
    )
    closed_cases: Duration = Field(
        default=800 * DAY,
        description="Closed and cancelled cases (已结案/已作废) after they ended: the archive rule; open ones stay",
    )
    deliveries: Duration = Field(
        default=800 * DAY,
        description="Finished deliveries of the alert log (投递日志: delivered or given up), from when they finished; "
        "pending and held ones stay",
    )
    telemetry: Duration = Field(
        default=30 * DAY, description="Sensor readings that only moved a device's state (监测数据)"
    )
    streams: dict[str, Duration] = Field(
        default_factory=dict,
        description="Stream name → how long it keeps a message (max age), overriding contracts/streams.py",
    )

    @field_validator("ledger")
    @classmethod
    def _past_duplicate_window(cls, value: float) -> float:
        if value <= LONGEST_DUPLICATE_WINDOW_S:
            raise ValueError(
                f"must exceed the bus's duplicate window ({LONGEST_DUPLICATE_WINDOW_S:g} s): a copy re-published "
                "inside it is dropped by the bus, after it only by the ledger"
            )
        return value

    @field_validator("streams")
    @classmethod
    def _known_streams(cls, value: dict[str, float]) -> dict[str, float]:
        known = {s.name: s for s in streams.ALL}
        for name, age in value.items():
            if name not in known:
                raise ValueError(f"unknown stream {name}; one of {', '.join(known)}")
            if age <= known[name].duplicate_window_s:
                raise ValueError(
                    f"{name} must keep messages longer than its duplicate window ({known[name].duplicate_window_s:g} s)"
                )
        return value

    def stream_ages(self) -> dict[str, float]:
        """Every stream's max age in seconds: the city's where it sets one, the contract's default elsewhere."""
        return {s.name: self.streams.get(s.name, s.max_age_s) for s in streams.ALL}


def load_retention(folder: Path) -> RetentionFile:
    """A city folder's `retention.yaml`, or the defaults when it has none."""
    path = Path(folder) / "retention.yaml"
    return load_yaml(path, RetentionFile) if path.exists() else RetentionFile()
