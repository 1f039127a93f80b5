"""Applied settings: defaults, overridden name by name by the last applied signed config.

data/config.json = {"version", "settings", "status", "reason", "seen"}, replaced atomically.
`status`/`reason` describe the last decision ("none", "applied", "rejected") and go into the
reported state; `version` is always the version actually applied (rejections do not change
it); `seen` is the digest of the last envelope decided, so a re-delivered retained envelope
is not decided twice. Verifying envelopes is config.py's job (loaded only when needed).
"""

import json

from device import port

# Used until a config is applied; a config's settings replace these name by name. max_inflight
# at the top of its range (protocol.config): a backlog drains one window per ack round trip
# (a durable commit at the gateway), and records in flight cost no heap (they are re-read from
# flash); 2,000 records took 24 s with a window of 8 and 2.5 s with 64 and frames (a full
# buffer, an hour at the default interval, is measured by `fleetloop bench gateway`).
DEFAULTS = {"interval_ms": 1000, "ack_timeout_ms": 5000, "max_inflight": 64, "keepalive_s": 30,
            "heartbeat_s": 60, "coach_mode": 0, "target_power_w": 0, "programme": 0}


class Settings:
    def __init__(self, data_dir, device_id, base=None):
        self.path = data_dir + "/config.json"
        self.pending_path = data_dir + "/config.pending"
        self.device_id = device_id
        self.base = dict(DEFAULTS)
        if base:
            for k in base:
                self.base[k] = base[k]
        self.values = dict(self.base)
        self.applied = {}
        self.version = 0
        self.status = "none"
        self.reason = ""
        self.seen = ""
        self.deferred = ""  # digest of a staged envelope not verified yet (config.py)

    def load(self):
        try:
            saved = json.loads(port.read_bytes(self.path))
            self.version = saved["version"]
            self.status = saved["status"]
            self.reason = saved["reason"]
            self.seen = saved["seen"]
            self._use(saved["settings"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # first boot (the file is replaced atomically, so never torn)

    def _use(self, applied):
        self.applied = applied
        self.values = dict(self.base)
        for k in applied:
            if k in self.values:
                self.values[k] = applied[k]

    def get(self, name):
        return self.values[name]

    def decide(self, status, reason, seen, version=None, applied=None):
        """Record a decision; with version/applied it also switches to new settings."""
        if version is not None:
            self.version = version
            self._use(applied)
        self.status = status
        self.reason = reason
        self.seen = seen
        data = {"version": self.version, "settings": self.applied, "status": status,
                "reason": reason, "seen": seen}
        port.write_atomic(self.path, json.dumps(data).encode())
