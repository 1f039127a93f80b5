"""The OpenAPI document says what the API does, including who may call it and how it fails.

On top of FastAPI's document, for every operation:
- `x-roles`: the roles it accepts (read from the `roles` that cloud.access.requires sets on
  its dependency), also written at the end of its description; the bearer scheme is there
  already (cloud.access.bearer_scheme);
- its error answers, each with the body that is really sent: 401 and 403 when it needs a
  token, 404 when its path names something, 422 when it takes input, 400 and 413 when it
  takes a body, 503 always (the database or a key may be missing), plus the ones its route declares
  with `responses=errors(...)` (400, 409, ...). Every error is `{"detail": "<reason>"}`
  (ErrorDetail), except a 422, whose detail is either the list of issues FastAPI found in the
  request's shape or a reason (ValidationErrorDetail): the schema says both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute

from cloud.schemas import ErrorDetail, ValidationErrorDetail
from cloud.services.sessions import COOKIE as SESSION_COOKIE

REASONS = {
    303: "no dashboard session: sign in at /login",
    400: "malformed request",
    401: "no token, or a token nobody issued, expired or revoked",
    403: "a valid token whose role may not do this",
    404: "what the path names does not exist",
    409: "contradicts what is stored",
    413: "request body too large",
    422: "the request's shape or values were refused",
    503: "the database or a key the request needs is unavailable",
}
SESSION_SCHEME = "DashboardSession"
_ERROR = "#/components/schemas/ErrorDetail"
_INVALID = "#/components/schemas/ValidationErrorDetail"


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own error statuses (those not added for every route)."""
    return {code: {"model": ErrorDetail, "description": REASONS.get(code, "error")}
            for code in codes}


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute of the app. Newer FastAPI keeps an included router whole (as one route
    holding `original_router`) instead of copying its routes; the app includes its routers
    without a prefix of its own, so their routes' paths are the app's paths."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from api_routes(inner.routes)


def roles_of(dependant: Dependant) -> frozenset[str]:
    """The roles declared by any dependency of the route (cloud.access.requires)."""
    found: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        roles = getattr(current.call, "roles", None)
        if roles:
            found |= {str(r) for r in roles}
        stack.extend(current.dependencies)
    return frozenset(found)


def _takes_input(dependant: Dependant) -> tuple[bool, bool]:
    """(any parameter or body, a JSON body) anywhere in the dependency tree."""
    params = body = False
    stack = [dependant]
    while stack:
        current = stack.pop()
        if current.path_params or current.query_params or current.header_params:
            params = True
        if current.body_params:
            body = True
        stack.extend(current.dependencies)
    return params or body, body


def _components(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _response(ref: str, code: int) -> dict[str, Any]:
    return {"description": REASONS.get(code, "error"),
            "content": {"application/json": {"schema": {"$ref": ref}}}}


def document(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                       description=app.description, routes=app.routes)
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {}).update(_components([ErrorDetail, ValidationErrorDetail]))
    schemes = components.setdefault("securitySchemes", {})
    schemes.setdefault("HTTPBearer", {"type": "http", "scheme": "bearer"})
    schemes[SESSION_SCHEME] = {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                               "description": "the dashboard's session (sign in at /login)"}
    for route in api_routes(app.routes):
        if not route.include_in_schema:
            continue
        roles = roles_of(route.dependant)
        takes_input, body = _takes_input(route.dependant)
        body = body or bool((route.openapi_extra or {}).get("requestBody"))
        for method in route.methods or ():
            op = spec["paths"][route.path_format].get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            codes = {503}
            if roles:
                op["x-roles"] = sorted(roles)
                op["description"] = (op.get("description", "").rstrip()
                                     + f"\n\nRoles: {', '.join(sorted(roles))}.")
                codes |= {401, 403}
            if route.param_convertors:
                codes.add(404)
            if body:
                codes |= {400, 413}  # a body that is no JSON (not UTF-8), one too large
            if roles and "security" not in op:  # the dashboard: a session cookie or a bearer
                op["security"] = [{"HTTPBearer": []}, {SESSION_SCHEME: []}]
                responses.setdefault("303", {"description": REASONS[303]})
            for code in sorted(codes):
                responses.setdefault(str(code), _response(_ERROR, code))
            for code, answer in responses.items():
                if code.startswith(("4", "5")) and code != "422":
                    answer["content"] = {"application/json": {"schema": {"$ref": _ERROR}}}
            if takes_input or "422" in responses:
                responses["422"] = _response(_INVALID, 422)
    schemas = spec["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return spec


def install(app: FastAPI) -> None:
    """Serve `document(app)` as the app's OpenAPI document (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    setattr(app, "openapi", openapi)  # noqa: B010  # FastAPI's documented override

