"""Signing in to the dashboard: a server-rendered form (works with scripts off) that takes a
token once and answers a session cookie; signing out. No token ever goes into a URL.

- GET /login: the form, with a CSRF value that is also set as a cookie (double submit: a
  page elsewhere can make a browser post here, but cannot read or set that cookie);
- POST /login (form fields `token`, `csrf`): checks both, then the token (staff roles and
  admin only), and answers 303 to / with the session cookie: HttpOnly, SameSite=Strict,
  Path=/, Secure when the request came over https;
- POST /logout (form field `csrf`, the session's): ends the session, clears the cookie.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.access import authenticate
from cloud.deps import DASHBOARD_ROLES, DbDep, NowDep, SettingsDep, raw_body
from cloud.errors import Forbidden, Unauthorized
from cloud.services import sessions as service

router = APIRouter(tags=["session"], include_in_schema=False)

MAX_LOGIN_BYTES = 4096
LOGIN_CSRF_AGE_S = 3600
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleetloop: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;max-width:28em;margin:4em auto;padding:0 1em}}
input{{font:inherit;width:100%;box-sizing:border-box;margin:.3em 0 1em}}
.error{{color:#a00}}</style></head>
<body><h1>fleetloop</h1>
{message}<form method="post" action="/login">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus>
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit">Sign in</button>
</form>
<p><small>A token of role ops, technician, analyst, factory or admin
(<code>fleetloop token create</code>). It is sent once; the dashboard then keeps a session
cookie for 12 hours.</small></p>
</body></html>
"""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    csrf = service.new_secret()
    text = f'<p class="error" role="alert">{escape(message)}</p>\n' if message else ""
    response = HTMLResponse(_PAGE.format(message=text, csrf=escape(csrf)), status_code=status,
                            headers=HEADERS)
    response.set_cookie(service.LOGIN_CSRF_COOKIE, csrf, max_age=LOGIN_CSRF_AGE_S,
                        path="/login", secure=_secure(request), httponly=True, samesite="strict")
    return response


async def _form(request: Request) -> dict[str, str]:
    body = await raw_body(request, "form", MAX_LOGIN_BYTES)
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    """The sign-in form."""
    return _login_page(request)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request, settings: SettingsDep, store: DbDep, now_ms: NowDep
) -> Response:
    """Check the form's CSRF value and the token; start a session (303 to the dashboard)."""
    form = await _form(request)
    if not service.same(request.cookies.get(service.LOGIN_CSRF_COOKIE),
                        form.get(service.CSRF_FIELD)):
        return _login_page(request, "The form expired: please sign in again.", 403)
    token = form.get("token", "").strip()
    if not token:
        return _login_page(request, "Enter a token.", 401)
    try:
        principal = authenticate(settings, store, token, now_ms)
    except Unauthorized as exc:  # expired or revoked: say which
        return _login_page(request, f"Not signed in: {exc}.", 401)
    if principal is None:
        return _login_page(request, "Not signed in: invalid token.", 401)
    if principal.role not in DASHBOARD_ROLES:
        return _login_page(request, f"Role {principal.role} has no dashboard.", 403)
    started = service.start(store, principal.token_id, str(principal.role), principal.name,
                            now_ms)
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(service.COOKIE, started.session_id, max_age=service.LIFETIME_MS // 1000,
                        path="/", secure=_secure(request), httponly=True, samesite="strict")
    response.delete_cookie(service.LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, store: DbDep, now_ms: NowDep) -> Response:
    """End the session (its form's CSRF value must match) and clear the cookie."""
    form = await _form(request)
    session_id = request.cookies.get(service.COOKIE)
    row = service.find(store, session_id, now_ms)
    if row is not None and not service.same(row.csrf, form.get(service.CSRF_FIELD)):
        raise Forbidden("form expired or forged (CSRF check failed): reload the page")
    service.end(store, session_id)
    response = RedirectResponse("/login", status_code=303, headers={"Cache-Control": "no-store"})
    response.delete_cookie(service.COOKIE, path="/", secure=_secure(request), httponly=True,
                           samesite="strict")
    return response
