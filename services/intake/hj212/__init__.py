"""Intake's HJ 212-2017 edge (污染物在线监控（监测）系统数据传输标准): dust, noise and emission monitors over TCP."""

from services.intake.hj212.edge import REJECTED, RETAINED, start

__all__ = ["REJECTED", "RETAINED", "start"]
