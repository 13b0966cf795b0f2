"""Examples for systems that integrate with Xiuhua (see README.md, "For integrators")."""
