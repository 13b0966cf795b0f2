"""Intake: every report from every source becomes a clean, placed, classified case, or a clear rejection."""
