"""Consent on the device: which tier the customer agreed to, enforced before the buffer.

data/consent.json = {"tier", "origin", "cfg", "t", "i", "logged", "count"}, replaced atomically:
the tier in effect, who set it ("device": the customer on the product; "cloud": a narrowing
signed down from their account), the config version applied when it changed, when (ms), the
buffer incarnation it was logged in, whether its consent record is in the buffer, and how many
consent records this incarnation holds. No file: "essential" (protocol.consent.DEFAULT),
nothing logged; a new or wiped device shares nothing but its vitals. A buffer of another
incarnation (wiped) logs the tier again, the count starting over.

data/consent.request = {"tier": "..."} is the product's button (fleetloop device consent on
the host): read at the start, before the first sample, and about once a second while the agent
runs; applied (widening or narrowing), refused with a reason, or dropped when nothing changes,
and removed in every case.

Every change is logged as a consent record (protocol.record) in the record stream: written
to consent.json with logged false first, then the record, then logged true, so a power cut in
between logs it again at the next start (at least once, never lost).

Imported at a start and when a request is there, unloaded again (port.unload): none of this
sits on the heap next to the running agent; it keeps the tier and the tuple of allowed metric
names only.
"""

import json

from device import port

FILE = "/consent.json"
REQUEST = "/consent.request"
TIERS = ("essential", "usage", "personal")  # protocol.consent.TIERS, narrowest first
ORIGINS = ("device", "cloud")  # protocol.consent.ORIGINS
_DEFAULT = "essential"  # protocol.consent.DEFAULT


def signed_consent(prefix, seq, ts_ms, tier, origin, cfg):
    """What the tag of a consent record covers (protocol.record.consent_signed_bytes, `c` in
    place of `m`), after codec.record_prefix; ValueError for anything protocol refuses. Here,
    not in codec.py: a consent record is rare, and this module leaves the heap after use."""
    if type(seq) is not int or not 0 < seq <= 9007199254740991 or type(ts_ms) is not int or \
            not 0 <= ts_ms <= 9007199254740991 or type(cfg) is not int or \
            not 0 <= cfg <= 2147483647 or tier not in TIERS or origin not in ORIGINS:
        raise ValueError("not a consent record")
    return (prefix + str(seq) + ',"t":' + str(ts_ms) + ',"c":{"cfg":' + str(cfg)
            + ',"origin":"' + origin + '","tier":"' + tier + '"}}').encode()


def load(data_dir):
    """The saved consent, or None (essential, nothing logged)."""
    try:
        saved = json.loads(port.read_bytes(data_dir + FILE))
        if saved["tier"] in TIERS and saved["origin"] in ORIGINS:
            return saved
    except (OSError, ValueError, KeyError, TypeError):
        pass  # replaced atomically: never torn; anything else is not ours
    return None


def tier_of(data_dir):
    saved = load(data_dir)
    return saved["tier"] if saved else _DEFAULT


def save(data_dir, c):
    port.write_atomic(data_dir + FILE, json.dumps(c).encode())


def change(data_dir, tier, origin, cfg, saved=None):
    """Make `tier` the device's consent, its record not logged yet (log() does that)."""
    saved = saved or load(data_dir) or {"i": 0, "count": 0}
    c = {"tier": tier, "origin": origin, "cfg": cfg, "t": port.time_ms(), "i": saved["i"],
         "logged": False, "count": saved["count"]}
    save(data_dir, c)
    return c


def log(data_dir, c, buf):
    """Put c's consent record into the buffer and mark it logged."""
    signed = signed_consent(buf.prefix, buf.next_seq, port.time_ms(), c["tier"],
                                  c["origin"], c["cfg"])
    buf.put_signed(signed)
    c["logged"] = True
    c["count"] += 1
    save(data_dir, c)


def allowed(product, tier):
    """protocol.consent.allowed, imported for the moment and unloaded again."""
    return table(product)[TIERS.index(tier)]


def table(product):
    """protocol.consent.allowed for every tier, narrowest first (a few small tuples of names
    the profile's own samples use): a change while the agent runs needs no protocol import."""
    from protocol import consent as tiers

    names = (tiers.allowed(product, TIERS[0]), tiers.allowed(product, TIERS[1]),
             tiers.allowed(product, TIERS[2]))
    tiers = None  # type: ignore[assignment]  # drop the module so unload() can free it
    port.unload("protocol.consent", "protocol")
    return names


def start(image, ident, cfg, emit):
    """What a start does for consent, before the agent's code is loaded (main.py): open the
    buffer, begin(), learn the metric names each tier allows. Returns (rank of the tier in
    TIERS, consent records in this incarnation, table(), whether a consent record was logged
    now, the open buffer: the agent's, closed with it)."""
    from device import buffer, codec

    buf = buffer.Buffer(image + "/data/buffer", ident["id"],
                        codec.mac_key(port.read_bytes(image + "/keys/record.key")))
    buf.open()
    last = buf.last
    try:
        tier, logged = begin(image + "/data", buf, cfg, emit)
    except BaseException:
        buf.close()
        raise
    return TIERS.index(tier), logged, table(ident["profile"]), buf.last != last, buf


def _of_buffer(c, buf):
    """`c` (a saved consent) made this buffer's: a buffer of another incarnation (wiped) starts
    the count over and has not logged the tier yet. True when it changed."""
    if c["i"] == buf.incarnation:
        return False
    c["i"] = buf.incarnation
    c["count"] = 0
    c["logged"] = False
    return True


def begin(data_dir, buf, cfg, emit):
    """At a start, after buf.open(): log what is not logged yet (a narrowing from the cloud,
    a buffer wiped since), then apply a waiting request. Returns (tier, consent records in
    this incarnation)."""
    c = load(data_dir)
    if c is not None:
        _of_buffer(c, buf)
        if not c["logged"]:
            log(data_dir, c, buf)
            emit({"event": "consent", "status": "logged", "tier": c["tier"],
                  "origin": c["origin"], "cfg": c["cfg"]})
    done = request(data_dir, buf, cfg, emit)
    if done is not None:
        return done
    return (c["tier"], c["count"]) if c else (_DEFAULT, 0)


def request(data_dir, buf, cfg, emit):
    """Apply data/consent.request if there is one. Returns (tier, count) after a change,
    None when nothing changed (no request, the same tier, or a refused one)."""
    path = data_dir + REQUEST
    try:
        raw = port.read_bytes(path)
    except OSError:
        return None
    tier = None
    try:
        tier = json.loads(raw)["tier"]
        if tier not in TIERS:
            raise ValueError("unknown consent tier " + repr(tier)[:40])
    except (ValueError, KeyError, TypeError) as e:
        port.remove(path)
        emit({"event": "consent", "status": "rejected",
              "reason": "bad consent request: " + (str(e) or type(e).__name__)[:80]})
        return None
    saved = load(data_dir)
    if tier == (saved["tier"] if saved else _DEFAULT):
        port.remove(path)
        emit({"event": "consent", "status": "unchanged", "tier": tier})
        return None
    if saved is None:
        saved = {"i": buf.incarnation, "count": 0}
    else:
        _of_buffer(saved, buf)
    c = change(data_dir, tier, "device", cfg, saved)
    log(data_dir, c, buf)
    port.remove(path)
    emit({"event": "consent", "status": "applied", "tier": tier, "origin": "device"})
    return tier, c["count"]
