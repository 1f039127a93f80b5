# Signed config: precheck while running, verify + apply at boot, persist, report.
# DATA holds config.pub and envelopes signed on the CPython side (conftest.write_configs) and
# the shared vectors (configs.json).
import binascii
import json
import os

from fakes import check, equal

from device import config, consent, port, settings

DATA = None


def _read(name):
    with open(DATA + "/" + name, "rb") as f:
        return f.read()


def _settings(tmp, device="bike-1"):
    conf = settings.Settings(tmp, device)
    conf.load()
    return conf


def _offer(conf, name, pub=None):
    """What the agent + main do with one envelope: precheck, and verify if staged."""
    action, version = config.precheck(conf, _read(name))
    if action == config.STAGE:
        event = config.process_pending(conf, pub or _read("config.pub"))
        check(not port.exists(conf.pending_path), "pending removed")
        return event["status"]
    return ("ignored", "rejected", "staged")[action]


def test_defaults_before_any_config(tmp):
    conf = _settings(tmp)
    equal((conf.version, conf.status, conf.get("interval_ms")), (0, "none", 1000), "defaults")


def test_good_config_is_applied_and_persisted(tmp):
    conf = _settings(tmp)
    equal(_offer(conf, "env_v2.json"), "applied", "v2")
    equal((conf.version, conf.get("interval_ms"), conf.get("max_inflight")), (2, 500, 4), "on")
    conf = _settings(tmp)
    equal((conf.version, conf.status, conf.get("interval_ms")), (2, "applied", 500), "reload")
    equal(conf.get("ack_timeout_ms"), settings.DEFAULTS["ack_timeout_ms"], "others default")


def test_redelivered_and_equal_versions_are_ignored_quietly(tmp):
    conf = _settings(tmp)
    _offer(conf, "env_v2.json")
    equal(_offer(conf, "env_v2.json"), "ignored", "same envelope again (retained)")
    equal(_offer(conf, "env_v2_again.json"), "ignored", "another envelope, same version")
    equal(conf.status, "applied", "still applied")


def test_older_version_is_rejected_and_keeps_the_applied_one(tmp):
    conf = _settings(tmp)
    _offer(conf, "env_v3.json")
    equal(_offer(conf, "env_v1.json"), "rejected", "older")
    equal((conf.version, conf.status), (3, "rejected"), "v3 still applied")
    check("older" in conf.reason, conf.reason)
    equal(conf.get("interval_ms"), 250, "v3 settings still in force")


def test_bad_signature_is_rejected_after_verification(tmp):
    conf = _settings(tmp)
    _offer(conf, "env_v2.json")
    equal(_offer(conf, "env_bad_sig.json"), "rejected", "bad signature")
    equal((conf.version, conf.reason), (2, "bad signature"), "reason")
    equal(_offer(conf, "env_bad_sig.json"), "ignored", "the same bad envelope is not redone")


def test_other_device_is_rejected(tmp):
    conf = _settings(tmp)
    equal(_offer(conf, "env_other.json"), "rejected", "other device")
    equal((conf.version, conf.reason), (0, "config is for another device"), "reason")


def test_signed_but_invalid_settings_are_rejected(tmp):
    conf = _settings(tmp)
    equal(_offer(conf, "env_bad_setting.json"), "rejected", "signed nonsense")
    check("interval_ms" in conf.reason, conf.reason)


def test_malformed_is_rejected(tmp):
    conf = _settings(tmp)
    equal(config.precheck(conf, b"{not json")[0], config.REJECT, "not json")
    equal(conf.reason, "malformed config", "reason")


