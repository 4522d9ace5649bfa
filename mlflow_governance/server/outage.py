"""Database outages on the governance server: a readiness route, and one clean 503 on every route.

``GET /health`` (MLflow's) says the process is up, whatever its databases do. ``GET /health/ready``
(readiness) probes every database of the server (`databases.probe`: ``SELECT 1``, a few seconds
at most) and answers ``200 {"status": "ok"}`` or ``503 {"status": "unavailable", "service":
"registry database", "services": [...], "message": "..."}``: the services that are down, by
name, and nothing else (no host, no driver text). Like ``/health`` it needs no credentials: MLflow's
basic-auth leaves every path under ``/health`` unauthenticated (``_UNPROTECTED_PATH_PREFIXES``),
in its Flask hook and in its FastAPI middleware alike.

A database that goes away under a live server made MLflow answer with the driver's message
(``(psycopg.OperationalError) connection failed: connection to server at "10.0.0.5", port 5432
...``): its session maker turns an ``OperationalError`` into ``TEMPORARILY_UNAVAILABLE`` with
``str(exc)`` as the message, on its own routes, in basic-auth's credential check (which runs
first on every request) and under ours. Here:

* a SQLAlchemy ``handle_error`` listener on every engine notes, per request, which service's
  database failed to connect or lost its connection (the engine's URL names it; pre-ping failures
  that the pool recovers from do not count);
* a Flask ``after_request`` hook replaces every error response of such a request (a 401 or 403
  because a credential or permission could not be read, a 500, MLflow's 503 with the driver's
  text) with ``503 {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "the registry database
  is not reachable; try again later"}`` (an HTML page with that line on the approvals pages);
  the original goes to the server log;
* under uvicorn, an ASGI middleware does the same for MLflow's native FastAPI routes (artifacts,
  traces, jobs, server-info), whose own auth middleware answers 401 "not authenticated" when the
  user database cannot be read: a 401 to a request that carried credentials becomes the 503 when
  the user database does not answer a probe.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask, Response, g, has_app_context, request
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, TEMPORARILY_UNAVAILABLE
from sqlalchemy import event

from mlflow_governance.core.errors import leaks_database_text
from mlflow_governance.server import databases as dbs

_log = logging.getLogger(__name__)

READY_PATH = "/health/ready"
PAGES_PREFIX = "/governance/"
ERROR_CODE = "TEMPORARILY_UNAVAILABLE"
SOME_DATABASE = "database of the server"

# The databases of this server process (`register`); the engine listener names failures by them.
_DATABASES: list[dbs.Database] = []
#: How an outage is shown on the approvals pages (`pages.outage_page`, given by `register`).
_PAGE: list[Callable[[str], Response]] = []
# Per ASGI request: the outages noted while it ran (a list, so the tasks and threads of the
# request that inherit the context add to the same one).
_ASGI_OUTAGES: ContextVar[list[Outage] | None] = ContextVar("mlgov_asgi_outages", default=None)


@dataclass(frozen=True)
class Outage:
    """A database failure seen while serving a request: which service, and whether it was reached."""

    service: str
    reached: bool = False  # True: connected, but the database failed the statement (busy, locked)

    @property
    def message(self) -> str:
        """One line for clients: the service, never the driver's text."""
        if self.reached:
            return f"the {self.service} is unavailable (busy or failing); try again later"
        return f"the {self.service} is not reachable; try again later"

    def exception(self) -> MlflowException:
        return MlflowException(self.message, error_code=TEMPORARILY_UNAVAILABLE)


def is_connectivity_error(exc: BaseException | None) -> bool:
    """True for a database that cannot be reached or failed (SQLAlchemy's ``OperationalError`` and
    ``InterfaceError``), directly or as the cause of MLflow's ``TEMPORARILY_UNAVAILABLE``."""
    if isinstance(exc, MlflowException):
        exc = exc.__cause__
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)


# --- noting which database failed -------------------------------------------------------------


def _note(outage: Outage) -> None:
    if has_app_context() and getattr(g, "mlgov_outage", None) is None:
        g.mlgov_outage = outage
    noted = _ASGI_OUTAGES.get()
    if noted is not None and not noted:
        noted.append(outage)


