"""The outage answers of the governance server, piece by piece and in process: which errors are
outages, what the client reads (never the driver's text), and the ASGI guard of MLflow's native
routes. tests/test_server_databases.py stops real databases under a real server."""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa
from flask import Flask
from mlflow.exceptions import MlflowException

from mlflow_governance.server import outage

DRIVER_TEXT = '(psycopg.OperationalError) connection failed: connection to server at "10.0.0.5", port 5432'


def operational() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, Exception(DRIVER_TEXT))


def test_an_outage_says_which_service_and_whether_it_was_reached():
    assert outage.Outage("registry database").message == "the registry database is not reachable; try again later"
    reached = outage.Outage("user database", reached=True)
    assert reached.message == "the user database is unavailable (busy or failing); try again later"
    exc = reached.exception()
    assert exc.error_code == "TEMPORARILY_UNAVAILABLE" and exc.message == reached.message


def test_only_connectivity_errors_are_outages():
    wrapped = MlflowException("x")
    wrapped.__cause__ = operational()
    assert outage.is_connectivity_error(operational()) and outage.is_connectivity_error(wrapped)
    assert not outage.is_connectivity_error(MlflowException("x"))
    assert not outage.is_connectivity_error(sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert outage.database_failure(ValueError("x")) is None


def test_a_client_reads_a_clean_error_and_never_the_database_text():
    unavailable = outage.client_error(operational())
    assert unavailable.error_code == "TEMPORARILY_UNAVAILABLE" and "registry database" in unavailable.message
    wrapped = MlflowException(DRIVER_TEXT)
    wrapped.__cause__ = operational()
    assert outage.client_error(wrapped).error_code == "TEMPORARILY_UNAVAILABLE"
    refused = outage.client_error(sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key value")))
    assert refused.error_code == "INTERNAL_ERROR"
    assert refused.message == "the registry database refused the request; see the server log"
    for error in (unavailable, refused):
        assert "psycopg" not in error.message and "duplicate" not in error.message


@pytest.mark.parametrize(("down", "message"), [
    (["registry database"], "the registry database is not reachable; try again later"),
    (["registry database", "user database"], "the registry database and user database are not reachable; try "
                                             "again later"),
    (["a", "b", "c"], "the a, b and c are not reachable; try again later"),
])
def test_readiness_names_every_service_down(down, message):
    body = outage.readiness_body(down)
    assert body == {"status": "unavailable", "service": down[0], "services": down, "message": message}
    assert outage.readiness_body([]) == {"status": "ok"}


def test_the_page_of_an_outage_falls_back_to_plain_text(monkeypatch):
    app = Flask("t")
    monkeypatch.setattr(outage, "_PAGE", [])
    with app.app_context():
        plain = outage._page_503("the registry database is not reachable")
        assert plain.status_code == 503 and plain.mimetype == "text/plain"

        def broken(message):
            raise RuntimeError("template missing")

        monkeypatch.setattr(outage, "_PAGE", [broken])
        fallback = outage._page_503("the registry database is not reachable")
        assert fallback.status_code == 503 and "registry database" in fallback.get_data(as_text=True)


# --- the ASGI guard ----------------------------------------------------------------------------


def call(app, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
    """One GET through ``OutageGuard(app)``: the status and body the client receives."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/api/3.0/mlflow/server-info", "headers": headers or [],
             "query_string": b""}
    asyncio.run(outage.OutageGuard(app)(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def answering(status: int, body: bytes):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body, "more_body": False})
    return app


def test_the_guard_passes_answers_that_are_not_outages(monkeypatch):
    monkeypatch.setattr(outage, "_DATABASES", [])
    assert call(answering(200, b'{"ok": true}')) == (200, b'{"ok": true}')
    assert call(answering(404, b"no such route")) == (404, b"no such route")
    assert call(answering(503, b'{"error_code": "TEMPORARILY_UNAVAILABLE"}'))[0] == 503
    # A 401 to credentials: the user database answers (none is configured here), so it stands.
    assert call(answering(401, b"not authenticated"), [(b"authorization", b"Basic YTpi")]) == (401, b"not authenticated")


def test_the_guard_replaces_the_driver_text_and_a_raised_outage(monkeypatch):
    monkeypatch.setattr(outage, "_DATABASES", [])
    status, body = call(answering(500, DRIVER_TEXT.encode()))
    assert status == 503 and json.loads(body)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert b"psycopg" not in body and b"10.0.0.5" not in body

    async def raising(scope, receive, send):
        raise operational()

    status, body = call(raising)
    assert status == 503 and json.loads(body)["message"] == f"the {outage.SOME_DATABASE} is not reachable; try again later"

    async def other(scope, receive, send):
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        call(other)


def test_the_guard_lets_other_protocols_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(outage.OutageGuard(app)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]
