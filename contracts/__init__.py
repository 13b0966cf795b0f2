"""The language of the bus: message models, subject names and stream definitions.

Depends on pydantic alone so that any system integrating with Xiuhua can import it.
"""

from contracts.envelope import Envelope, Event, new_event_id

__all__ = ["Envelope", "Event", "new_event_id"]
