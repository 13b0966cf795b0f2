"""Open311 GeoReport v2 over HTTP: service list and definitions from the catalogue, service requests in and
their current status out, JSON and XML for every endpoint (docs/integrating/open311.md)."""

from services.intake.open311.hook import COLLECTIONS, RETAINED, on_start, routes, subscriptions

__all__ = ["COLLECTIONS", "RETAINED", "on_start", "routes", "subscriptions"]
