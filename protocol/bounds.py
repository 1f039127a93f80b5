"""Bounds every hop checks the same way: integers on the wire and the downlink size.

Written once here and imported by device, gateway and cloud (the device's hot-path codec keeps
byte-identical copies of the constants, pinned by tests). JSON numbers have no limit, but the
device (MicroPython small ints), the gateway (SQLite INTEGER) and the cloud (SQLite or
PostgreSQL BIGINT, JavaScript in the dashboard) do: 2**53 - 1 is the largest integer every one
of them holds exactly, so it is the ceiling of every seq, time and counter.
"""

MAX_SEQ = 9007199254740991  # 2**53 - 1: per-device record seq, 1..MAX_SEQ
MAX_TIME_MS = 9007199254740991  # ms since the Unix epoch, 0..MAX_TIME_MS
MAX_COUNTER = 9007199254740991  # counters and sizes in state messages, 0..MAX_COUNTER
MAX_CONFIG_VERSION = 2147483647  # 2**31 - 1: a device's config versions, 1..MAX_CONFIG_VERSION

# Largest payload of any downlink message (config, ack, and every later one). The device's MQTT
# receive buffer is this plus room for the fixed header, packet id and the longest topic
# (fleet/<64-char id>/<kind>), so anything the cloud agrees to sign always fits on the device.
MAX_DOWNLINK_BYTES = 640
DOWNLINK_OVERHEAD_BYTES = 128  # 5 (fixed header) + 2 (topic length) + 2 (packet id) + topic


# A frame (protocol.frame): several records in one telemetry message, sent by a device with a
# backlog. At most MAX_FRAME_RECORDS records and MAX_FRAME_BYTES bytes in all (each record still
# within protocol.record.MAX_RECORD_BYTES); a device sends less when its send buffer is smaller
# (device/mqtt.py builds frames in the buffer it already has). The gateway refuses a larger
# frame whole; inside a bounded frame each record is accepted or refused on its own.
MAX_FRAME_RECORDS = 16
MAX_FRAME_BYTES = 8192