def test_shared_config_vectors(tmp):
    with open(DATA + "/configs.json") as f:
        v = json.load(f)
    pub = binascii.a2b_base64(v["public_key"])
    for i, case in enumerate(v["valid"]):
        d = tmp + "/v" + str(i)
        os.mkdir(d)
        if "consent" in case["body"]:  # a narrowing: the device had agreed to more
            consent.save(d, {"tier": "personal", "origin": "device", "cfg": 0, "t": 1, "i": 5,
                             "logged": True, "count": 1})
        conf = _settings(d, case["body"]["device"])
        config.precheck(conf, case["wire"].encode())
        event = config.process_pending(conf, pub)
        equal((event["status"], event["version"]), ("applied", case["body"]["version"]), "ok")
        if "consent" in case["body"]:
            saved = consent.load(d)
            equal((saved["tier"], saved["origin"], saved["cfg"], saved["logged"], saved["i"],
                   saved["count"]), (case["body"]["consent"], "cloud", case["body"]["version"],
                                     False, 5, 1), "narrowed, to be logged at the next start")
    for i, case in enumerate(v["invalid"]):
        d = tmp + "/i" + str(i)
        os.mkdir(d)
        conf = _settings(d)
        with open(conf.pending_path, "wb") as f:  # staged as if the precheck let it through
            f.write(case["wire"].encode())
        event = config.process_pending(conf, pub)
        equal((event["status"], event["reason"]), ("rejected", case["why"]), "invalid vector")


def _consent_env(version, tier):
    return _read(f"env_consent_{version}_{tier}.json")


def _offer_bytes(conf, payload):
    action, version = config.precheck(conf, payload)
    equal(action, config.STAGE, "staged")
    return config.process_pending(conf, _read("config.pub"))


def test_a_wider_consent_from_the_cloud_is_refused_whole(tmp):
    conf = _settings(tmp)
    _offer(conf, "env_v2.json")
    event = _offer_bytes(conf, _consent_env(3, "usage"))  # the device is at essential
    equal((event["status"], event["version"]), ("rejected", 2), "refused, version unchanged")
    equal(event["reason"], "consent can only be widened on the product (usage is wider than "
          "essential)", "reason")
    equal(conf.get("interval_ms"), 500, "its settings not applied either")
    saved = consent.load(tmp)
    equal((saved["tier"], saved["origin"], saved["cfg"], saved["logged"]),
          ("essential", "device", 3, False), "its own tier restated for the cloud, with cfg 3")


def test_a_narrower_consent_from_the_cloud_is_applied_with_the_settings(tmp):
    conf = _settings(tmp)
    consent.save(tmp, {"tier": "personal", "origin": "device", "cfg": 0, "t": 1, "i": 9,
                       "logged": True, "count": 1})
    event = _offer_bytes(conf, _consent_env(3, "usage"))
    equal((event["status"], event["version"], conf.get("interval_ms")), ("applied", 3, 300),
          "applied")
    saved = consent.load(tmp)
    equal((saved["tier"], saved["origin"], saved["cfg"], saved["logged"]),
          ("usage", "cloud", 3, False), "narrowed, its record logged at the next start")
    equal(consent.tier_of(tmp), "usage", "in effect")
    # the same tier again (a later config that repeats it): applied, no consent change
    consent.save(tmp, dict(saved, logged=True))
    event = _offer_bytes(conf, _consent_env(4, "usage"))
    equal((event["status"], consent.load(tmp)["cfg"], consent.load(tmp)["logged"]),
          ("applied", 3, True), "equal: nothing to log")
    event = _offer_bytes(conf, _consent_env(5, "personal"))
    equal((event["status"], conf.version), ("rejected", 4), "wider than usage now")
    check("personal is wider than usage" in event["reason"], event["reason"])
    equal((consent.tier_of(tmp), consent.load(tmp)["cfg"]), ("usage", 5), "usage restated")


def test_protocol_modules_are_unloaded_after_verifying(tmp):
    import sys

    conf = _settings(tmp)
    consent.save(tmp, {"tier": "personal", "origin": "device", "cfg": 0, "t": 1, "i": 9,
                       "logged": True, "count": 1})
    _offer_bytes(conf, _consent_env(3, "essential"))
    left = [n for n in ("protocol.config", "protocol.consent", "protocol.ed25519") if n in
            sys.modules]
    equal(left, [], "unloaded")
