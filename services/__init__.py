"""The four Xiuhua services: intake, dispatch, scoring, notify.

Each has the same shape: `app.py` (its Service: subscriptions, jobs, routes), `handlers.py` (thin), `store.py`
(its collections), domain rules (pure). See docs/design/service-shape.md.
"""