def _on_database_error(ctx: sa.engine.ExceptionContext) -> None:
    """``handle_error`` of every engine: note an outage of one of the server's databases."""
    if ctx.is_pre_ping or dbs.is_probe_engine(ctx.engine):
        return  # the pool reconnects after a failed ping; a probe's failure is its answer
    error = ctx.sqlalchemy_exception
    if not (ctx.is_disconnect or isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)):
        return  # SQL the database refused (a constraint, a syntax): not an outage
    service = dbs.service_of(ctx.engine.url, _DATABASES) if ctx.engine is not None else None
    reached = ctx.connection is not None and not ctx.is_disconnect
    _note(Outage(service or SOME_DATABASE, reached=reached))


def current() -> Outage | None:
    """The first database outage noted while serving the current request, if any."""
    if has_app_context():
        outage = getattr(g, "mlgov_outage", None)
        if outage is not None:
            return outage
    noted = _ASGI_OUTAGES.get()
    return noted[0] if noted else None


def database_failure(exc: BaseException) -> MlflowException | None:
    """The client's 503 for ``exc`` when it is a database outage (naming the database that failed,
    else the registry's), else None."""
    if not is_connectivity_error(exc):
        return None
    return (current() or Outage(dbs.REGISTRY)).exception()


def client_error(exc: BaseException) -> MlflowException:
    """A client-safe error for a database failure; the original goes to the server log."""
    _log.error("governance request failed in the database", exc_info=exc)
    cause = exc.__cause__ if isinstance(exc, MlflowException) else exc
    unavailable = database_failure(cause)  # 503 naming the database that failed (registry, users)
    if unavailable is not None:
        return unavailable
    return MlflowException("the registry database refused the request; see the server log", error_code=INTERNAL_ERROR)


# --- readiness --------------------------------------------------------------------------------


def down_services(databases: list[dbs.Database] | None = None) -> list[str]:
    """The services whose database does not answer a probe now (the reasons go to the log)."""
    down = []
    for db in _DATABASES if databases is None else databases:
        reason = dbs.probe(db)
        if reason is not None:
            _log.warning("readiness: the %s at %s does not answer: %s", db.service, db.where, reason)
            down.append(db.service)
    return down


def readiness_body(down: list[str]) -> dict[str, object]:
    if not down:
        return {"status": "ok"}
    names = " and ".join(down) if len(down) < 3 else ", ".join(down[:-1]) + " and " + down[-1]
    verb = "is" if len(down) == 1 else "are"
    return {"status": "unavailable", "service": down[0], "services": down,
            "message": f"the {names} {verb} not reachable; try again later"}


