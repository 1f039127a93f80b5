# Consent on the device: the saved tier, the product's request file, consent records in the
# buffer, a wiped buffer logging the tier again, the allowed metric names.
import json
import os

from fakes import check, equal

from device import buffer, codec, consent, port
from protocol import record, tag

KEY = b"\x07" * 32
MAC = tag.Hmac(KEY)


def _buf(tmp):
    b = buffer.Buffer(tmp + "/buf", "bike-1", codec.mac_key(KEY))
    b.open()
    return b


def _request(tmp, data):
    with open(tmp + consent.REQUEST, "wb") as f:
        f.write(data)


def _records(b):
    return [json.loads(w) for _, w in b.unacked(0, 1000)]


def test_a_new_device_is_at_essential_and_logs_nothing(tmp):
    b = _buf(tmp)
    events = []
    equal(consent.begin(tmp, b, 0, events.append), ("essential", 0), "privacy by default")
    equal((b.last, events, consent.load(tmp)), (0, [], None), "nothing logged, nothing saved")


def test_a_request_before_the_first_boot_is_applied_and_logged(tmp):
    _request(tmp, b'{"tier":"usage"}')
    b = _buf(tmp)
    events = []
    equal(consent.begin(tmp, b, 3, events.append), ("usage", 1), "applied")
    check(not port.exists(tmp + consent.REQUEST), "request removed")
    equal(events, [{"event": "consent", "status": "applied", "tier": "usage",
                    "origin": "device"}], "event")
    recs = _records(b)
    equal([r["c"] for r in recs], [{"cfg": 3, "origin": "device", "tier": "usage"}], "record")
    for _, wire in b.unacked(0, 10):
        check(tag.verify(MAC, wire) and record.is_consent(record.decode(wire)), "tagged record")
    saved = consent.load(tmp)
    equal((saved["tier"], saved["origin"], saved["cfg"], saved["i"], saved["logged"],
           saved["count"]), ("usage", "device", 3, b.incarnation, True, 1), "saved")
    # the next start logs nothing again
    b.close()
    b = _buf(tmp)
    equal(consent.begin(tmp, b, 3, events.append), ("usage", 1), "kept")
    equal(b.last, 1, "no second record")


def test_bad_requests_are_refused_with_a_reason_and_change_nothing(tmp):
    b = _buf(tmp)
    _request(tmp, b'{"tier":"personal"}')
    consent.begin(tmp, b, 0, lambda e: None)
    for bad in (b'{"tier":"everything"}', b"not json", b"[]", b'{"level":"usage"}',
                b'{"tier":3}', b""):
        _request(tmp, bad)
        events = []
        equal(consent.request(tmp, b, 0, events.append), None, "refused")
        equal(len(events), 1, "one event")
        e = events[0]
        equal((e["event"], e["status"]), ("consent", "rejected"), repr(bad))
        check(e["reason"].startswith("bad consent request"), e["reason"])
        check(not port.exists(tmp + consent.REQUEST), "removed")
        equal((consent.tier_of(tmp), b.last), ("personal", 1), "nothing else changed")
    _request(tmp, b'{"tier":"personal"}')
    events = []
    equal(consent.request(tmp, b, 0, events.append), None, "the same tier")
    equal((events[0]["status"], b.last), ("unchanged", 1), "no record")
    check(not port.exists(tmp + consent.REQUEST), "removed")


def test_narrowing_on_the_product_and_counts(tmp):
    b = _buf(tmp)
    for tier, want in (("personal", 1), ("essential", 2), ("usage", 3)):
        _request(tmp, json.dumps({"tier": tier}).encode())
        equal(consent.request(tmp, b, 7, lambda e: None), (tier, want), tier)
    equal([r["c"]["tier"] for r in _records(b)], ["personal", "essential", "usage"], "in order")


def test_a_wiped_buffer_logs_the_tier_again(tmp):
    b = _buf(tmp)
    _request(tmp, b'{"tier":"usage"}')
    consent.begin(tmp, b, 0, lambda e: None)
    b.close()
    for name in os.listdir(tmp + "/buf"):
        os.remove(tmp + "/buf/" + name)
    b = _buf(tmp)
    events = []
    equal(consent.begin(tmp, b, 0, events.append), ("usage", 1), "count starts over")
    equal([r["c"] for r in _records(b)], [{"cfg": 0, "origin": "device", "tier": "usage"}],
          "logged in the new incarnation")
    equal(consent.load(tmp)["i"], b.incarnation, "saved")
    equal(events[0]["status"], "logged", "said so")


def test_a_narrowing_from_the_cloud_is_logged_at_the_next_start(tmp):
    b = _buf(tmp)
    _request(tmp, b'{"tier":"personal"}')
    consent.begin(tmp, b, 0, lambda e: None)
    consent.change(tmp, "usage", "cloud", 4)  # what config.process_pending does
    b.close()
    b = _buf(tmp)
    events = []
    equal(consent.begin(tmp, b, 4, events.append), ("usage", 2), "narrowed")
    equal(_records(b)[-1]["c"], {"cfg": 4, "origin": "cloud", "tier": "usage"}, "record")
    equal((events[0]["status"], events[0]["origin"]), ("logged", "cloud"), "event")


def test_allowed_metrics_per_tier(tmp):
    equal(consent.allowed("bike", "essential"), (), "nothing at essential")
    equal(consent.allowed("bike", "usage"), ("cadence", "power", "speed"), "no heart rate")
    equal(consent.allowed("bike", "personal"), ("cadence", "heart_rate", "power", "speed"), "all")
    equal(len(consent.allowed("engine", "usage")), 16, "an engine's usage")
    equal(consent.allowed("toaster", "personal"), (), "an unclassified product sends nothing")
    import sys

    check("protocol.consent" not in sys.modules, "unloaded again")
