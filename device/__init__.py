"""fleetloop device agent: one source for MicroPython and CPython (see port.py)."""

__version__ = "0.1.0"
