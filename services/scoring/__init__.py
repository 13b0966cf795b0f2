"""Scoring: unit assessments, rankings and merchant duty points, as a pure fold over events."""
