"""The four Xiuhua services: intake, dispatch, scoring, notify.

Each has the same shape: domain rules (pure), handlers (thin), app (its ServiceSpec).
"""
