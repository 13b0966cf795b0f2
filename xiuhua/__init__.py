"""The shared runtime every Xiuhua service imports (not a service itself); the CLI and tools are `xiuhua_tools`.

settings · clock · bus (broker, streams, publishing) · store (AsyncMongoClient) · ledger (idempotency and
outbox) · consumer (batch pull consumers with retries and dead letters) · observability (metrics, health)
· service (the app every service runs in) · embedded (local servers) · supervisor (`xiuhua up`) · city (city data).
"""
