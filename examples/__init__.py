"""Examples for systems that integrate with Xiuhua (docs/integrating/bridges.md)."""