def ready() -> Response:
    """``GET /health/ready``: 200 when every database answers, else 503 naming the ones down."""
    down = down_services()
    response = Response(json.dumps(readiness_body(down)), status=503 if down else 200, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


# --- answering a request whose database failed ------------------------------------------------


def _json_503(message: str) -> Response:
    return Response(json.dumps({"error_code": ERROR_CODE, "message": message}), status=503,
                    mimetype="application/json")


def _page_503(message: str) -> Response:
    try:
        if _PAGE:
            return _PAGE[0](message)
    except Exception:  # noqa: BLE001 - the page must not fail on top of the outage
        _log.exception("rendering the outage page failed")
    return Response(f"Temporarily unavailable (503): {message}\n", status=503, mimetype="text/plain")


def answer_outage(response: Response) -> Response:
    """``after_request``: an error response of a request whose database failed becomes one clean 503."""
    outage = current()
    if outage is None or response.status_code < 400:
        return response
    body = "" if response.is_streamed else response.get_data(as_text=True)
    leaks = leaks_database_text(body)
    if not leaks and response.status_code == 503:
        return response  # already the clean answer (the governance routes and pages give it themselves)
    if not leaks and response.status_code < 500 and outage.reached:
        return response  # a statement failed but the database answered: a refusal may stand on its own
    # Otherwise the database is the cause: a 401 or 403 (a credential or permission that could not
    # be read), a 404 (a lookup that failed), a 500, or MLflow's 503 with the driver's text.
    _log.warning("%s %s: the %s failed; answered 503 instead of %s%s", request.method, request.path, outage.service,
                 response.status_code, f": {body[:2000]}" if leaks else "")
    clean = _page_503(outage.message) if request.path.startswith(PAGES_PREFIX) else _json_503(outage.message)
    clean.headers["Retry-After"] = "5"
    return clean


def _has_credentials(headers) -> bool:
    value = headers.get("authorization") or ""
    return value.lower().startswith("basic ") and len(value) > 6


def add_asgi_guard(fastapi_app) -> None:
    """The same answer for every route of the FastAPI app (MLflow's native routes included).

    A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which costs every request a
    task and a stream): an answer below 500 passes straight through, unless it is a 401 to a
    request that carried credentials; only those and the 5xx answers are held to be looked at."""
    fastapi_app.add_middleware(OutageGuard)


def _clean(message: str):
    from starlette.responses import Response as StarletteResponse

    return StarletteResponse(json.dumps({"error_code": ERROR_CODE, "message": message}), status_code=503,
                             media_type="application/json", headers={"Retry-After": "5"})


async def _outage_response(noted: list[Outage], path: str):
    from starlette.concurrency import run_in_threadpool

    if noted:
        return _clean(noted[0].message)
    down = await run_in_threadpool(down_services)
    _log.warning("%s: a database failed; down now: %s", path, ", ".join(down) or "none")
    return _clean((Outage(down[0]) if down else Outage(SOME_DATABASE)).message)


class OutageGuard:
    """ASGI middleware: a database outage on any route becomes one clean 503 (see the module)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.concurrency import run_in_threadpool
        from starlette.datastructures import Headers

        path = scope.get("path", "")
        credentials = _has_credentials(Headers(scope=scope))
        noted: list[Outage] = []
        held: list[dict] = []  # the start and body messages of an answer being looked at
        started = False  # an answer went out (it can no longer be replaced)

        async def guarded_send(message):
            nonlocal started
            if message["type"] == "http.response.start" and not held:
                status = message["status"]
                if status < 500 and not (status == 401 and credentials):
                    started = True
                    await send(message)
                    return
                held.append(message)
                return
            if not held:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await self._decide(held, noted, path, scope, receive, send, run_in_threadpool)

        token = _ASGI_OUTAGES.set(noted)
        try:
            try:
                await self.app(scope, receive, guarded_send)
            except Exception as exc:
                if started or not is_connectivity_error(exc):
                    raise
                _log.warning("%s failed in the database", path, exc_info=exc)
                response = await _outage_response(noted, path)
                await response(scope, receive, send)
        finally:
            _ASGI_OUTAGES.reset(token)

    @staticmethod
    async def _decide(held, noted, path, scope, receive, send, run_in_threadpool) -> None:
        status = held[0]["status"]
        if status == 401:
            # MLflow's FastAPI auth answers 401 when it cannot read the user database.
            users = dbs.holding(_DATABASES, "MLGOV_AUTH_DATABASE_URI")
            down = await run_in_threadpool(down_services, [users] if users else [])
            if down:
                await _clean(Outage(down[0]).message)(scope, receive, send)
                return
        else:
            text = b"".join(m.get("body", b"") for m in held[1:]).decode("utf-8", errors="replace")
            if leaks_database_text(text) or (noted and status != 503):
                _log.warning("%s answered %s: %s", path, status, text[:2000])
                await (await _outage_response(noted, path))(scope, receive, send)
                return
        for message in held:
            await send(message)


def register(app: Flask, databases: list[dbs.Database], page: Callable[[str], Response] | None = None) -> None:
    """Add the readiness route, the engine listener and the Flask hook (``create_app``); ``page``
    renders an outage on the approvals pages (else they get a plain-text 503)."""
    _DATABASES[:] = databases
    _PAGE[:] = [page] if page is not None else []
    if not event.contains(sa.engine.Engine, "handle_error", _on_database_error):
        event.listen(sa.engine.Engine, "handle_error", _on_database_error)
    app.add_url_rule(READY_PATH, endpoint="mlgov_ready", view_func=ready, methods=["GET"])
    app.after_request(answer_outage)
