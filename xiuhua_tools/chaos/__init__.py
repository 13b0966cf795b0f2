"""Fault harness: scenarios that break the bus, the store or a service mid-stream and count what survived."""
