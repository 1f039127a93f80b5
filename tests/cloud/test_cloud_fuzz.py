"""Property tests: whatever arrives at ingest or as desired settings, the cloud answers with a
clear 4xx (never a 500) and stores nothing it refused."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from cloudkit import ADMIN, GatewaySim, counts, rec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol import config as config_codec

# One app and database per test function; the properties compare counts before and after.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _record_like() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"v": st.sampled_from([1, 1, 2, "1"]), "d": st.sampled_from(["bike-1", "", "a/b", "-x"]),
         "s": st.one_of(st.integers(min_value=-2, max_value=2**64), json_leaf),
         "t": st.one_of(st.integers(min_value=-2, max_value=2**64), json_leaf),
         "m": st.one_of(st.dictionaries(st.sampled_from(["power", "BAD", ""]), json_leaf, max_size=3),
                        json_value)},
    ) | json_value


def _batch_like() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"v": st.sampled_from([1, 1, 2]), "gateway": st.sampled_from(["gw-1", "gw-2", ""]),
         "seq": st.one_of(st.integers(min_value=-1, max_value=2**64), json_leaf),
         "prev": st.sampled_from(["0" * 64, "a" * 64, "0" * 63, "G" * 64]),
         "created": st.one_of(st.integers(min_value=-1, max_value=2**64), json_leaf),
         "records": st.one_of(st.lists(_record_like(), max_size=4), json_value),
         "states": st.one_of(st.lists(json_value, max_size=2), json_value)},
        optional={"extra": json_leaf},
    ) | json_value


def _post(gateway: GatewaySim, body: bytes, signature: str) -> int:
    headers = {
        "Content-Type": "application/vnd.fleetloop.batch+zlib",
        "X-Fleetloop-Gateway": gateway.id,
        "X-Fleetloop-Signature": signature,
        "Authorization": f"Bearer {gateway.token}",
    }
    return gateway.client.post("/api/v1/ingest", content=body, headers=headers).status_code


@FUZZ
@given(body=st.binary(max_size=512), signature=st.text(alphabet="AZaz09+/=", max_size=100))
def test_random_bytes_are_refused(app: FastAPI, gateway: GatewaySim, body: bytes, signature: str) -> None:
    before = counts(app)
    assert _post(gateway, body, signature) == 400
    assert counts(app) == before


@FUZZ
@given(data=st.data())
def test_mutated_valid_batches_are_refused(app: FastAPI, gateway: GatewaySim, data: st.DataObject) -> None:
    sealed = gateway.seal([rec("bike-1", 1), rec("bike-1", 2)])
    body, sig = bytearray(sealed.body), bytearray(base64.b64decode(sealed.signature))
    target = data.draw(st.sampled_from(["body", "sig"]))
    buf = body if target == "body" else sig
    i = data.draw(st.integers(0, len(buf) - 1))
    buf[i] ^= data.draw(st.integers(1, 255))
    # A flip in the unused padding bits of the last deflate byte inflates to the very same
    # signed bytes: that is the same batch, rightly accepted. Every other flip must be refused.
    try:
        assume(zlib.decompress(bytes(body)) != zlib.decompress(sealed.body) or target == "sig")
    except zlib.error:
        pass
    before = counts(app)
    assert _post(gateway, bytes(body), base64.b64encode(bytes(sig)).decode()) == 400
    assert counts(app) == before


@FUZZ
@given(obj=_batch_like())
def test_signed_but_malformed_batches_never_500(app: FastAPI, gateway: GatewaySim, obj: Any) -> None:
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    signature = base64.b64encode(gateway.key.sign(canon)).decode()
    before = counts(app)
    status = _post(gateway, zlib.compress(canon), signature)
    assert status in (200, 400, 409)
    if status != 200:
        assert counts(app) == before


setting_names = st.sampled_from([*config_codec.SETTINGS, "colour", ""])


@FUZZ
@given(values=st.dictionaries(setting_names, json_value, max_size=5) | json_value)
def test_desired_settings_are_validated(client: TestClient, app: FastAPI, values: Any) -> None:
    if counts(app)["devices"] == 0:
        client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike"}, headers=ADMIN)
    before = counts(app)["configs"]
    r = client.put("/api/v1/devices/bike-1/config", json={"settings": values}, headers=ADMIN)
    try:
        config_codec.check_settings(values)
        valid = True
    except ValueError:
        valid = False
    if valid:
        assert r.status_code == 200 and r.json()["version"] == before + 1
        assert counts(app)["configs"] == before + 1
    else:
        assert r.status_code == 422
        assert counts(app)["configs"] == before
