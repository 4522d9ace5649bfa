"""Guards in front of every route: authentication on MLflow's public native routes, and origins.

Under uvicorn, MLflow mounts its Flask app inside FastAPI; Flask ``before_request`` hooks never
see the native routes. MLflow's basic-auth adds a permission middleware for most of them
(artifacts, traces, jobs), but keeps ``server-info`` public. A governed server answers nothing
to strangers, so this middleware requires valid credentials on those paths too.

Origins: MLflow's CORS check always lets ``http://localhost:*`` and ``http://127.0.0.1:*`` call
with the browser's credentials, whatever ``MLFLOW_SERVER_CORS_ALLOWED_ORIGINS`` says, so any page
served on the same machine can act as the signed-in user. With ``MLGOV_ALLOWED_ORIGINS`` set, a
request that carries an ``Origin`` header is refused (403, JSON) unless it is same-origin (the
origin names the host the request was sent to) or listed.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from urllib.parse import urlsplit

from cachetools import LRUCache
from starlette.concurrency import run_in_threadpool

from mlflow_governance.core.environment_variables import MLGOV_ALLOWED_ORIGINS

# Native paths that MLflow's own middleware leaves unauthenticated.
PUBLIC_NATIVE_PATHS = ("/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info")


def _credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if user else None


ENV_ALLOWED_ORIGINS = MLGOV_ALLOWED_ORIGINS.name


def allowed_origins() -> tuple[str, ...] | None:
    """The origins of ``MLGOV_ALLOWED_ORIGINS`` (comma-separated), or None when unset."""
    origins = MLGOV_ALLOWED_ORIGINS.get()
    if origins is None:
        return None
    return tuple(o.rstrip("/").lower() for o in origins)


def origin_refusal(origin: str | None, host: str | None, allowed: tuple[str, ...] | None) -> str | None:
    """Why a request from ``origin`` to ``host`` is refused, or None (no origin, same origin, listed)."""
    if allowed is None or not origin:
        return None
    origin = origin.strip().rstrip("/").lower()
    if origin in allowed:
        return None
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        netloc = ""
    if netloc and host and netloc == host.strip().lower():
        return None  # same origin: the MLflow UI and the approvals page themselves
    return f"cross-origin request from {origin!r} refused: allowed origins are this server and {ENV_ALLOWED_ORIGINS}"


def _forbidden_body(message: str) -> str:
    return json.dumps({"error_code": "PERMISSION_DENIED", "message": message})


def add_origin_guard_flask(flask_app) -> None:
    """The origin rule as a Flask hook (a server without FastAPI in front)."""
    from flask import Response, request

    @flask_app.before_request
    def refuse_foreign_origins():
        problem = origin_refusal(request.headers.get("Origin"), request.host, allowed_origins())
        if problem:
            return Response(_forbidden_body(problem), status=403, mimetype="application/json")
        return None


def add_native_route_guard(fastapi_app) -> None:
    """Refuse unauthenticated requests to `PUBLIC_NATIVE_PATHS` with MLflow's JSON 401, and foreign
    origins with 403 (a plain ASGI middleware: the other paths pass straight through)."""
    fastapi_app.add_middleware(NativeRouteGuard)


def _json_response(status: int, body: str, headers: dict[str, str] | None = None):
    from starlette.responses import Response

    return Response(body, status_code=status, media_type="application/json", headers=headers)


class NativeRouteGuard:
    """ASGI middleware: origins on every request, credentials on MLflow's public native paths."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        problem = origin_refusal(headers.get("origin"), headers.get("host"), allowed_origins())
        if problem:
            await _json_response(403, _forbidden_body(problem))(scope, receive, send)
            return
        if scope.get("path", "").startswith(PUBLIC_NATIVE_PATHS):
            refusal = await _authenticate_native(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _authenticate_native(scope, headers):
    """None when the request carries valid credentials or a session cookie; else the refusal."""
    from starlette.requests import cookie_parser

    from mlflow_governance.server.credentials import SESSION_COOKIE, SignInLocked, session_user, verify_password

    creds = _credentials(headers.get("authorization"))
    client = scope.get("client")
    address = client[0] if client else None
    cookie = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
    try:
        if creds is not None:
            ok = await run_in_threadpool(verify_password, *creds, address)
        else:  # a browser signed in on the form
            ok = bool(cookie) and await run_in_threadpool(session_user, cookie) is not None
    except SignInLocked as exc:
        return _json_response(423, _forbidden_body(exc.message), {"Retry-After": str(exc.retry_after)})
    if ok:
        return None
    body = json.dumps({"error_code": "UNAUTHENTICATED", "message": "authentication required"})
    return _json_response(401, body, {"WWW-Authenticate": 'Basic realm="mlflow"'})


# --- MLflow's permission middleware, skipped where it would do nothing ---------------------------

_MLFLOW_PERMISSION_MIDDLEWARE = "fastapi_permission_middleware"


def streamline_mlflow_permission_middleware(fastapi_app) -> bool:
    """Let requests that MLflow's FastAPI permission middleware would only pass on skip it.

    MLflow's basic-auth guards its native FastAPI routes with a Starlette ``BaseHTTPMiddleware``
    (a task and a stream per request, about a millisecond here). For a path it has no validator
    for (every route MLflow serves through Flask, where its ``before_request`` hook decides) and
    for its unprotected paths, it does nothing but call the app. This wraps it: such requests go
    straight to the app; every other request (a native route, or any request while
    ``MLFLOW_BASIC_AUTH_FAIL_CLOSED`` is on) goes through MLflow's middleware unchanged. The
    decision is MLflow's own functions (``is_unprotected_route``, ``_find_fastapi_validator``).
    Returns False, changing nothing, when this MLflow does not have them."""
    try:
        from mlflow.server.auth import (
            _KNOWN_UNGATED_FASTAPI_ROUTE_MARKERS,
            _find_fastapi_validator,
            _native_fastapi_routes,
            _scope_matches_native_route,
            is_unprotected_route,
        )
        from starlette.middleware import Middleware
        from starlette.middleware.base import BaseHTTPMiddleware
    except ImportError:
        return False
    mlflow = {"find_validator": _find_fastapi_validator, "unprotected": is_unprotected_route,
              "native": functools.partial(_scope_matches_native_route, _native_fastapi_routes(fastapi_app)),
              "ungated_markers": tuple(_KNOWN_UNGATED_FASTAPI_ROUTE_MARKERS)}
    for i, m in enumerate(fastapi_app.user_middleware):
        dispatch = m.kwargs.get("dispatch") if m.cls is BaseHTTPMiddleware else None
        if getattr(dispatch, "__name__", "") == _MLFLOW_PERMISSION_MIDDLEWARE:
            fastapi_app.user_middleware[i] = Middleware(SkipWhereMlflowPasses, dispatch=dispatch, **mlflow)
            return True
    return False


class SkipWhereMlflowPasses:
    """ASGI: MLflow's permission middleware (``dispatch``) only where it has something to decide."""

    def __init__(self, app, dispatch, find_validator, unprotected, native, ungated_markers):
        from starlette.middleware.base import BaseHTTPMiddleware

        self.app = app
        self.mlflow = BaseHTTPMiddleware(app, dispatch=dispatch)
        self.find_validator, self.unprotected, self.native = find_validator, unprotected, native
        self.ungated_markers = ungated_markers
        self._known: LRUCache = LRUCache(maxsize=4096)  # (path, method, root path, fail closed) -> passes
        self._lock = threading.Lock()

    def passes(self, scope) -> bool:
        """Whether MLflow's middleware would call the app and do nothing else (its own steps, in its order)."""
        from mlflow.environment_variables import MLFLOW_BASIC_AUTH_FAIL_CLOSED

        path = scope.get("path") or ""
        if not path:
            return False
        key = (path, scope.get("method", "GET"), scope.get("root_path", ""), MLFLOW_BASIC_AUTH_FAIL_CLOSED.get())
        with self._lock:
            known = self._known.get(key)
        if known is None:  # the answer depends on nothing but the key: MLflow's route tables are fixed
            known = self._decide(scope, path, key[1], key[3])
            with self._lock:
                self._known[key] = known
        return known

    def _decide(self, scope, path: str, method: str, fail_closed: bool) -> bool:
        if self.unprotected(path):
            return True
        if self.find_validator(path, method) is not None:
            return False  # a native route MLflow guards: its middleware decides
        # MLflow refuses a native route without a validator when failing closed (its default).
        return not (fail_closed and self.native(scope) and not any(marker in path for marker in self.ungated_markers))

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.passes(scope):
            await self.app(scope, receive, send)
        else:
            await self.mlflow(scope, receive, send)
