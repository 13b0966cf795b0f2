"""The city's units (单位): who they are, their role, where they are responsible, how to reach them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from contracts.values import UnitRef, UnitRole


class Contact(BaseModel):
    """A person or group of a unit that alerts reach; addresses stay in city data, never on the bus."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    name: str
    duty: str = Field(default="duty", description="duty (值班), head (负责人), leader (分管领导) ...")
    channels: dict[str, str] = Field(
        default_factory=dict, description="channel → address: webhook URL, e-mail, phone, file name"
    )


class Unit(BaseModel):
    """A unit that cases are dispatched to."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    name: str
    role: UnitRole
    areas: list[str] = Field(default_factory=list, description="Area codes of its jurisdiction (属地)")
    contacts: list[Contact] = Field(default_factory=list)

    def ref(self) -> UnitRef:
        """The unit as named in events."""
        return UnitRef(unit_id=self.id, name=self.name, role=self.role)


class UnitsFile(BaseModel):
    """units.yaml"""

    model_config = ConfigDict(extra="forbid")

    units: list[Unit]
