"""`xiuhua bench`: the performance benchmark (end-to-end pipeline against the bus's own relay ceiling)."""
