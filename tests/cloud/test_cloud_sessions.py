"""The dashboard signs in once with a token and then keeps a cookie session: HttpOnly,
SameSite=Strict, Secure over https, stored hashed; CSRF-checked forms (login by double submit,
logout by the session's value); a session dies with its token; no token in any URL."""

from __future__ import annotations

import re
from pathlib import Path

from cloudkit import ADMIN_TOKEN, Clock, GatewaySim, api_token, stored_bytes
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.main import create_app
from cloud.services import sessions
from cloud.settings import Settings


def _csrf(html: str) -> str:
    (value,) = re.findall(r'name="csrf" value="([^"]+)"', html)
    return value


def _login(client: TestClient, token: str) -> tuple[int, str]:
    page = client.get("/login")
    assert page.status_code == 200 and "<script" not in page.text.lower()
    r = client.post("/login", data={"token": token, "csrf": _csrf(page.text)},
                    follow_redirects=False)
    return r.status_code, r.headers.get("set-cookie", "")


def test_sign_in_gives_a_strict_httponly_session_and_the_dashboard(
    client: TestClient, app: FastAPI
) -> None:
    token = api_token(app, "technician")
    code, cookie = _login(client, token)
    assert code == 303
    assert cookie.startswith(f"{sessions.COOKIE}=")
    attrs = cookie.lower()
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
    assert "secure" not in attrs  # plain http here
    assert token not in cookie
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    # the cookie is stored hashed only
    session_id = client.cookies.get(sessions.COOKIE)
    assert session_id and session_id.encode() not in stored_bytes(app)


def test_secure_cookie_over_https(app: FastAPI) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        code, cookie = _login(client, ADMIN_TOKEN)
        assert code == 303 and "secure" in cookie.lower()


def test_login_refuses_bad_tokens_wrong_roles_and_forged_forms(
    client: TestClient, app: FastAPI, gateway: GatewaySim
) -> None:
    assert _login(client, "flt_nope")[0] == 401
    assert _login(client, api_token(app, "customer"))[0] == 403
    assert _login(client, gateway.token)[0] == 403
    # a page elsewhere posting the form: it has no login cookie to match
    fresh = TestClient(app)
    r = fresh.post("/login", data={"token": ADMIN_TOKEN, "csrf": "guessed"},
                   follow_redirects=False)
    assert r.status_code == 403 and sessions.COOKIE not in r.headers.get("set-cookie", "")
    assert fresh.get("/", follow_redirects=False).status_code == 303


def test_session_ends_with_logout_revocation_or_expiry(
    client: TestClient, app: FastAPI, clock: Clock
) -> None:
    token = api_token(app, "ops")
    assert _login(client, token)[0] == 303
    assert client.get("/", follow_redirects=False).status_code == 200
    # revoking the token ends its sessions
    with app.state.db.connection() as store:
        from cloud.services import audit, tokens

        (row,) = [t for t in tokens.list_tokens(store) if t.name == "ops-token"]
        tokens.revoke(store, audit.Offline(), row.id, round(clock.now_s * 1000))
    assert client.get("/", follow_redirects=False).status_code == 303
    # a new sign-in, then expiry after 12 h
    assert _login(client, ADMIN_TOKEN)[0] == 303
    assert client.get("/", follow_redirects=False).status_code == 200
    clock.now_s += sessions.LIFETIME_MS / 1000
    assert client.get("/", follow_redirects=False).status_code == 303
    # logout needs the session's CSRF value
    clock.now_s -= sessions.LIFETIME_MS / 1000
    assert _login(client, ADMIN_TOKEN)[0] == 303
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200
    with app.state.db.connection() as store:
        row = sessions.find(store, client.cookies.get(sessions.COOKIE), round(clock.now_s * 1000))
    assert row is not None
    r = client.post("/logout", data={"csrf": row.csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_dev_mode_dashboard_is_open_and_no_url_carries_a_token(tmp_path: Path) -> None:
    with TestClient(create_app(Settings.load(home=tmp_path, dev=True, env={}))) as client:
        r = client.get("/")
        assert r.status_code == 200
        for url in re.findall(r'(?:href|action|src)="([^"]*)"', r.text):
            assert "token" not in url, url
