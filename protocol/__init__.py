"""The one wire contract of fleetloop, imported by device, gateway, cloud and tools.

Modules listed in DEVICE_MODULES are written in the MicroPython/CPython common subset and go
into the firmware image next to the agent; the rest (the gateway batch) is CPython only.
"""

VERSION = 1

# consent and hint too: protocol.config and protocol.state import them, and the device reads its
# allowed metrics from protocol.consent.
DEVICE_MODULES = ("__init__", "bounds", "tag", "topics", "record", "ack", "state", "config",
                  "consent", "hint", "ed25519", "sha512", "ota", "romfs")
