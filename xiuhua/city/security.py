"""`security.yaml` (optional): the city's integrating systems (接入系统) beyond the built-in users, and the
jurisdiction (辖区, streets) each may read case events of.

    users:
      units: {streets: [CD]}                 # restrict a built-in integrator to its streets
      dept_cd_san: {like: units, streets: [CD]}   # a user the city adds: sends and reads as `units` does

A user the city adds takes what a built-in integrator may publish and read (`like`); its consumers are named
after it (`dept_cd_san`, `dept_cd_san_wait`). Passwords are generated like the others'.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


class Integrator(BaseModel):
    """One integrating system's user: whose permissions it takes and the streets it may read."""

    model_config = ConfigDict(extra="forbid")

    like: str | None = Field(default=None, description="the built-in integrator whose permissions it takes")
    streets: list[str] = Field(default_factory=list, description="街道 codes; empty: every street")

    @field_validator("like")
    @classmethod
    def _built_in(cls, value: str | None) -> str | None:
        from xiuhua.security import INBOUND

        if value is not None and value not in INBOUND:
            raise ValueError(f"{value!r} is not a built-in integrator (one of {', '.join(INBOUND)})")
        return value


class SecurityFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    users: dict[str, Integrator] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _names(cls, users: dict[str, Integrator]) -> dict[str, Integrator]:
        from xiuhua.security import INBOUND, OPERATOR, SERVICE_PUBLISHES

        for name, user in users.items():
            if not NAME.match(name):
                raise ValueError(f"user name {name!r}: lower-case letters, digits and _, 2 to 32 characters")
            if name == OPERATOR or name in SERVICE_PUBLISHES:
                raise ValueError(f"user {name!r} is Xiuhua's own: its permissions are not the city's to change")
            if name not in INBOUND and user.like is None:
                raise ValueError(f"user {name!r} is new: say whose permissions it takes (like: units, ...)")
        return users

    def added(self) -> dict[str, str]:
        """The users the city adds, with the built-in integrator each is like."""
        return {n: u.like for n, u in self.users.items() if u.like is not None}

    def jurisdictions(self) -> dict[str, list[str]]:
        """The streets each restricted user may read."""
        return {n: u.streets for n, u in self.users.items() if u.streets}
