"""Updates while the agent runs: take the gateway's offer, fetch the bytes it names, append them
to part files, report progress, and commit a new version once its first heartbeat is acked.
Nothing heavy: the signature, the checks, every sha256 and the slot switch run on a fresh heap
(device/install.py, through main.py's stage-and-reset path) when the agent stops for "update".

Flash, under data/ota/ (docs/protocol.md, "Device slots"):
    status.json  what the state messages report: {"id","version","update","progress","reason"}
    offer.json   the offer being worked on (protocol.ota offer)
    f0           file 0 (signature + manifest text or patch), as it arrives
    plan         written by install.py once file 0 verified: "index size" per file to fetch
    p<index>     the part file of one planned file, as it arrives
    go           the agent stopped for install.py (main.py runs it, again after a power cut)
Every write appends at the part's size, so an interrupted download resumes where it stopped.
"""

import json

from device import port
from device.port import const

# protocol.ota's words and chunk layout, copied (the agent does not import protocol; tests pin
# the copies).
DOWNLOADING = "downloading"
REBOOTING = "rebooting"
COMMITTED = "committed"
ROLLED_BACK = "rolled_back"
FAILURE = "failure"
_HEAD = const(17)  # protocol.ota.CHUNK_HEAD
_DATA = const(1)
_BUSY = const(2)
_WINDOW = const(2048)  # the gateway sends 4 chunks of 512 per fetch
_RETRY_MS = const(3000)  # no chunk for this long: ask again from what is on flash
_REPORT_STEP = const(10)  # a state at every 10% of the download


def _read_json(path):
    try:
        obj = json.loads(port.read_bytes(path))
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


FINAL = (COMMITTED, ROLLED_BACK, FAILURE)


