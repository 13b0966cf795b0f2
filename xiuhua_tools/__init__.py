"""Xiuhua's tools over the runtime: the `xiuhua` CLI and its commands, bench, chaos, soak and the demo feed.

They start and drive the services; the runtime in `xiuhua` never imports them.
"""
