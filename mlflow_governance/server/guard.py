"""Authentication for MLflow's native FastAPI routes that basic-auth leaves public.

Under uvicorn, MLflow mounts its Flask app inside FastAPI; Flask ``before_request`` hooks never
see the native routes. MLflow's basic-auth adds a permission middleware for most of them
(artifacts, traces, jobs), but keeps ``server-info`` public. A governed server answers nothing
to strangers, so this middleware requires valid credentials on those paths too.
"""

from __future__ import annotations

import base64
import json

from starlette.concurrency import run_in_threadpool

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


def add_native_route_guard(fastapi_app) -> None:
    """Refuse unauthenticated requests to `PUBLIC_NATIVE_PATHS` with MLflow's JSON 401."""
    from mlflow.server.auth import store as auth_store

    @fastapi_app.middleware("http")
    async def require_authentication(request, call_next):
        if request.url.path.startswith(PUBLIC_NATIVE_PATHS):
            creds = _credentials(request.headers.get("authorization"))
            ok = creds is not None and await run_in_threadpool(auth_store.authenticate_user, *creds)
            if not ok:
                from starlette.responses import Response

                body = json.dumps({"error_code": "UNAUTHENTICATED", "message": "authentication required"})
                return Response(body, status_code=401, media_type="application/json",
                                headers={"WWW-Authenticate": 'Basic realm="mlflow"'})
        return await call_next(request)