class Updater:
    """One device's update, next to the agent. `slot` is the running slot (None: no slots,
    no updates); fw/boot.json is read as the first stage left it."""

    def __init__(self, image, slot, emit):
        boot = _read_json(image + "/fw/boot.json") or {}
        self.dir = image + "/data/ota"
        self.fw = image + "/fw"
        self.slot = slot
        self.emit = emit
        self.version = boot.get(slot, "") if slot else ""
        self.trial = slot is not None and boot.get("trial") == slot
        self.armed = False  # trial: a state went out, its ack commits
        self.telling = False  # a state with a last word went out: its ack means it was heard
        self.status = _read_json(self.dir + "/status.json")
        self.offer = None
        self.want = None  # (file index, size) being fetched
        self.have = 0  # its bytes on flash
        self.asked = -1  # offset last asked for (-1: nothing outstanding)
        self.asked_at = port.ticks_ms()
        self.changed = False  # a state should say so
        self.stop = False  # the agent should stop for install.py
        port.makedirs(self.dir)
        if slot and "rolled_back" in boot:
            self._rolled_back(boot)
        elif self.trial:
            self._say(REBOOTING, 100, "")  # the switch was made: nothing left to fetch
            self._clean()
        elif self._committed_before_cut(boot):
            self._say(COMMITTED, 100, "")
        else:
            self._resume()

    # -- on flash
    def _say(self, word, progress, reason):
        st = self.status or {}
        if st.get("update") == word and st.get("progress") == progress and \
                st.get("reason") == reason:
            return
        st["update"], st["progress"], st["reason"] = word, progress, reason[:160]
        st.pop("told", None)
        self.telling = False
        if self.offer:
            offer = self.offer
            st["id"], st["version"], st["rollout"] = offer["id"], offer["version"], \
                offer.get("rollout", "")
        self.status = st
        port.write_atomic(self.dir + "/status.json", json.dumps(st).encode())
        self.changed = True
        self.emit({"event": "update", "status": word, "progress": progress, "reason": reason,
                   "version": st.get("version", "")})

    def _committed_before_cut(self, boot):
        """A power cut between the commit's switch and its word: fw/boot.json already runs the
        new version as the active slot, so the update is committed whatever status.json says."""
        st = self.status
        return st is not None and st.get("update") == REBOOTING and \
            boot.get("active") == self.slot and st.get("version") == self.version

    def _clean(self):
        for name in port.listdir(self.dir):
            if name != "status.json":
                port.remove(self.dir + "/" + name)

    def _rolled_back(self, boot):
        self._say(ROLLED_BACK, 0, str(boot.get("why", "the new version did not commit")))
        self._clean()
        del boot["rolled_back"]
        boot.pop("why", None)
        port.write_atomic(self.fw + "/boot.json", json.dumps(boot).encode())

    def _resume(self):
        """After a start: carry on with the offer on flash, at the file it was fetching."""
        self.offer = _read_json(self.dir + "/offer.json")
        if self.offer is None:
            return
        if not port.exists(self.dir + "/plan"):
            self._next(0, self.offer["size"])
            return
        with open(self.dir + "/plan") as f:
            for line in f:
                words = line.split()
                index, size = int(words[0]), int(words[1])
                path = self.dir + "/p" + words[0]
                have = port.file_size(path) if port.exists(path) else 0
                if have < size:
                    self._next(index, size)
                    return
        self.stop = True  # every part is here: install

    def _next(self, index, size):
        self.want = (index, size)
        path = self.dir + ("/f0" if index == 0 else "/p" + str(index))
        self.have = port.file_size(path) if port.exists(path) else 0
        self.asked = -1
        if self.have >= size:
            self._file_done()

    def _file_done(self):
        self.want = None
        if self.offer and not port.exists(self.dir + "/plan"):
            self.stop = True  # file 0 is here: install.py verifies it and plans the rest
            return
        self._resume()

    # -- messages
    def on_offer(self, payload):
        """A retained offer (or an empty one: withdrawn) on fleet/<id>/update."""
        if not payload:
            if self.offer is not None and not self.stop:
                self.offer = self.want = None
                self._clean()
                self.emit({"event": "update", "status": "withdrawn"})
            return
        try:
            offer = json.loads(payload)
            oid, size = offer["id"], offer["size"]
            if type(size) is not int or len(oid) != 16 or not offer["version"]:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self.emit({"event": "bad_offer", "reason": "not an offer"})
            return
        st = self.status or {}
        if (self.offer and self.offer["id"] == oid) or \
                (st.get("id") == oid and st.get("rollout") == offer.get("rollout")):
            return  # the one in hand, or one already decided (it comes again on every connect)
        if self.slot is None or self.trial:
            self.offer = offer
            self._say(FAILURE, 0, "no update slots on this device" if self.slot is None else
                      "a trial of " + self.version + " is not committed yet")
            self.offer = None
            return
        self.offer = offer
        self._clean()
        port.write_atomic(self.dir + "/offer.json", payload)
        self._say(DOWNLOADING, 0, "")
        self._next(0, size)

    def on_chunk(self, payload):
        """Bytes of the file being fetched; anything else is dropped (it is asked for again)."""
        want = self.want
        if want is None or len(payload) < _HEAD or bytes(payload[:2]) != b"FC":
            return
        kind = payload[2]
        index = (payload[11] << 8) | payload[12]
        offset = (payload[13] << 24) | (payload[14] << 16) | (payload[15] << 8) | payload[16]
        if bytes(payload[3:11]) != self._raw_id() or index != want[0]:
            return
        if kind == _BUSY:  # too many devices at once: ask again after the gateway's wait
            try:
                wait = int(bytes(payload[_HEAD:]))
            except ValueError:
                wait = 30000
            self.asked_at = port.ticks_add(port.ticks_ms(), min(max(wait, 0), 600000))
            return
        if kind != _DATA:
            self._fail("the gateway cannot serve it: " + bytes(payload[_HEAD:_HEAD + 120]).decode())
            return
        if offset != self.have:
            return
        data = payload[_HEAD:]
        left = want[1] - self.have
        if len(data) > left:
            data = data[:left]
        path = self.dir + ("/f0" if index == 0 else "/p" + str(index))
        with open(path, "ab") as f:
            f.write(data)
            port.flush_durable(f)
        self.have += len(data)
        self.asked_at = port.ticks_ms()
        if self.have >= want[1]:
            self._file_done()
        elif self.have >= self.asked + _WINDOW:
            self.asked = -1  # the whole window came: ask for the next at once
        self._progress()

    def _raw_id(self):
        import binascii

        return binascii.unhexlify(self.offer["id"]) if self.offer else b""

    def _progress(self):
        """Percent of the planned bytes on flash (file 0 counts as nothing)."""
        try:
            with open(self.dir + "/plan") as f:
                total = done = 0
                for line in f:
                    index, size = line.split()
                    path = self.dir + "/p" + index
                    total += int(size)
                    done += min(int(size), port.file_size(path) if port.exists(path) else 0)
        except OSError:
            return
        pct = done * 100 // total if total else 100
        st = self.status or {}
        if pct // _REPORT_STEP != st.get("progress", 0) // _REPORT_STEP or pct == 100:
            self._say(DOWNLOADING, pct, "")

    def _fail(self, reason):
        self._say(FAILURE, 0, reason)
        self.offer = self.want = None
        self._clean()

    # -- the agent's loop
    def fetch(self, now):
        """The fetch to publish now (bytes), or None."""
        want = self.want
        offer = self.offer
        if want is None or offer is None or self.stop:
            return None
        if self.asked >= 0 and port.ticks_diff(now, self.asked_at) < _RETRY_MS:
            return None
        if self.asked < 0 and port.ticks_diff(now, self.asked_at) < 0:
            return None  # waiting out a busy answer
        self.asked = self.have
        self.asked_at = now
        return ('{"v":1,"id":"%s","f":%d,"o":%d}' % (offer["id"], want[0], self.have)).encode()

    def on_state_sent(self):
        if self.trial:
            self.armed = True
        st = self.status
        if st and st.get("update") in FINAL and "told" not in st:
            self.telling = True

    def on_ack(self):
        """The gateway acked: if a trial's state went out before, the new version stays; if a
        last word did, the next start need not say it again."""
        if self.telling:
            self.telling = False
            st = self.status
            if st is not None and "told" not in st:
                st["told"] = 1
                port.write_atomic(self.dir + "/status.json", json.dumps(st).encode())
        if not self.armed:
            return
        self.armed = self.trial = False
        boot = _read_json(self.fw + "/boot.json") or {}
        boot["active"] = self.slot
        boot.pop("trial", None)
        boot.pop("tries", None)
        # The floor first: a cut before the switch leaves the trial to run (and commit) again.
        port.write_atomic(self.fw + "/floor", self.version.encode())
        port.write_atomic(self.fw + "/boot.json", json.dumps(boot).encode())
        self._say(COMMITTED, 100, "")

    def idle(self):
        """Nothing left to do: no offer in hand, no trial to commit, the last word heard."""
        st = self.status
        return self.offer is None and not self.trial and not self.stop and \
            (st is None or "told" in st)

    def state_fields(self):
        """The update part of the state message (protocol.state), "" when there is none."""
        st = self.status
        if not st or "update" not in st:
            return ""
        return ',"update":"%s","update_id":"%s","update_version":"%s","update_progress":%d,' \
            '"update_reason":%s' % (st["update"], st.get("id", ""), st.get("version", ""),
                                    st.get("progress", 0), json.dumps(st.get("reason", "")))
