"""The one wire contract of fleetloop, imported by device, gateway, cloud and tools.

Modules listed in DEVICE_MODULES are written in the MicroPython/CPython common subset and go
into the firmware image next to the agent; the rest (the gateway batch) is CPython only.
"""

VERSION = 1

DEVICE_MODULES = ("__init__", "bounds", "tag", "topics", "record", "ack", "state", "config", "ed25519", "sha512")
