"""Notify: alerts that arrive once, and the Monday bulletin."""
